#!/usr/bin/env bash
# Regenerate the CPU board: every baseline of the zoo at SIZE x SIZE (default 1024), torch eager fp32 and
# ONNX Runtime (CPU provider) fp32, TTA none / hflip / hflip-batched, WARMUP untimed + ITERS timed calls
# (default 2 + 5: CPU calls at 1024 px take seconds each), then render the leaderboard into OUT.
# Run it from the repository root on an otherwise idle machine:  bash results/cpu/regenerate.sh
# Overrides: SIZE=256 MODELS="unet-mobilenetv2 lraspp-mobilenetv3" OUT=/tmp/board bash results/cpu/regenerate.sh
set -euo pipefail
PY=${PY:-.venv/bin/python}
SIZE=${SIZE:-1024}
WARMUP=${WARMUP:-2}
ITERS=${ITERS:-5}
OUT=${OUT:-results/cpu}
MODELS=${MODELS:-$("$PY" -c 'from terralite.benchmark.zoo import BASELINES; print(" ".join(BASELINES.names()))')}

mkdir -p "$OUT/rows"
for runtime in torch onnxruntime; do
  rows="$OUT/rows/bench_cpu_${runtime}_fp32_${SIZE}.jsonl"
  rm -f "$rows"  # a fresh board, not appended to an older one
  # one process per model: peak-memory readings and allocator state do not leak from one model to the next
  for model in $MODELS; do
    "$PY" -m terralite bench "$model" --size "$SIZE" --runtime "$runtime" --device cpu \
      --tta none,hflip,hflip-batched --warmup "$WARMUP" --iters "$ITERS" --out "$rows"
  done
done
"$PY" -m terralite leaderboard "$OUT"/rows/bench_cpu_*_fp32_"$SIZE".jsonl --out "$OUT"
