#!/usr/bin/env bash
# The GPU board on one H100/H200 in at most 8 minutes: paper protocol (eager fp32, 10 + 300 calls, CUDA events),
# deploy protocol (fp16 torch.compile + CUDA graphs, ONNX Runtime CUDA, TensorRT where importable), with and
# without TTA, for the zoo and the committed searched networks at 1024x1024; AMP training images/s with the
# data-wait share; a few OEM-preset FasterSeg search iterations. Writes rows/, the leaderboard, suite.json and
# README.md (device named) into results/gpu.   From the repository root:  bash results/gpu/run.sh
# --dry-run: the same pipeline on the CPU at 64 px, one call each (tested).  Other flags: --data ROOT, --budget-s S,
# --models a,b, --out DIR (see python -m terralite.benchmark.gpu_suite --help).
set -euo pipefail
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
exec "$PY" -m terralite.benchmark.gpu_suite "$@"
