"""terralite leaderboard: Markdown, CSV, HTML tables and a Pareto plot from benchmark rows."""

from __future__ import annotations

HELP = "render leaderboard.md/.csv/.html and pareto.png from bench JSONL files"
DESCRIPTION = (
    "Read the rows of every FILE (written by terralite bench), group them by the conditions they were "
    "measured under, rank each group and write leaderboard.md, leaderboard.csv, leaderboard.html (one "
    "static page, click headers to sort) and pareto.png into --out. Rows of different input sizes, batches "
    "or devices are never ranked together."
)


def add_arguments(parser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="JSONL files of benchmark rows")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (created if absent)")
    parser.add_argument("--rank-by", default="fps", metavar="FIELD",
                        help="fps (default), miou, latency_ms_mean, latency_ms_median, latency_ms_p90, gmacs, params_m, peak_mem_mb")
    parser.add_argument("--group-by", default="input_size,batch,device,runtime,precision", metavar="FIELD[,FIELD]",
                        help="comma-separated row fields that define a group (default input_size,batch,device,runtime,precision)")


def run(args) -> int:
    from terralite.benchmark.leaderboard import build_leaderboard

    group_by = [f.strip() for f in args.group_by.split(",") if f.strip()]
    for path in build_leaderboard(args.files, args.out, rank_by=args.rank_by, group_by=group_by):
        print(path)
    return 0
