"""terralite profile: parameters and GMACs of networks (fvcore, cross-checked with torch's flop counter)."""

from __future__ import annotations

HELP = "parameters and GMACs of models at 1xCxSxS (fvcore, cross-checked with torch.utils.flop_counter)"
DESCRIPTION = (
    "Count parameters and multiply-accumulates (GMACs, one multiply-add = 1) of each MODEL — a registered "
    "baseline name, a spec/architecture JSON or a checkpoint — with fvcore at 1 x C x SIZE x SIZE, and "
    "cross-check with torch.utils.flop_counter (FLOPs / 2). Disagreements above 2%% are flagged. 'params' "
    "counts the deployed network (the modules an eval-mode forward runs: training-only auxiliary heads are "
    "left out), 'total' every parameter the model holds. --reference adds, for each baseline the OpenEarthMap "
    "paper's Table 3 lists, the paper's params and FLOPs beside ours with the relative difference and the counter "
    "each side used."
)


def add_arguments(parser) -> None:
    parser.add_argument("models", nargs="+", metavar="MODEL", help="baseline name, spec/arch JSON or checkpoint")
    parser.add_argument("--size", type=int, default=1024, metavar="PX", help="input height and width (default 1024)")
    parser.add_argument("--in-channels", type=int, default=None, metavar="N", help="input bands (default: the spec's, else 3)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per model instead of a table")
    parser.add_argument("--reference", action="store_true",
                        help="also print the OEM paper's Table 3 params/FLOPs beside ours, the relative difference and "
                             "each side's counter (JSON: a 'paper' field, null for networks the paper does not list)")


def run(args) -> int:
    import json

    from terralite.benchmark.profiler import profile_references

    flagged = False
    if not args.json:
        print(f"{'model':<28} {'params (M)':>10} {'total (M)':>10} {'GMACs fvcore':>13} {'GMACs torch':>12} {'diff %':>7}  fvcore skipped")
    for r in profile_references(args.models, args.size, args.in_channels, args.reference):  # one by one: a large network takes a while
        flagged |= r["flagged"]
        if args.json:
            print(json.dumps(r), flush=True)
            continue
        skipped = ", ".join(f"{op} x{n}" for op, n in r["unsupported_ops"].items()) or "-"
        mark = " !" if r["flagged"] else ""
        print(f"{r['model']:<28} {r['params_m']:>10.3f} {r['params_total_m']:>10.3f} {r['gmacs']:>13.2f} {r['flop_counter_gmacs']:>12.2f} "
              f"{r['disagreement_pct']:>6.2f}{mark:<2} {skipped}", flush=True)
        if args.reference:
            print(_paper_line(r["paper"]), flush=True)
    if flagged and not args.json:
        print("! fvcore and torch.utils.flop_counter disagree by more than 2%: see gmacs_by_operator in --json")
    return 0


def _paper_line(paper: dict | None) -> str:
    """The paper's figures under a model's row: params, FLOPs, our differences and both counters."""
    if paper is None:
        return "  paper: not in the OEM paper's Table 3"
    line = (f"  paper {paper['method']}: params {paper['params_m']:.2f} M (ours {paper['params_diff_pct']:+.2f} %), "
            f"FLOPs {paper['gflops']:.2f} G [{paper['counter']}] vs ours [{paper['ours_counter']}] {paper['flops_diff_pct']:+.1f} %")
    return line + (f"\n    note: {paper['note']}" if paper["note"] else "")
