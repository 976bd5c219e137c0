"""Leaderboards rendered from benchmark rows: Markdown, CSV, a static sortable HTML page and a Pareto plot.

Rows are grouped by the conditions they were measured under (by default input size, batch, device,
runtime, precision — :data:`terralite.benchmark.rows.CONDITION_FIELDS`); each group is one table. Absolute speed
is only comparable under one input size, batch and device, so a ranking whose group mixes them is
refused. Repeated measurements of one network under the same conditions and TTA keep the latest row.
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
TABLE_COLUMNS = ("model", "tta", "params_m", "gmacs", "latency_ms_mean", "latency_ms_median", "latency_ms_p90", "fps",
                 "peak_mem_mb", "miou", "spec_hash")


def group_rows(rows: Iterable[dict], group_by: Sequence[str] = CONDITION_FIELDS) -> dict[tuple, list[dict]]:
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
                f"such numbers are not comparable; keep {field} in --group-by (the default groups by {', '.join(CONDITION_FIELDS)})"
            )
    present = [r for r in rows if r[rank_by] is not None]
    absent = [r for r in rows if r[rank_by] is None]
    return sorted(present, key=lambda r: r[rank_by], reverse=RANK_KEYS[rank_by]) + absent


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats (x smaller or equal and y larger or equal), by x."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], float("-inf")
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def _title(key: tuple, group_by: Sequence[str]) -> str:
    parts = []
    for field, value in zip(group_by, key):
        parts.append(f"{value}x{value}" if field == "input_size" else f"{field} {value}" if field == "batch" else str(value))
    return " · ".join(parts) or "all rows"


def _cell(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1 else f"{value:.2f}"
    return str(value)


def _versions_line(rows: list[dict]) -> str:
    keys = ("torch", "onnxruntime", "tensorrt", "segmentation-models-pytorch", "cuda")
    seen = sorted({json.dumps({k: r["versions"].get(k) for k in keys if r["versions"].get(k)}, sort_keys=True) for r in rows})
    dates = sorted(r["date"] for r in rows)
    return f"versions: {'; '.join(seen)} · measured {dates[0]} … {dates[-1]}"


def render_markdown(groups: dict[tuple, list[dict]], group_by: Sequence[str], rank_by: str) -> str:
    lines = ["# Leaderboard", "", f"Ranked by `{rank_by}` within each group of equal conditions ({', '.join(group_by)}). "
             "GMACs: one multiply-add = 1, per network call (TTA `hflip` makes two calls). Columns: see results/README.md.", ""]
    for key, rows in groups.items():
        lines += [f"## {_title(key, group_by)}", "", "| rank | " + " | ".join(TABLE_COLUMNS) + " |",
                  "|" + "---|" * (len(TABLE_COLUMNS) + 1)]
        for rank, row in enumerate(rows, 1):
            lines.append(f"| {rank} | " + " | ".join(_cell(row[c]) for c in TABLE_COLUMNS) + " |")
        lines += ["", _versions_line(rows), ""]
    return "\n".join(lines)


def render_csv(groups: dict[tuple, list[dict]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["rank", *ROW_FIELDS])
    for rows in groups.values():
        for rank, row in enumerate(rows, 1):
            writer.writerow([rank, *(json.dumps(row[f], sort_keys=True) if f == "versions" else ("" if row[f] is None else row[f]) for f in ROW_FIELDS)])
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
             "th{cursor:pointer;background:#eee}p.meta{color:#555;font-size:.9em}</style></head><body>",
             "<h1>TerraLite leaderboard</h1>",
             f"<p>Ranked by <code>{html.escape(rank_by)}</code> within each group of equal conditions "
             f"({html.escape(', '.join(group_by))}); click a column header to sort.</p>"]
    for key, rows in groups.items():
        parts.append(f"<h2>{html.escape(_title(key, group_by))}</h2>")
        parts.append("<table class='board'><thead><tr><th>rank</th>" + "".join(f"<th>{html.escape(c)}</th>" for c in TABLE_COLUMNS) + "</tr></thead><tbody>")
        for rank, row in enumerate(rows, 1):
            parts.append(f"<tr><td>{rank}</td>" + "".join(f"<td>{html.escape(_cell(row[c]))}</td>" for c in TABLE_COLUMNS) + "</tr>")
        parts.append(f"</tbody></table><p class='meta'>{html.escape(_versions_line(rows))}</p>")
    parts += [f"<script>{_SORT_JS}</script>", "</body></html>", ""]
    return "\n".join(parts)


def render_pareto(groups: dict[tuple, list[dict]], group_by: Sequence[str], path: Path) -> None:
    """One panel per group: mIoU (when measured) or FPS against GMACs; Pareto-front points are ringed and joined."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, axes = plt.subplots(len(groups), 1, figsize=(8, 5 * len(groups)), squeeze=False)
    for ax, (key, rows) in zip(axes[:, 0], groups.items()):
        metric = "miou" if any(r["miou"] is not None for r in rows) else "fps"
        rows = [r for r in rows if r[metric] is not None and r["gmacs"] is not None]
        points = [(r["gmacs"], r[metric]) for r in rows]
        for tta, marker in (("none", "o"), ("hflip", "s"), ("hflip-batched", "^"), ("flips", "D"), ("d4", "P")):
            chosen = [p for p, r in zip(points, rows) if r["tta"] == tta]
            if chosen:
                ax.scatter(*zip(*chosen), marker=marker, label=f"TTA {tta}", zorder=3)
        front = pareto_front(points)
        if front:
            xs, ys = [points[i][0] for i in front], [points[i][1] for i in front]
            ax.scatter(xs, ys, s=180, facecolors="none", edgecolors="black", linewidths=1.5, label="Pareto front", zorder=4)
            ax.step(xs, ys, where="post", linestyle="--", color="black", zorder=2)
        for (x, y), row in zip(points, rows):
            ax.annotate(row["model"], (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel("GMACs per network call")
        ax.set_ylabel("mIoU" if metric == "miou" else "FPS (images/s)")
        ax.set_title(_title(key, group_by), fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def build_leaderboard(files: Sequence[str | Path], out_dir: str | Path, rank_by: str = "fps",
                      group_by: Sequence[str] = CONDITION_FIELDS) -> list[Path]:
    """Render ``leaderboard.{md,csv,html}`` and ``pareto.png`` from the rows of ``files`` into ``out_dir``."""
    rows = [row for f in files for row in read_rows(f)]
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
