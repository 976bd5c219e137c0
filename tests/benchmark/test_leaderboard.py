import csv
import json

import pytest

from terralite.benchmark.leaderboard import TABLE_COLUMNS, build_leaderboard, pareto_front
from terralite.benchmark.rows import LEGACY_ROW_FIELDS, ROW_FIELDS, write_rows
from terralite.cli import main


def _row(model, size, fps, tta="none", device="cpu: test", miou=None, gmacs=None, date="2026-01-01T00:00:00+00:00",
         runtime="onnxruntime", precision="fp32", p10=None, p90=None, loadavg=0.2, iters=20, mean=None, params=1.0,
         other_load=None):
    row = dict.fromkeys(ROW_FIELDS)
    median = 1000 / fps
    row.update(model=model, spec_hash=model[:12], params_m=params, gmacs=gmacs or size / 100, flop_counter="fvcore",
               gmacs_flagged=False, input_size=size, batch=1, device=device, runtime=runtime, precision=precision, tta=tta,
               latency_ms_mean=mean or median, latency_ms_median=median, latency_ms_p10=p10 or 0.98 * median,
               latency_ms_p90=p90 or 1.05 * median, fps=fps, warmup=2, iters=iters, loadavg=loadavg, cpus=2,
               other_load=other_load, peak_mem_mb=10.0, miou=miou, versions={"torch": "2.x"}, date=date)
    return row


def _table(md, title):
    section = md.split(title)[1].split("\n## ")[0]
    return [[c.strip() for c in line.split("|")[1:-1]] for line in section.splitlines()
            if line.startswith("| ") and not line.startswith("| rank")]


FPS_CELL = 1 + TABLE_COLUMNS.index("fps")


@pytest.fixture
def files(tmp_path):
    a = write_rows(tmp_path / "a.jsonl", [_row("fast", 256, 50.0, gmacs=1.0), _row("fast", 256, 26.0, "hflip", gmacs=1.0),
                                          _row("slow", 256, 5.0, gmacs=9.0), _row("mid", 256, 20.0, gmacs=5.0)])
    b = write_rows(tmp_path / "b.jsonl", [_row("fast", 512, 12.0), _row("slow", 512, 1.5),
                                          _row("slow", 256, 6.0, gmacs=9.0, date="2026-02-01T00:00:00+00:00")])
    return a, b


def test_leaderboard_from_several_files(files, tmp_path):
    out = tmp_path / "board"
    paths = build_leaderboard(files, out)
    assert sorted(p.name for p in paths) == ["leaderboard.csv", "leaderboard.html", "leaderboard.md", "pareto.png"]
    md = (out / "leaderboard.md").read_text()
    assert md.count("\n## ") == 2 and "## cpu: test · 256x256" in md and "## cpu: test · 512x512" in md
    table = _table(md, "256x256")
    assert [cells[1] for cells in table] == ["fast", "fast", "mid", "slow"]
    assert table[3][1] == "slow" and table[3][FPS_CELL] == "6.00"  # the latest repeat of slow@256 is kept
    rows = list(csv.DictReader((out / "leaderboard.csv").open()))
    assert len(rows) == 6 and set(ROW_FIELDS) <= set(rows[0]) and "warnings" in rows[0] and json.loads(rows[0]["versions"]) == {"torch": "2.x"}
    page = (out / "leaderboard.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<script>" in page and "src=" not in page and "href=" not in page
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_leaderboard_refuses_mixed_sizes(files, tmp_path, capsys):
    code = main(["leaderboard", *map(str, files), "--out", str(tmp_path / "x"), "--group-by", "device"])
    assert code == 2
    err = capsys.readouterr().err
    assert "refusing to rank by fps rows measured under different input_size values (256, 512)" in err


def test_leaderboard_refuses_mixed_devices(tmp_path):
    from terralite.errors import TerraLiteError

    f = write_rows(tmp_path / "d.jsonl", [_row("a", 256, 5.0, device="cpu: x"), _row("b", 256, 6.0, device="NVIDIA H100")])
    build_leaderboard([f], tmp_path / "ok")  # grouped by device: two tables
    assert (tmp_path / "ok" / "leaderboard.md").read_text().count("\n## ") == 2
    with pytest.raises(TerraLiteError, match="different device values"):
        build_leaderboard([f], tmp_path / "no", group_by=["input_size"])


def test_pareto_front():
    # (GMACs, score): lower GMACs and higher score are better
    points = [(1.0, 50.0), (1.0, 26.0), (9.0, 5.0), (5.0, 60.0), (6.0, 55.0)]
    assert pareto_front(points) == [0, 3]
    # (FPS, mIoU): both larger are better
    assert pareto_front([(50.0, 0.5), (26.0, 0.52), (20.0, 0.51), (60.0, 0.3)], larger_x=True) == [3, 0, 1]


def test_noisy_row_is_flagged_and_ranks_follow_medians(tmp_path):
    """One table per device and size holds every runtime x precision x TTA row; FPS come from the median, so a
    row whose mean a few slow calls dragged down still ranks by its median; wide spread and load are flagged."""
    rows = [_row("net", 256, 40.0), _row("net", 256, 21.0, "hflip"),
            _row("net", 256, 60.0, precision="int8", mean=1000 / 10.0),  # slow outliers: mean 10 FPS, median 60
            _row("net", 256, 30.0, runtime="torch", p10=1000 / 45, p90=1000 / 15),  # wide spread
            _row("other", 256, 35.0, loadavg=7.5)]  # a loaded machine
    f = write_rows(tmp_path / "r.jsonl", rows)
    build_leaderboard([f], tmp_path / "board")
    md = (tmp_path / "board" / "leaderboard.md").read_text()
    assert md.count("\n## ") == 1
    table = _table(md, "256x256")
    ranked = [(c[1], c[2], c[3], c[4]) for c in table]
    assert ranked == [("net", "onnxruntime", "int8", "none"), ("net", "onnxruntime", "fp32", "none"),
                      ("other", "onnxruntime", "fp32", "none"), ("net", "torch", "fp32", "none"),
                      ("net", "onnxruntime", "fp32", "hflip")]
    flagged = {c[1] + "/" + c[2] for c in table if c[FPS_CELL].endswith("⚠")}
    assert flagged == {"other/onnxruntime", "net/torch"}
    assert "Ranks not reliable where marked" in md
    assert "rank 4 (net, torch fp32, TTA none): p10–p90 spread" in md
    assert "rank 3 (other, onnxruntime fp32, TTA none): load average 7.5 on 2 CPUs" in md
    html = (tmp_path / "board" / "leaderboard.html").read_text()
    assert "Ranks not reliable where marked" in html


def test_own_threads_are_not_a_loaded_machine(tmp_path):
    """The load average counts the measurement's own threads (a 2-thread benchmark drives it to 2 on 2 CPUs):
    where a row says how busy the other processes were, that decides the warning."""
    rows = [_row("alone", 256, 40.0, loadavg=2.0, other_load=0.03),  # its own two threads, nothing else
            _row("shared", 256, 30.0, loadavg=2.1, other_load=1.02),  # another job held a core
            _row("old", 256, 20.0, loadavg=2.0)]  # no other_load (an older row): the load average decides
    build_leaderboard([write_rows(tmp_path / "r.jsonl", rows)], tmp_path / "board")
    md = (tmp_path / "board" / "leaderboard.md").read_text()
    flagged = {c[1] for c in _table(md, "256x256") if c[FPS_CELL].endswith("⚠")}
    assert flagged == {"shared", "old"}
    assert "rank 2 (shared, onnxruntime fp32, TTA none): other processes kept 1.02 CPUs busy during the timing" in md
    assert "rank 3 (old, onnxruntime fp32, TTA none): load average 2.0 on 2 CPUs" in md


def test_old_rows_still_render_with_dashes(tmp_path):
    old = {k: v for k, v in _row("legacy", 256, 10.0, mean=1000 / 8.0).items() if k in LEGACY_ROW_FIELDS}
    old["fps"] = 8.0  # the first format stored 1000 / mean
    path = tmp_path / "old.jsonl"
    path.write_text(json.dumps(old) + "\n")
    build_leaderboard([path], tmp_path / "board")
    (cells,) = _table((tmp_path / "board" / "leaderboard.md").read_text(), "256x256")
    assert cells[FPS_CELL] == "10.00"  # re-derived from the median
    for column in ("latency_ms_p10", "warmup", "iters", "loadavg", "other_load"):
        assert cells[1 + TABLE_COLUMNS.index(column)] == "—"


def test_pareto_plot_shows_paper_marks_only_where_conditions_match(tmp_path, monkeypatch):
    from terralite.benchmark import leaderboard

    gpu = [_row("fasterseg", 1024, 150.0, device="cuda: NVIDIA H200", miou=0.57),
           _row("fasterseg", 1024, 80.0, "hflip", device="cuda: NVIDIA H200", miou=0.58)]
    cpu = [_row("fasterseg", 1024, 5.0, miou=0.57)]
    assert leaderboard.matching_paper_rows(gpu) and not leaderboard.matching_paper_rows(cpu)
    assert not leaderboard.matching_paper_rows([_row("x", 512, 5.0, device="cuda: NVIDIA H200")])
    marks = []
    original = leaderboard._paper_marks
    monkeypatch.setattr(leaderboard, "_paper_marks", lambda ax, refs, metric, rows: marks.append(len(refs)) or original(ax, refs, metric, rows))
    f = write_rows(tmp_path / "r.jsonl", gpu + cpu)
    build_leaderboard([f], tmp_path / "board")
    assert sorted(marks) == [0, 4]  # the GPU panel at 1024 gets the paper's four searched networks, the CPU one none
    md = (tmp_path / "board" / "leaderboard.md").read_text()
    assert md.count("Paper reference") == 1 and "FasterSeg #1 (paper)" in md


def test_dense_pareto_panel_labels_its_front_and_keeps_labels_on_the_figure(tmp_path, monkeypatch):
    """33 rows crowded on a few FPS values: only the Pareto front is labelled and no label is pushed off the
    figure (the committed CPU board crashed the text renderer before this)."""
    from matplotlib.figure import Figure

    from terralite.benchmark import leaderboard

    rows = [_row(f"net{i:02d}", 1024, 0.1 + 0.01 * (i % 5), tta=("none", "hflip", "hflip-batched")[i % 3], params=float(40 - i))
            for i in range(33)]
    saved = {}
    original_savefig = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda fig, *a, **k: saved.setdefault("fig", fig) and original_savefig(fig, *a, **k))
    build_leaderboard([write_rows(tmp_path / "r.jsonl", rows)], tmp_path / "board")
    ax = saved["fig"].axes[0]
    texts = [child for child in ax.texts]
    front = leaderboard.pareto_front([(r["fps"], r["params_m"]) for r in rows], larger_x=True, larger_y=False)
    assert len(texts) == len(front) < leaderboard.MAX_LABELLED_POINTS
    assert "33 rows, Pareto front labelled" in ax.get_title()
    limit = ax.bbox.height * 72 / saved["fig"].dpi / 2
    assert all(abs(t.xyann[1]) <= limit + 1e-6 for t in texts)
    assert (tmp_path / "board" / "pareto.png").stat().st_size > 0


@pytest.mark.parametrize("field, value, says", [
    ("fps", "12.5", 'field fps is "12.5", not a number'),
    ("latency_ms_median", float("nan"), "field latency_ms_median is nan"),
    ("params_m", -2.0, "field params_m is negative (-2.0)"),
    ("gmacs", float("inf"), "field gmacs is inf"),
    ("miou", 41.0, "field miou is 41.0, above 1"),
    ("input_size", 0, "field input_size is 0"),
    ("iters", 2.5, "field iters is 2.5, not a whole number"),
    ("batch", None, "field batch is missing (null)"),
])
def test_leaderboard_refuses_rows_with_bad_numbers(tmp_path, capsys, field, value, says):
    good = json.dumps(_row("ok", 256, 10.0))
    bad = _row("bad", 256, 10.0)
    bad[field] = value
    path = tmp_path / "rows.jsonl"
    path.write_text(good + "\n" + json.dumps(bad) + "\n")  # json.dumps writes NaN / Infinity, as a hand edit might
    before = path.read_bytes()
    code = main(["leaderboard", str(path), "--out", str(tmp_path / "board")])
    err = capsys.readouterr().err
    assert code == 2
    assert f"{path}:2: {says}" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert path.read_bytes() == before
    assert not (tmp_path / "board").exists()


def test_leaderboard_refuses_a_line_that_is_not_an_object(tmp_path, capsys):
    path = tmp_path / "rows.jsonl"
    path.write_text("[1, 2]\n")
    assert main(["leaderboard", str(path), "--out", str(tmp_path / "board")]) == 2
    assert f"{path}:1 is not a TerraLite benchmark row (a JSON list, not an object)" in capsys.readouterr().err


def test_rows_of_a_repeated_measurement_replace_the_old_ones(tmp_path):
    path = write_rows(tmp_path / "r.jsonl", [dict(_row("a", 256, 5.0), role="parent"), dict(_row("b", 256, 6.0), role="pruned")])
    write_rows(path, [dict(_row("b", 256, 7.0), role="pruned")], replaces=lambda row: row.get("role") == "pruned")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["role"], r["fps"]) for r in rows] == [("parent", 5.0), ("pruned", 7.0)]


def test_pareto_labels_do_not_overlap_on_the_demo_board(tmp_path, monkeypatch):
    """The demo's board of 2026-12-07 (these FPS and mIoU): two hflip labels near the bottom edge and three
    SparseMask labels around one spot were drawn over each other while the repel measured each annotation with its
    leader line; the texts themselves must not overlap."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.text import Text

    points = [("fasterseg-student", "torch", "fp32", "none", 119.2, 0.352), ("fasterseg-student", "torch", "fp32", "hflip", 243.5, 0.351),
              ("sparsemask", "torch", "fp32", "none", 522.2, 0.472), ("sparsemask", "torch", "fp32", "hflip", 1045.3, 0.501),
              ("unet-mobilenetv2", "torch", "fp32", "none", 1515.5, 0.609), ("unet-mobilenetv2", "torch", "fp32", "hflip", 3062.3, 0.626),
              ("unet-mobilenetv2-pruned", "torch", "fp32", "none", 494.5, 0.337),
              ("unet-mobilenetv2-pruned", "torch", "fp32", "hflip", 1048.6, 0.346),
              ("unet-mobilenetv2-pruned-distilled", "torch", "fp32", "none", 511.4, 0.675),
              ("unet-mobilenetv2-pruned-distilled", "torch", "fp32", "hflip", 1068.0, 0.696),
              ("sparsemask", "onnxruntime", "fp32", "none", 803.3, 0.486), ("sparsemask-int8", "onnxruntime", "int8", "none", 516.2, 0.479)]
    rows = [_row(name, 1024, 1000 / ms, tta=tta, runtime=runtime, precision=precision, miou=miou)
            for name, runtime, precision, tta, ms, miou in points]
    saved = {}
    original_savefig = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda fig, *a, **k: saved.setdefault("fig", fig) and original_savefig(fig, *a, **k))
    build_leaderboard([write_rows(tmp_path / "r.jsonl", rows)], tmp_path / "board")
    fig = saved["fig"]
    FigureCanvasAgg(fig).draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    boxes = [Text.get_window_extent(t, renderer) for t in ax.texts]
    assert len(boxes) == len(points)
    overlapping = [(ax.texts[i].get_text(), ax.texts[j].get_text()) for i in range(len(boxes)) for j in range(i + 1, len(boxes))
                   if boxes[i].overlaps(boxes[j])]
    assert overlapping == []
    assert all(ax.bbox.y0 - 1 <= b.y0 and b.y1 <= ax.bbox.y1 + 1 for b in boxes)  # none pushed out of the panel
