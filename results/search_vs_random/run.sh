#!/usr/bin/env bash
# Issue 15, item 3: do the searches beat random architectures of the same latency, and hand-designed networks?
#
#   results/search_vs_random/run.sh [--smoke] [OUT]        (OUT default: results/search_vs_random/study)
#
# Every network is trained with ONE recipe and budget (RECIPE below) and SEEDS training seeds:
#   - the FasterSeg student and the SparseMask network of our differentiable searches (run here, or given as
#     STUDENT=student.json / SPARSEMASK=arch.json),
#   - K latency-matched random architectures of each space (`terralite search random --match`), each trained once
#     per seed: within ±BAND (5 %) of the searched network by the FasterSeg table (SparseMask, which has no table:
#     within ±SM_BAND (25 %) by its latency measured alone, a coarse first filter), and within ±MEASURED_BAND (3 %)
#     of it by latency timed side by side with it (--measured-band, SIDE_ITERS calls each); FasterSeg widths are
#     drawn with P(choice k) ∝ WIDTH_SKEW**k (default 0.1), operators and down-sampling uniformly, SparseMask
#     connections each kept with probability KEEP_PROB (default 0.08): the searched networks sit in corners of
#     their spaces (narrowest widths; 6 of 90 connections) that uniform draws do not reach,
#   - the best of a NNI run (TUNER, default tpe) that trains TRIALS architectures over the FasterSeg space at the
#     student's latency (same width prior; proposals outside the band are rejected, not counted),
#   - LR-ASPP MobileNetV3 and U-Net MobileNetV2.
# Each trained network is evaluated on the synthetic test split (and on FIXTURE=ROOT, the real labelled tile's
# dataset, when given) and timed with ONNX Runtime on the CPU at 1024x1024 (seed 0); each searched network is timed
# again beside its random and NNI architectures, in turns (band_check.py: the band by measurement, checked apart
# from the selection). The tables of the random and NNI runs are RUN/trials.csv; the rest is eval/*.json and
# bench/*.jsonl. Rerunning resumes every step.
# Last, report.py writes networks.csv, table.md and plot.png (and copies the small outputs) to DEST (default:
# this folder; --smoke: OUT/report).
# --smoke: the same steps at toy scale (64 px, tiny FasterSeg space, one step per network) to check the script.
set -euo pipefail
SMOKE=0
if [[ "${1:-}" == "--smoke" ]]; then SMOKE=1; shift; fi
OUT=${1:-results/search_vs_random/study}
T=${TERRALITE:-terralite}
TUNER=${TUNER:-tpe}
mkdir -p "$OUT/eval"

if (( SMOKE )); then
  TILES=12; PX=64; SIZE=64; K=${K:-2}; TRIALS=${TRIALS:-2}; SEEDS=${SEEDS:-0}
  FS_SEARCH=(--preset tiny)                     # its own 64 px table in RUN/lut.json
  SM_SEARCH=(--preset tiny --epochs 1)
  EPOCHS=1; STEPS=1; BATCH=2; CROP=64; DEST=${DEST:-$OUT/report}
  KEEP_PROB=${KEEP_PROB:-0.5}                   # the tiny SparseMask search is unbudgeted: a dense network
  BAND=${BAND:-0.3}                             # 64 px timings of 5 calls scatter more than +-5 %
  MEASURED_BAND=${MEASURED_BAND:-0.5}; SIDE_ITERS=${SIDE_ITERS:-5}
  SM_LATENCY=(--size 64 --latency-runtime torch --latency-iters 5)
  BENCH=(--size 64 --iters 3 --warmup 1); BAND_CHECK=(--size 64 --iters 5 --warmup 1)
else
  # sized for about two hours of training on a 2-core CPU in all; adjust EPOCHS/STEPS to the machine
  TILES=48; PX=256; SIZE=1024; K=${K:-8}; TRIALS=${TRIALS:-8}; SEEDS=${SEEDS:-0 1}; BAND=${BAND:-0.05}
  # 48 tiles: 34 for training, so an epoch is at most 8 steps of batch 4 (STEPS is a cap): 200 steps per network
  EPOCHS=${EPOCHS:-25}; STEPS=${STEPS:-20}; BATCH=4; CROP=128
  FS_SEARCH=(--preset oem-cpu --target-fps "${FPS:-3}")
  # budgeted as the OEM authors' network (about 10 GMACs): at this proxy scale the gates do not polarise, and the
  # unbudgeted derivation keeps all 90 connections (the supernet itself)
  SM_SEARCH=(--preset oem --epochs 10 --crop 128 --batch-size 4 --budget-gmacs 10)
  SM_LATENCY=(--size 1024 --latency-runtime onnxruntime --latency-iters 5)
  # the selection's margin: a ratio measured within ±3 % in one run stays within ±5 % in the check run
  MEASURED_BAND=${MEASURED_BAND:-0.03}; SIDE_ITERS=${SIDE_ITERS:-30}; SM_BAND=${SM_BAND:-0.25}
  BENCH=(--size 1024 --iters 20 --warmup 3); BAND_CHECK=(--size 1024 --iters 30 --warmup 3)
fi
SM_BAND=${SM_BAND:-$BAND}
# the one recipe, as `terralite train` takes it and as the multi-trial searches take it (the same settings;
# the trials are trained without validation and scored on their final weights, so the others are too)
PRESET=${PRESET:-fasterseg}; DEVICE=${DEVICE:-cpu}; WIDTH_SKEW=${WIDTH_SKEW:-0.1}; KEEP_PROB=${KEEP_PROB:-0.08}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd); DEST=${DEST:-$HERE}
RECIPE=(--preset "$PRESET" --epochs "$EPOCHS" --set "steps_per_epoch=$STEPS" --batch-size "$BATCH" --crop "$CROP"
        --device "$DEVICE" --set val_split=null)
MT_RECIPE=(--train-preset "$PRESET" --epochs "$EPOCHS" --steps-per-epoch "$STEPS" --batch-size "$BATCH" --crop "$CROP"
           --device "$DEVICE")

DATA=$OUT/data
[[ -f $DATA/train.txt ]] || $T data synth "$DATA" --tiles $TILES --size $PX --seed 0

# 1. the differentiable searches (skipped when STUDENT / SPARSEMASK name existing results)
if [[ -z "${STUDENT:-}" ]]; then
  [[ -f $OUT/search_fasterseg/student.json ]] || $T search fasterseg "${FS_SEARCH[@]}" --data "$DATA" --out "$OUT/search_fasterseg"
  STUDENT=$OUT/search_fasterseg/student.json
fi
LUT=${LUT:-$OUT/search_fasterseg/lut.json}    # the table the FasterSeg search measured (or LUT=FILE)
if [[ -z "${SPARSEMASK:-}" ]]; then
  [[ -f $OUT/search_sparsemask/arch.json ]] || $T search sparsemask "${SM_SEARCH[@]}" --data "$DATA" --out "$OUT/search_sparsemask"
  SPARSEMASK=$OUT/search_sparsemask/arch.json
fi

# 2. latency-matched random architectures, trained once per seed (the same draws: --seed 0; the draws are timed
#    once: later seeds start from the first seed's latency caches, so they train the same architectures)
FIRST=${SEEDS%% *}
for S in $SEEDS; do
  for SPACE in fasterseg sparsemask; do
    if [[ $S != "$FIRST" && ! -e $OUT/random_${SPACE}_seed$S ]]; then
      mkdir -p "$OUT/random_${SPACE}_seed$S"
      for CACHE in latency_cache.json side_by_side_cache.json; do
        [[ ! -f $OUT/random_${SPACE}_seed$FIRST/$CACHE ]] || cp "$OUT/random_${SPACE}_seed$FIRST/$CACHE" "$OUT/random_${SPACE}_seed$S/"
      done
    fi
  done
  $T search random --space fasterseg --match "$STUDENT" --band "$BAND" --samples $K --lut "$LUT" --data "$DATA" \
     --width-skew "$WIDTH_SKEW" --measured-band "$MEASURED_BAND" --side-by-side-iters "$SIDE_ITERS" \
     --out "$OUT/random_fasterseg_seed$S" --train-seed $S --eval-split test "${MT_RECIPE[@]}"
  $T search random --space sparsemask --match "$SPARSEMASK" --band "$SM_BAND" --samples $K "${SM_LATENCY[@]}" --data "$DATA" \
     --keep-prob "$KEEP_PROB" --measured-band "$MEASURED_BAND" --side-by-side-iters "$SIDE_ITERS" \
     --out "$OUT/random_sparsemask_seed$S" --train-seed $S --eval-split test "${MT_RECIPE[@]}"
done

# 3. NNI multi-trial search over the FasterSeg space at the student's latency; its best is retrained below. The
#    tuner is scored on the validation split, so that the network it selects is not scored on the split it was
#    selected by (the random trials above are not selected, so their tables hold test-split mIoU)
$T search nni --space fasterseg --tuner "$TUNER" --trials $TRIALS --match "$STUDENT" --band "$BAND" --lut "$LUT" \
   --width-skew "$WIDTH_SKEW" \
   --data "$DATA" --out "$OUT/nni_fasterseg_$TUNER" --eval-split val "${MT_RECIPE[@]}"

# 4. the searched, NNI-best and hand-designed networks with the same recipe, each seed
declare -A MODELS=([fasterseg-student]="$STUDENT" [sparsemask]="$SPARSEMASK" [nni-$TUNER-best]="$OUT/nni_fasterseg_$TUNER/best.json"
                   [lraspp-mobilenetv3]=lraspp-mobilenetv3 [unet-mobilenetv2]=unet-mobilenetv2)
for NAME in "${!MODELS[@]}"; do
  for S in $SEEDS; do
    RUN=$OUT/train/${NAME}_seed$S
    if [[ ! -f $RUN/last.pt ]]; then
      $T train --model "${MODELS[$NAME]}" --data "$DATA" --out "$RUN" "${RECIPE[@]}" --seed $S
    fi
    [[ -f $OUT/eval/${NAME}_seed${S}_synthetic.json ]] || \
      $T eval "$RUN/last.pt" --data "$DATA" --split test --out "$OUT/eval/${NAME}_seed${S}_synthetic.json"
    if [[ -n "${FIXTURE:-}" && ! -f $OUT/eval/${NAME}_seed${S}_fixture.json ]]; then
      $T eval "$RUN/last.pt" --data "$FIXTURE" --split test --out "$OUT/eval/${NAME}_seed${S}_fixture.json"
    fi
  done
done

# 5. the random architectures on the second test set (their synthetic mIoU is in their trial tables)
if [[ -n "${FIXTURE:-}" ]]; then
  for CKPT in "$OUT"/random_*_seed*/trials/random-*/train/last.pt; do
    [[ -f $CKPT ]] || continue
    TRIAL=$(basename "$(dirname "$(dirname "$CKPT")")")              # random-003
    RUN=$(basename "$(dirname "$(dirname "$(dirname "$(dirname "$CKPT")")")")")  # random_fasterseg_seed1
    SPACE=${RUN#random_}; SPACE=${SPACE%_seed*}; S=${RUN##*_seed}
    EVAL=$OUT/eval/random-$SPACE-${TRIAL#random-}_seed${S}_fixture.json
    [[ -f $EVAL ]] || $T eval "$CKPT" --data "$FIXTURE" --split test --out "$EVAL"
  done
fi

# 6. measured latency of every hand-trained network (ONNX Runtime, CPU); the random trials' are in their tables
mkdir -p "$OUT/bench"
for NAME in "${!MODELS[@]}"; do
  [[ -f $OUT/bench/$NAME.jsonl ]] || \
    $T bench "$OUT/train/${NAME}_seed0/last.pt" --runtime onnxruntime --device cpu "${BENCH[@]}" --out "$OUT/bench/$NAME.jsonl"
done

# the band by measurement, checked apart from the selection: each space's searched network timed again beside its
# random (and NNI) architectures, in turns (band_check.py)
shopt -s nullglob  # a search that trained nothing has no trials/*/arch.json
FS_ARCHS=("$OUT"/random_fasterseg_seed$FIRST/trials/random-*/arch.json "$OUT"/nni_fasterseg_$TUNER/trials/nni-*/arch.json)
SM_ARCHS=("$OUT"/random_sparsemask_seed$FIRST/trials/random-*/arch.json)
shopt -u nullglob
if (( ${#FS_ARCHS[@]} )) && [[ ! -f $OUT/bench/fasterseg-band.jsonl ]]; then
  ${PYTHON:-python} "$HERE/band_check.py" "$OUT/bench/fasterseg-band.jsonl" "$STUDENT" "${FS_ARCHS[@]}" "${BAND_CHECK[@]}"
fi
if (( ${#SM_ARCHS[@]} )) && [[ ! -f $OUT/bench/sparsemask-band.jsonl ]]; then
  ${PYTHON:-python} "$HERE/band_check.py" "$OUT/bench/sparsemask-band.jsonl" "$SPARSEMASK" "${SM_ARCHS[@]}" "${BAND_CHECK[@]}"
fi

# 7. the table and the plot
${PYTHON:-python} "$HERE/report.py" "$OUT" "$DEST"
echo "done: $OUT (random: random_*/trials.csv, NNI: nni_*/trials.csv, trained: eval/*.json, latency: bench/*.jsonl); report in $DEST"
