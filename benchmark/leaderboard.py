"""Leaderboards rendered from benchmark rows: Markdown, CSV, a static sortable HTML page and a Pareto plot.

Rows are grouped by device, input size and batch (:data:`BOARD_GROUP_BY`): one table per group, in which
every runtime x precision x TTA row of a model stands beside the others (fp32 against int8, torch against
ONNX Runtime, with and without TTA). Absolute speed is only comparable under one input size, batch and
device, so a ranking whose group mixes them is refused. Repeated measurements of one network under the
same conditions and TTA keep the latest row.

FPS is ranked from the median latency (1000 / median x batch; older rows, which stored the mean's, are
re-derived from their median), with p10/p90, the warm-up and iteration counts and the machine's load
average in every row. A row is flagged — and a warning printed under its table — when its p10–p90 spread
is wide (:data:`SPREAD_WARN`), the machine was loaded (load average above :data:`LOAD_WARN` per CPU), or
too few calls were timed to rank (:data:`MIN_RANK_ITERS`); a GMACs figure the two counters disagree on
carries a mark. Fields an older row lacks show as '—'.

The Pareto plot draws mIoU (or, without mIoU, parameters) against measured FPS, one panel per table, TTA
points at their measured cost; the paper's searched networks (:mod:`terralite.benchmark.paper_reference`)
appear as labelled reference marks only in panels whose conditions match theirs (a GPU, 1024 x 1024).
"""

from __future__ import annotations

import csv
import html
import io
import json
from pathlib import Path
from typing import Iterable, Sequence

from terralite.benchmark.rows import CONDITION_FIELDS, ROW_FIELDS, read_rows
from terralite.atomic import atomic_path, write_text_atomic
from terralite.errors import TerraLiteError

RANK_KEYS = {  # field → True when larger is better
    "fps": True, "miou": True, "latency_ms_mean": False, "latency_ms_median": False, "latency_ms_p90": False,
    "gmacs": False, "params_m": False, "peak_mem_mb": False,
}
MUST_NOT_MIX = ("input_size", "batch", "device")
BOARD_GROUP_BY = ("device", "input_size", "batch")
"""One table per device, input size and batch (the conditions under which speed is comparable)."""
TABLE_COLUMNS = ("model", "runtime", "precision", "tta", "params_m", "gmacs", "latency_ms_median", "latency_ms_p10",
                 "latency_ms_p90", "fps", "warmup", "iters", "loadavg", "other_load", "peak_mem_mb", "miou", "spec_hash")
SPREAD_WARN = 0.25
"""(p90 - p10) / median above this: the timings scattered too much to rank on."""
OTHER_LOAD_WARN = 0.25
"""Other processes busy for more than this many processors during the timed calls: the machine was shared."""
LOAD_WARN = 0.75
"""Rows without ``other_load`` (older rows, systems without /proc/stat): 1-minute load average per CPU above this."""
MIN_RANK_ITERS = 5
"""Fewer timed calls than this give no reliable median."""


def row_warnings(row: dict) -> list[str]:
    """Why ``row``'s speed is not to be trusted as it stands (empty when nothing is wrong)."""
    warnings = []
    median, p10, p90 = row.get("latency_ms_median"), row.get("latency_ms_p10"), row.get("latency_ms_p90")
    if median and p90 is not None:
        spread = (p90 - (p10 if p10 is not None else median)) / median
        if spread > SPREAD_WARN:
            warnings.append(f"p10–p90 spread {100 * spread:.0f} % of the median")
    other, load, cpus = row.get("other_load"), row.get("loadavg"), row.get("cpus")
    if other is not None:  # the load average also counts the measurement's own threads
        if other > OTHER_LOAD_WARN:
            warnings.append(f"other processes kept {other:.2f} CPUs busy during the timing")
    elif load is not None and cpus and load > LOAD_WARN * cpus:
        warnings.append(f"load average {load:.1f} on {cpus} CPUs")
    iters = row.get("iters")
    if iters is not None and iters < MIN_RANK_ITERS:
        warnings.append(f"only {iters} timed calls")
    return warnings


def median_fps(row: dict) -> dict:
    """``row`` with ``fps`` from its median latency (rows of the first format stored 1000 / mean)."""
    if row.get("latency_ms_median"):
        row = {**row, "fps": round(1000.0 / row["latency_ms_median"] * (row.get("batch") or 1), 3)}
    return row


def group_rows(rows: Iterable[dict], group_by: Sequence[str] = BOARD_GROUP_BY) -> dict[tuple, list[dict]]:
    """Rows by their values of ``group_by`` (latest row per network, TTA and full conditions)."""
    for field in group_by:
        if field not in ROW_FIELDS:
            raise TerraLiteError(f"cannot group by {field!r}; row fields are: {', '.join(ROW_FIELDS)}")
    latest: dict[tuple, dict] = {}
    for row in rows:
        key = (row["spec_hash"], row["model"], row["tta"], *(row[f] for f in CONDITION_FIELDS))
        if key not in latest or row["date"] >= latest[key]["date"]:
            latest[key] = row
    groups: dict[tuple, list[dict]] = {}
    for row in latest.values():
        groups.setdefault(tuple(row[f] for f in group_by), []).append(row)
    return dict(sorted(groups.items(), key=lambda kv: tuple(str(v) for v in kv[0])))


def rank_group(rows: list[dict], rank_by: str) -> list[dict]:
    """Rows sorted best first by ``rank_by``; refuses rows of different sizes, batches or devices."""
    if rank_by not in RANK_KEYS:
        raise TerraLiteError(f"cannot rank by {rank_by!r}; choose one of {', '.join(RANK_KEYS)}")
    for field in MUST_NOT_MIX:
        values = sorted({str(r[field]) for r in rows})
        if len(values) > 1:
            raise TerraLiteError(
                f"refusing to rank by {rank_by} rows measured under different {field} values ({', '.join(values)}): "
                f"such numbers are not comparable; keep {field} in --group-by (the default groups by {', '.join(BOARD_GROUP_BY)})"
            )
    present = [r for r in rows if r[rank_by] is not None]
    absent = [r for r in rows if r[rank_by] is None]
    return sorted(present, key=lambda r: r[rank_by], reverse=RANK_KEYS[rank_by]) + absent


def pareto_front(points: list[tuple[float, float]], larger_x: bool = False, larger_y: bool = True) -> list[int]:
    """Indices of the points no other point beats (by default x smaller or equal and y larger or equal), best x first."""
    sx, sy = (-1 if larger_x else 1), (1 if larger_y else -1)
    order = sorted(range(len(points)), key=lambda i: (sx * points[i][0], -sy * points[i][1]))
    front, best = [], float("-inf")
    for i in order:
        if sy * points[i][1] > best:
            front.append(i)
            best = sy * points[i][1]
    return front


def _title(key: tuple, group_by: Sequence[str]) -> str:
    parts = []
    for field, value in zip(group_by, key):
        parts.append(f"{value}x{value}" if field == "input_size" else f"{field} {value}" if field == "batch" else str(value))
    return " · ".join(parts) or "all rows"


def _cell(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1 else f"{value:.2f}"
    return str(value)


def _versions_line(rows: list[dict]) -> str:
    keys = ("torch", "onnxruntime", "tensorrt", "segmentation-models-pytorch", "cuda")
    seen = sorted({json.dumps({k: r["versions"].get(k) for k in keys if r["versions"].get(k)}, sort_keys=True) for r in rows})
    dates = sorted(r["date"] for r in rows)
    return f"versions: {'; '.join(seen)} · measured {dates[0]} … {dates[-1]}"


def _row_cells(row: dict) -> list[str]:
    cells = []
    for column in TABLE_COLUMNS:
        cell = _cell(row.get(column))
        if column == "gmacs" and row.get("gmacs_flagged"):
            cell += " ⚑"
        if column == "fps" and row_warnings(row):
            cell += " ⚠"
        cells.append(cell)
    return cells


def _warning_lines(rows: list[dict]) -> list[str]:
    lines = [f"rank {rank} ({row['model']}, {row['runtime']} {row['precision']}, TTA {row['tta']}): {'; '.join(row_warnings(row))}"
             for rank, row in enumerate(rows, 1) if row_warnings(row)]
    if not lines:
        return []
    return ["⚠ **Ranks not reliable where marked** — re-measure on an idle machine with more iterations:", "",
            *[f"- {line}" for line in lines], ""]


_LEGEND = ("FPS = 1000 / median latency x batch. GMACs: one multiply-add = 1, per network call (TTA `hflip` makes two "
           "calls); ⚑ = fvcore and torch's FlopCounterMode disagree (see `terralite profile`). ⚠ = see the warnings "
           "under the table. '—' = not measured (or a row from before the field existed). Columns: see results/README.md.")


def render_markdown(groups: dict[tuple, list[dict]], group_by: Sequence[str], rank_by: str) -> str:
    lines = ["# Leaderboard", "", f"Ranked by `{rank_by}` within each group of equal conditions ({', '.join(group_by)}). "
             + _LEGEND, ""]
    for key, rows in groups.items():
        lines += [f"## {_title(key, group_by)}", "", "| rank | " + " | ".join(TABLE_COLUMNS) + " |",
                  "|" + "---|" * (len(TABLE_COLUMNS) + 1)]
        for rank, row in enumerate(rows, 1):
            lines.append(f"| {rank} | " + " | ".join(_row_cells(row)) + " |")
        lines += ["", *_warning_lines(rows), _versions_line(rows), ""]
        references = matching_paper_rows(rows)
        if references:
            lines += ["Paper reference (METHODS §3; the authors' GPU, TensorRT/eager, not this machine):", "",
                      "| network | params_m | FPS | FPS with TTA | mIoU | mIoU with TTA |", "|---|---|---|---|---|---|",
                      *[f"| {r.label} | {r.params_m} | {_cell(r.fps)} | {_cell(r.fps_tta)} | {_cell(r.miou)} | {_cell(r.miou_tta)} |"
                        for r in references], ""]
    return "\n".join(lines)


def matching_paper_rows(rows: list[dict]) -> list:
    """The paper's searched-network rows when ``rows`` were measured under their conditions (a GPU, the paper's
    input size), else none: their FPS come from another machine and mean nothing next to a CPU's."""
    from terralite.benchmark.paper_reference import PAPER_CONDITIONS, PAPER_SEARCHED

    if not rows:
        return []
    device = str(rows[0]["device"]).lower()
    on_gpu = any(word in device for word in ("cuda", "nvidia", "gpu", "tesla"))
    return list(PAPER_SEARCHED) if on_gpu and rows[0]["input_size"] == PAPER_CONDITIONS["input_size"] else []


def render_csv(groups: dict[tuple, list[dict]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["rank", *ROW_FIELDS, "warnings"])
    for rows in groups.values():
        for rank, row in enumerate(rows, 1):
            writer.writerow([rank, *(json.dumps(row[f], sort_keys=True) if f == "versions" else ("" if row[f] is None else row[f]) for f in ROW_FIELDS),
                             "; ".join(row_warnings(row))])
    return buffer.getvalue()


_SORT_JS = """
document.querySelectorAll('table.board th').forEach(function (th) {
  th.addEventListener('click', function () {
    var table = th.closest('table'), body = table.tBodies[0], col = th.cellIndex;
    var asc = th.dataset.order !== 'asc'; th.dataset.order = asc ? 'asc' : 'desc';
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[col].textContent, y = b.cells[col].textContent, nx = parseFloat(x), ny = parseFloat(y);
      var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
      return asc ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
"""


def render_html(groups: dict[tuple, list[dict]], group_by: Sequence[str], rank_by: str) -> str:
    parts = ["<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'><title>TerraLite leaderboard</title>",
             "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:.5em}"
             "th,td{border:1px solid #ccc;padding:.3em .6em;text-align:right}td:nth-child(2),td:nth-child(3){text-align:left}"
             "th{cursor:pointer;background:#eee}p.meta{color:#555;font-size:.9em}p.warn{color:#a40}</style></head><body>",
             "<h1>TerraLite leaderboard</h1>",
             f"<p>Ranked by <code>{html.escape(rank_by)}</code> within each group of equal conditions "
             f"({html.escape(', '.join(group_by))}); click a column header to sort. {html.escape(_LEGEND)}</p>"]
    for key, rows in groups.items():
        parts.append(f"<h2>{html.escape(_title(key, group_by))}</h2>")
        parts.append("<table class='board'><thead><tr><th>rank</th>" + "".join(f"<th>{html.escape(c)}</th>" for c in TABLE_COLUMNS) + "</tr></thead><tbody>")
        for rank, row in enumerate(rows, 1):
            parts.append(f"<tr><td>{rank}</td>" + "".join(f"<td>{html.escape(c)}</td>" for c in _row_cells(row)) + "</tr>")
        parts.append("</tbody></table>")
        warnings = [line for line in _warning_lines(rows) if line.startswith("- ")]
        if warnings:
            parts.append("<p class='warn'>⚠ Ranks not reliable where marked: " + html.escape(" · ".join(w[2:] for w in warnings)) + "</p>")
        parts.append(f"<p class='meta'>{html.escape(_versions_line(rows))}</p>")
    parts += [f"<script>{_SORT_JS}</script>", "</body></html>", ""]
    return "\n".join(parts)


_TTA_MARKERS = {"none": "o", "hflip": "s", "hflip-batched": "^", "flips": "D", "d4": "P"}


#: Longest model name a plot label shows (the table has the full label).
LABEL_CHARS = 40


def _short_label(row: dict) -> str:
    """The model's name without its run description (``name (run, epoch, target…)``), and how it was timed."""
    name = row["model"].split(" (")[0]
    name = name if len(name) <= LABEL_CHARS else name[:LABEL_CHARS - 1] + "…"
    extras = [row["runtime"].replace("onnxruntime", "ORT")] + ([row["precision"]] if row["precision"] != "fp32" else [])
    extras += [f"TTA {row['tta']}"] if row["tta"] != "none" else []
    return f"{name} ({', '.join(extras)})"


def _log_fps_axis(ax) -> None:
    """Ticks at 1, 2, 5 x 10^k written as plain numbers (matplotlib's log ticks print 2x10^-1 … over each other)."""
    from matplotlib import ticker

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:g}"))
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())


#: Panels with more points than this label only their Pareto front.
MAX_LABELLED_POINTS = 12


def _repel_labels(ax, labels, steps: int = 80) -> None:
    """Push overlapping annotation boxes apart vertically (in display space) until none overlap, or ``steps``;
    a label is never pushed out of the panel (one at the top edge stays, and the other one moves further)."""
    if len(labels) < 2:
        return
    from matplotlib.text import Text

    renderer = ax.figure.canvas.get_renderer()
    to_points = 72 / ax.figure.dpi
    frame = ax.bbox

    def text_box(label):
        # the text alone: an annotation's own extent includes its leader line, which may cross other labels freely
        return Text.get_window_extent(label, renderer)

    def shift(label, dy_points: float) -> None:
        x, y = label.xyann
        label.xyann = (x, y + dy_points)

    def inside() -> None:
        for label in labels:
            box = text_box(label)
            if box.y1 > frame.y1:
                shift(label, -(box.y1 - frame.y1) * to_points)
            elif box.y0 < frame.y0:
                shift(label, (frame.y0 - box.y0) * to_points)

    for _ in range(steps):
        inside()
        boxes = [text_box(label).expanded(1.05, 1.15) for label in labels]
        moved = False
        for i in range(len(labels)):
            for j in range(i + 1, len(labels)):
                if boxes[i].overlaps(boxes[j]):
                    push = ((min(boxes[i].y1, boxes[j].y1) - max(boxes[i].y0, boxes[j].y0)) / 2 + 1) * to_points
                    upper, lower = (i, j) if boxes[i].y0 >= boxes[j].y0 else (j, i)
                    up, down = push, push
                    if boxes[upper].y1 + push / to_points > frame.y1:  # no room above: the lower one moves twice
                        up, down = 0.0, 2 * push
                    elif boxes[lower].y0 - push / to_points < frame.y0:  # no room below: the upper one does
                        up, down = 2 * push, 0.0
                    shift(labels[upper], up)
                    shift(labels[lower], -down)
                    moved = True
        if not moved:
            break
    inside()


def render_pareto(groups: dict[tuple, list[dict]], group_by: Sequence[str], path: Path) -> None:
    """One panel per table: mIoU (when measured; else parameters) against measured FPS, each runtime x precision x
    TTA row a point (TTA at its measured cost); the Pareto front (faster and better) ringed and joined; the
    paper's searched networks as grey reference marks where the conditions match (:func:`matching_paper_rows`)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, axes = plt.subplots(len(groups), 1, figsize=(9, 5.5 * len(groups)), squeeze=False)
    for ax, (key, rows) in zip(axes[:, 0], groups.items()):
        metric = "miou" if any(r["miou"] is not None for r in rows) else "params_m"
        rows = [r for r in rows if r[metric] is not None and r["fps"]]
        points = [(r["fps"], r[metric]) for r in rows]
        kinds = sorted({(r["runtime"], r["precision"]) for r in rows})
        colours = {kind: f"C{i % 10}" for i, kind in enumerate(kinds)}
        for (runtime, precision) in kinds:
            for tta, marker in _TTA_MARKERS.items():
                chosen = [p for p, r in zip(points, rows) if (r["runtime"], r["precision"], r["tta"]) == (runtime, precision, tta)]
                if chosen:
                    ax.scatter(*zip(*chosen), marker=marker, color=colours[(runtime, precision)], zorder=3,
                               label=f"{runtime} {precision}, TTA {tta}")
        front = pareto_front(points, larger_x=True, larger_y=metric == "miou")
        if front:
            xs, ys = [points[i][0] for i in front], [points[i][1] for i in front]
            ax.scatter(xs, ys, s=180, facecolors="none", edgecolors="black", linewidths=1.5, label="Pareto front", zorder=4)
            ax.plot(xs, ys, linestyle="--", color="black", zorder=2)
        # a dense panel labels only its Pareto front: 30+ labels cannot be placed legibly (the table has every row)
        labelled = range(len(points)) if len(points) <= MAX_LABELLED_POINTS else front
        if points:
            _log_fps_axis(ax)
            ax.margins(x=0.08, y=0.08)
        fig.canvas.draw()  # the final limits, to put each label on the side of its point with room for it
        labels = []
        for i in labelled:
            right_half = ax.transAxes.inverted().transform(ax.transData.transform(points[i]))[0] > 0.55
            labels.append(ax.annotate(_short_label(rows[i]), points[i], fontsize=7, textcoords="offset points",
                                      xytext=(-5, 4) if right_half else (5, 4), ha="right" if right_half else "left",
                                      arrowprops={"arrowstyle": "-", "color": "0.6", "lw": 0.5}))
        labels += _paper_marks(ax, matching_paper_rows(rows), metric, rows)
        fig.canvas.draw()
        _repel_labels(ax, labels)
        ax.set_xlabel("measured FPS (images/s, from the median latency; TTA included)")
        ax.set_ylabel("mIoU" if metric == "miou" else "parameters (M) — no mIoU measured")
        note = "" if len(points) <= MAX_LABELLED_POINTS else f" — {len(points)} rows, Pareto front labelled"
        ax.set_title(_title(key, group_by) + note, fontsize=9)
        ax.grid(alpha=0.3)
        # below the panel: inside, any corner can hide the points and labels that matter most
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=3, frameon=False)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def _paper_marks(ax, references: list, metric: str, rows: list[dict]) -> list:
    """Grey crosses for the paper's rows (with and without TTA), on the panel's y scale; their labels."""
    labels = []
    percent = metric == "miou" and max(r["miou"] for r in rows) > 1.5  # our mIoU as a fraction or in %
    for ref in references:
        for fps, miou, tag in ((ref.fps, ref.miou, ""), (ref.fps_tta, ref.miou_tta, ", TTA hflip")):
            y = ref.params_m if metric == "params_m" else (miou if percent else miou / 100 if miou is not None else None)
            if fps is None or y is None:
                continue
            ax.scatter([fps], [y], marker="x", color="0.5", zorder=3)
            labels.append(ax.annotate(f"{ref.label}{tag}", (fps, y), fontsize=6, color="0.4", xytext=(4, -8),
                                      textcoords="offset points"))
    return labels


def build_leaderboard(files: Sequence[str | Path], out_dir: str | Path, rank_by: str = "fps",
                      group_by: Sequence[str] = BOARD_GROUP_BY) -> list[Path]:
    """Render ``leaderboard.{md,csv,html}`` and ``pareto.png`` from the rows of ``files`` into ``out_dir``."""
    rows = [median_fps(row) for f in files for row in read_rows(f)]
    if not rows:
        raise TerraLiteError(f"no benchmark rows in {', '.join(map(str, files))}; run terralite bench first")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    groups = {key: rank_group(group, rank_by) for key, group in group_rows(rows, group_by).items()}
    written = [
        write_text_atomic(out_dir / "leaderboard.md", render_markdown(groups, group_by, rank_by)),
        write_text_atomic(out_dir / "leaderboard.csv", render_csv(groups)),
        write_text_atomic(out_dir / "leaderboard.html", render_html(groups, group_by, rank_by)),
    ]
    render_pareto(groups, group_by, out_dir / "pareto.png")
    return [*written, out_dir / "pareto.png"]
