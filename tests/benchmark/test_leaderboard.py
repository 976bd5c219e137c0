import csv
import json

import pytest

from terralite.benchmark.leaderboard import build_leaderboard, pareto_front
from terralite.benchmark.rows import ROW_FIELDS, write_rows
from terralite.cli import main


def _row(model, size, fps, tta="none", device="cpu: test", miou=None, gmacs=None, date="2026-01-01T00:00:00+00:00"):
    row = dict.fromkeys(ROW_FIELDS)
    row.update(model=model, spec_hash=model[:12], params_m=1.0, gmacs=gmacs or size / 100, flop_counter="fvcore", input_size=size,
               batch=1, device=device, runtime="onnxruntime", precision="fp32", tta=tta, latency_ms_mean=1000 / fps,
               latency_ms_median=1000 / fps, latency_ms_p90=1100 / fps, fps=fps, peak_mem_mb=10.0, miou=miou,
               versions={"torch": "2.x"}, date=date)
    return row


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
    assert md.count("\n## ") == 2 and "## 256x256" in md and "## 512x512" in md
    section_256 = md.split("## 256x256")[1].split("## ")[0]
    ranked = [line.split("|")[2].strip() for line in section_256.splitlines() if line.startswith("| ") and "rank" not in line]
    assert ranked == ["fast", "fast", "mid", "slow"]
    (slow,) = [line.split("|") for line in section_256.splitlines() if line.startswith("| 4 |")]
    assert slow[2].strip() == "slow" and slow[9].strip() == "6.00"  # the latest repeat of slow@256 is kept
    rows = list(csv.DictReader((out / "leaderboard.csv").open()))
    assert len(rows) == 6 and set(ROW_FIELDS) <= set(rows[0]) and json.loads(rows[0]["versions"]) == {"torch": "2.x"}
    page = (out / "leaderboard.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<script>" in page and "src=" not in page and "href=" not in page
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_leaderboard_refuses_mixed_sizes(files, tmp_path, capsys):
    code = main(["leaderboard", *map(str, files), "--out", str(tmp_path / "x"), "--group-by", "device,runtime"])
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
