"""The latency band by measurement: a searched network and its random (and NNI) architectures timed in turns.

    python results/search_vs_random/band_check.py OUT.jsonl TARGET.json ARCH.json ... [--pairs] [--size 1024]
                                                  [--warmup 3] [--iters 30]

Every network is built (untrained weights: latency does not depend on them) and exported for ONNX Runtime on the
CPU, then timed five calls at a time in turns (``measure_side_by_side``), so that a drift of the machine's speed
moves every network alike; `terralite bench A B ...` times one network after the other, and on a shared CPU that
moves one network's median by more than 5 % between minutes. Without ``--pairs`` all networks are timed in one
run; with it, the target is timed beside each architecture in a run of its own (the protocol of
``terralite search random --measured-band``, repeated independently). Writes one JSON row per network, the
target first: ``model`` (the spec's label), ``arch_json``, ``latency_ms_median``/``_p10``/``_p90``, ``ratio``
(median over the target's median of the same run), ``iters``, ``other_load``. ``report.py`` reads them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from terralite.atomic import write_text_atomic
from terralite.benchmark.runners import build_runner
from terralite.benchmark.runners.base import measure_side_by_side
from terralite.models import describe, load_model


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("archs", nargs="+", help="the target first, then the architectures timed beside it")
    parser.add_argument("--pairs", action="store_true", help="time the target beside each architecture, one run per pair")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--iters", type=int, default=30)
    args = parser.parse_args(argv)
    if len(args.archs) < 2:
        parser.error("give the target and at least one architecture")
    runners, labels = [], []
    for path in args.archs:
        torch.manual_seed(0)
        model, spec, _ = load_model(path)
        runners.append(build_runner("onnxruntime", model.eval(), size=args.size, in_channels=spec.get("in_channels", 3),
                                    device="cpu"))
        labels.append(spec.get("label") or describe(spec))
        print(f"built {len(runners)}/{len(args.archs)}: {labels[-1]}", file=sys.stderr, flush=True)
    if args.pairs:  # [(target's stats, this one's stats)] per architecture; the target's row: its first run's
        runs = [measure_side_by_side([runners[0], runner], args.warmup, args.iters) for runner in runners[1:]]
        measured = [runs[0][0], *(this for _, this in runs)]
        targets = [runs[0][0], *(target for target, _ in runs)]
    else:
        measured = measure_side_by_side(runners, args.warmup, args.iters)
        targets = [measured[0]] * len(measured)
    rows = [{"model": label, "arch_json": str(path), "size": args.size, "runtime": "onnxruntime", "device": "cpu",
             "timing": "pairs" if args.pairs else "all in turns",
             "latency_ms_median": s.latency_ms_median, "latency_ms_p10": s.latency_ms_p10,
             "latency_ms_p90": s.latency_ms_p90, "ratio": s.latency_ms_median / t.latency_ms_median,
             "target_ms": t.latency_ms_median, "iters": s.iters, "warmup": s.warmup, "other_load": s.other_load,
             "loadavg": s.loadavg}
            for label, path, s, t in zip(labels, args.archs, measured, targets)]
    write_text_atomic(args.out, "".join(json.dumps(r) + "\n" for r in rows))
    for r in rows:
        print(f"{r['model']}: {r['latency_ms_median']:.1f} ms ({r['ratio']:.3f}x)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
