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
    parser.add_argument("space", choices=SPACES, help="search space")
    parser.add_argument("--size", type=int, default=1024, help="target input size (square, divisible by 32; default 1024)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    parser.add_argument("--runtime", default="onnxruntime", choices=("onnxruntime", "torch"), help="default onnxruntime")
    parser.add_argument("--out", required=True, help="output JSON file")
    parser.add_argument("--preset", default="oem", help="search-space preset: oem or tiny (default oem)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a search-space field, e.g. --set widths=[6,12] (repeatable)")
    parser.add_argument("--in-channels", type=int, default=3, help="input bands (default 3)")
    parser.add_argument("--num-classes", type=int, default=8, help="classes (default 8)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed runs per entry (default 5)")
    parser.add_argument("--iters", type=int, default=20, help="timed runs per entry; the median is stored (default 20)")
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads (default: its own choice)")


def run(args) -> int:
    import sys

    from terralite.nas.fasterseg.latency import measure_table
    from terralite.search_spaces.fasterseg.config import preset_config
    from terralite.search_spaces.fasterseg.space import FasterSegSearchSpace
    from terralite.atomic import ensure_parent
    from terralite.config import parse_overrides
    from terralite.device import resolve_device
    from terralite.errors import TerraLiteError

    if args.size % 32 or args.size < 32:
        raise TerraLiteError(f"--size must be a positive multiple of 32, got {args.size}")
    ensure_parent(args.out)
    device = resolve_device(args.device)
    try:
        space = FasterSegSearchSpace(preset_config(args.preset, **parse_overrides(args.overrides)), args.in_channels, args.num_classes)
    except TypeError as exc:
        raise TerraLiteError(f"--set: {exc}") from None

    def progress(n: int, total: int, key: str) -> None:
        if n == 1 or n % 25 == 0 or n == total:
            print(f"latency-table: {n}/{total} {key}", file=sys.stderr)

    table = measure_table(space, args.size, device, args.runtime, args.warmup, args.iters, args.threads, progress)
    table.save(args.out)
    print(f"wrote {args.out}: {len(table.entries)} entries, {table.conditions['runtime']} on {table.conditions['device']} at {args.size}x{args.size}")
    return 0
