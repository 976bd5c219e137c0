"""``terralite latency-table SPACE``: measure a latency lookup table for a search space."""

from __future__ import annotations

HELP = "measure the per-operator latency table a latency-aware search uses"
DESCRIPTION = (
    "Time every operator/shape the search space's supernet can use, in isolation, on one device and runtime at "
    "the target input size, and write them with their conditions (device, runtime, precision, size, versions, "
    "date) to a JSON table. A search refuses a table measured under other conditions."
)
SPACES = ("fasterseg",)


def add_arguments(parser) -> None:
    parser.add_argument("space", choices=SPACES, help="search space (fasterseg)")
    parser.add_argument("--size", type=int, default=1024, metavar="PX", help="target input size (square, divisible by 32; default 1024)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    parser.add_argument("--runtime", default="onnxruntime", choices=("onnxruntime", "torch"),
                        help="runtime the table is timed with; a search refuses a table of another runtime (default onnxruntime)")
    parser.add_argument("--out", required=True, metavar="FILE", help="output JSON file (the latency table)")
    parser.add_argument("--preset", default="oem", help="search-space preset: oem or tiny (default oem)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a search-space field, e.g. --set widths=[6,12] (repeatable)")
    parser.add_argument("--in-channels", type=int, default=3, metavar="N", help="input bands (default 3)")
    parser.add_argument("--num-classes", type=int, default=8, metavar="N", help="classes (default 8)")
    parser.add_argument("--warmup", type=int, default=5, metavar="N", help="untimed runs per entry (default 5)")
    parser.add_argument("--iters", type=int, default=20, metavar="N", help="timed runs per entry; the median is stored (default 20)")
    parser.add_argument("--rounds", type=int, default=3, metavar="N",
                        help="passes over the table, each in a new order; an entry keeps the median of its passes (default 3)")
    parser.add_argument("--threads", type=int, default=None, metavar="N", help="ONNX Runtime intra-op threads (default: its own choice)")


def run(args) -> int:
    from terralite.config import parse_overrides
    from terralite.nas.fasterseg.latency import measure_table_for_preset

    table = measure_table_for_preset(args.preset, parse_overrides(args.overrides), args.size, args.device, args.runtime,
                                     args.out, args.in_channels, args.num_classes, args.warmup, args.iters, args.threads,
                                     args.rounds)
    print(f"wrote {args.out}: {len(table.entries)} entries, {table.conditions['runtime']} on {table.conditions['device']} "
          f"at {args.size}x{args.size}")
    return 0
