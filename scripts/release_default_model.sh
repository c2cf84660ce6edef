#!/usr/bin/env bash
# Release the shipped default model from a finished `hle train --config config/synthetic_street.yaml` run and
# measure it, as a new user would, on scenes and videos it never saw. Every figure of the "default model" section
# of docs/RESULTS.md comes from this script's outputs (OUT/*.txt, OUT/*/results.json, OUT/*/metrics.json).
#
# Seeds (none is used by more than one step):
#   1        training scenes (the recipe's train.data.train_seed)
#   1000003  validation during training (learning curve)
#   2000003  decoder tuning (hle tune-decoder)
#   9090917  evaluation, `hle synth --num 48 --seed 9090917 --split val` (the check named in issue 10)
#   4242     evaluation, a second fresh split (EVAL_SEEDS: more, e.g. 31415926 27182818)
#   31337    tracker tuning video (hle tune-tracker picks the tracker's default cost here)
#   5150     tracking report video (never tuned on)
#
# Usage: scripts/release_default_model.sh [RUN_DIR] [OUT_DIR]
#   defaults: runs/street17k runs/release17k (the last stage of scripts/train_default_model.sh)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
RUN=${1:-runs/street17k}
OUT=${2:-runs/release17k}
HLE=${HLE:-.venv/bin/hle}
OLD_MODEL=${OLD_MODEL:-}            # optional: a previous release to evaluate on the same scenes ("before")
TUNE_TRACKER=${TUNE_TRACKER:-1}     # 0: keep the tracker defaults (skip hle tune-tracker and the "tuned" row)
TRACK_MODES=${TRACK_MODES:-"default tuned embedding_only box"}
TEST_SCALE=${TEST_SCALE:-1.5}       # hle.model.test_scale of the release: 256x512 scenes run the network at 384x768
mkdir -p "$OUT"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
log() { echo "[release] $(date -u +%T) $*"; }

log "decoder tuning on seed 2000003 at test scale $TEST_SCALE"
$HLE tune-decoder --checkpoint "$RUN/final.pt" --synthetic 32 --synthetic-seed 2000003 --size 256x512 \
  --test-scale "$TEST_SCALE" --trials 40 --seed 0 --out "$OUT/decoder.yaml" --save-checkpoint "$OUT/final_tuned.pt" \
  --no-progress \
  | tee "$OUT/tune_decoder.txt"
$HLE export checkpoint --checkpoint "$OUT/final_tuned.pt" --out models/hle_street.pt
cp "$OUT/decoder.yaml" models/hle_street.decoder.yaml

for seed in ${EVAL_SEEDS:-9090917 4242}; do
  log "evaluation on hle synth seed $seed (48 scenes, 256x512)"
  [ -d "$OUT/val_$seed" ] || $HLE synth --out "$OUT/val_$seed" --num 48 --seed "$seed" --split val > /dev/null
  $HLE evaluate --checkpoint models/hle_street.pt --data "$OUT/val_$seed" --out "$OUT/eval_$seed" \
    | tee "$OUT/eval_$seed.txt"
  if [ -n "$OLD_MODEL" ]; then
    $HLE evaluate --checkpoint "$OLD_MODEL" --data "$OUT/val_$seed" --out "$OUT/eval_old_$seed" \
      | tee "$OUT/eval_old_$seed.txt"
  fi
done

log "tracking: tune on video seed 31337, report on seed 5150"
[ -e "$OUT/track_tune.mcap" ] || $HLE synth --video --bag "$OUT/track_tune.mcap" --num 3 --frames 40 --seed 31337 \
  --size 256x512 > /dev/null
[ -e "$OUT/track_eval.mcap" ] || $HLE synth --video --bag "$OUT/track_eval.mcap" --num 3 --frames 40 --seed 5150 \
  --size 256x512 > /dev/null
TOPICS=(--image-topic /camera/image_raw --gt-topic /camera/panoptic_gt)
if [ "$TUNE_TRACKER" = 1 ]; then
  $HLE tune-tracker --bag "$OUT/track_tune.mcap" "${TOPICS[@]}" --model models/hle_street.pt --backend torch \
    --device cpu --out "$OUT/tracker.yaml" --no-progress | tee "$OUT/tune_tracker.txt"
else
  TRACK_MODES=${TRACK_MODES//tuned/}
fi
# the previous default tracker (pure embedding cost, no spatial gate, no cascade), for comparison
cat > "$OUT/embedding_only.yaml" <<'YAML'
tracker: {use_embeddings: true, max_cosine_distance: 0.3, iou_gate: 0.0, class_gating: true, embedding_weight: 1.0,
          min_hits: 2, max_age: 30, momentum: 0.8, min_birth_score: 0.0, max_center_distance: 0.0,
          center_distance_growth: 0.0, cascade: false, max_birth_overlap: 1.0}
YAML
for mode in $TRACK_MODES; do
  case $mode in
    default) extra=() ;;
    tuned) extra=(--tracker-config "$OUT/tracker.yaml") ;;
    embedding_only) extra=(--tracker-config "$OUT/embedding_only.yaml") ;;
    box) extra=(--box-tracker) ;;
  esac
  $HLE bag-eval --bag "$OUT/track_eval.mcap" "${TOPICS[@]}" --model models/hle_street.pt --backend torch \
    --device cpu --out "$OUT/track_$mode" --no-progress "${extra[@]}" | tee "$OUT/track_$mode.txt"
done
log "done: $OUT"
