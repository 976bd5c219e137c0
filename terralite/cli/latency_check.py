"""``terralite latency-check SPACE``: compare a latency table's predictions with measured latencies."""

from __future__ import annotations

HELP = "check a latency table: Spearman and mean error of predicted vs measured latency of random architectures"
SPACES = ("fasterseg",)


def add_arguments(parser) -> None:
    parser.add_argument("space", choices=SPACES, help="search space (fasterseg)")
    parser.add_argument("--lut", required=True, metavar="FILE", help="latency table JSON (from `terralite latency-table`)")
    parser.add_argument("--samples", type=int, default=20, metavar="N", help="random architectures to measure (default 20)")
    parser.add_argument("--out", required=True, metavar="FILE", help="output JSON with every sample and the summary")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random architectures (default 0)")
    parser.add_argument("--warmup", type=int, default=5, metavar="N", help="untimed runs per architecture (default 5)")
    parser.add_argument("--iters", type=int, default=20, metavar="N", help="timed runs per architecture (default 20)")


def run(args) -> int:
    import sys

    from terralite.nas.fasterseg.latency_check import latency_check

    result = latency_check(args.lut, args.samples, args.out, args.seed, args.warmup, args.iters,
                           progress=lambda line: print(f"latency-check: {line}", file=sys.stderr))
    print(f"Spearman {result['spearman']:.3f} (p={result['spearman_p']:.2g}), mean abs error {result['mean_abs_error_ms']:.2f} ms, "
          f"mean rel error {100 * result['mean_rel_error']:.1f} %, over {result['samples']} architectures → {args.out}")
    return 0
