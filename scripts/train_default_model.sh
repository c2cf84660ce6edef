#!/usr/bin/env bash
# Train the shipped default model (models/hle_street.pt) exactly as it was trained: config/synthetic_street.yaml
# in three resumable stages on the 2-core CPU development machine (docs/RESULTS.md, "default model" section).
#
#   1. steps 0-2000 of a 2000-step polynomial schedule                       -> runs/street/final.pt
#   2. a warm restart: steps 2000-2400 of a 4000-step schedule (lr back to 0.54 x base), stopped at 2400
#   3. steps 2400-3400 of a 3400-step schedule (lr from 0.33 x base down to 0) -> runs/street4k/final.pt
#
# The stages are what the compute of two sessions allowed (stage 2 was cut short to finish within a session); a
# single `hle train --config config/synthetic_street.yaml --set train.steps=3400` is the plain recipe of the same
# budget and was not run. Every stage is resumable (`--resume <dir>/last.pt` with the same arguments); resuming
# is exact (test/core/test_training.py). Then: scripts/release_default_model.sh runs/street4k runs/release4k
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
HLE=${HLE:-.venv/bin/hle}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
RECIPE=config/synthetic_street.yaml
[ -f runs/street/final.pt ] || \
  $HLE train --config $RECIPE --set train.steps=2000 --set train.out_dir=runs/street
[ -f runs/street4k/last.pt ] || \
  $HLE train --config $RECIPE --resume runs/street/final.pt --set train.steps=4000 --set train.stop_at=2400 \
    --set train.out_dir=runs/street4k
$HLE train --config $RECIPE --resume runs/street4k/last.pt --set train.steps=3400 --set train.out_dir=runs/street4k
