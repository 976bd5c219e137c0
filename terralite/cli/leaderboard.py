"""terralite leaderboard: Markdown, CSV, HTML tables and a Pareto plot from benchmark rows."""

from __future__ import annotations

HELP = "render leaderboard.md/.csv/.html and pareto.png from bench JSONL files"
DESCRIPTION = (
    "Read the rows of every FILE (written by terralite bench), group them by the conditions they were "
    "measured under (one table per device, input size and batch), rank each by FPS from the median latency "
    "(rows with a wide spread, a loaded machine or few timed calls are flagged) and write leaderboard.md, leaderboard.csv, leaderboard.html (one "
    "static page, click headers to sort) and pareto.png into --out. Rows of different input sizes, batches "
    "or devices are never ranked together."
)


def add_arguments(parser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="JSONL files of benchmark rows")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (created if absent)")
    parser.add_argument("--rank-by", default="fps", metavar="FIELD",
                        help="fps (default), miou, latency_ms_mean, latency_ms_median, latency_ms_p90, gmacs, params_m, peak_mem_mb")
    parser.add_argument("--group-by", default="device,input_size,batch", metavar="FIELD[,FIELD]",
                        help="comma-separated row fields that define a table (default device,input_size,batch: every "
                             "runtime, precision and TTA of a model in one table)")


def run(args) -> int:
    from terralite.benchmark.leaderboard import build_leaderboard

    group_by = [f.strip() for f in args.group_by.split(",") if f.strip()]
    for path in build_leaderboard(args.files, args.out, rank_by=args.rank_by, group_by=group_by):
        print(path)
    return 0
