#!/usr/bin/env bash
# The standing GPU checks, prepared as one command for a lent GPU machine (the session's device tool: at most 10
# minutes a command and 15 minutes of device time a session, so everything here is sized to end in ~9 minutes):
#
#   1. train the default network on the GPU: config/synthetic_gpu.yaml (AMP, batch 32) started from the shipped
#      weights (models/hle_street.pt), for TRAIN_SECONDS; its release weights come back as $OUT/hle_street_gpu.pt
#      (evaluate and release them on the CPU machine: scripts/release_default_model.sh on the run folder);
#   2. the GPU sections of bench/: torch fp32 / fp16 / fp16 + CUDA graphs at 1024x2048 (network, decode, end to
#      end: bench_backends.py), the decode of the trained model's real outputs on the GPU (bench_decode_trained.py
#      --device cuda), and the node's per-frame cost beyond the network (bench_node.py, when rclpy is importable).
#
# Every result lands under $OUT (the device tool brings back at most 8 files: this writes 7). The device's image
# has python3 with torch but not this project's virtual environment: the code runs from the checkout
# (PYTHONPATH=.), ImageNet weights are not needed (the run starts from the shipped weights).
#
# NEVER RUN ON A GPU: no GPU has been lent to this project so far. What ran is the CPU smoke of the same script
# (test/core/test_gpu_checks.py: GPU_CHECKS_DEVICE=cpu, a few scenes, a few seconds of training), which checks
# the commands, their options and the files they write, not any GPU figure.
#
#   OUT=/tmp/out scripts/gpu_checks.sh                    # on the GPU machine (the device tool sets OUT)
#   GPU_CHECKS_DEVICE=cpu SCENES=4 VAL_SCENES=2 BATCH_SIZE=2 TRAIN_STEPS=2 NUM_WORKERS=0 BENCH=quick OUT=/tmp/out \
#       scripts/gpu_checks.sh                                 # the CPU smoke of test/core/test_gpu_checks.py
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=${OUT:-runs/gpu_checks}
PY=${PYTHON:-python3}
DEVICE=${GPU_CHECKS_DEVICE:-cuda}
TRAIN_SECONDS=${TRAIN_SECONDS:-330}
SCENES=${SCENES:-4000}
BENCH=${BENCH:-full}
BATCH_SIZE=${BATCH_SIZE:-32}
TRAIN_STEPS=${TRAIN_STEPS:-3000}
VAL_SCENES=${VAL_SCENES:-32}
NUM_WORKERS=${NUM_WORKERS:-8}
RUN=${RUN_DIR:-runs/gpu_train}
mkdir -p "$OUT" "$RUN"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
LOG=$OUT/gpu_checks.log
log() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$LOG"; }
step() {   # step NAME COMMAND...: run, log its exit status and wall time, go on whatever it returns
  local name=$1 t0=$SECONDS rc; shift
  log "$name: $*"
  "$@" >> "$LOG" 2>&1; rc=$?
  log "$name: exit $rc after $((SECONDS - t0)) s"
}

{ date -u; nvidia-smi 2>&1 || echo "nvidia-smi: not available"; $PY -c 'import torch; print("torch", torch.__version__,
  "cuda", torch.version.cuda, torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA device")'
  nproc; free -g; } > "$OUT/machine.txt" 2>&1

# 1. training, stopped by time: last.pt is written every 100 steps (and at the end of a shorter schedule), final.pt
#    when the schedule of TRAIN_STEPS ends first
step train timeout --signal=INT "$TRAIN_SECONDS" $PY -m hle_core.cli train --config config/synthetic_gpu.yaml \
  --set train.init_weights=models/hle_street.pt --set hle.model.pretrained=null --set train.device="$DEVICE" \
  --set train.data.num_train="$SCENES" --set train.data.num_val="$VAL_SCENES" --set train.batch_size="$BATCH_SIZE" --set train.steps="$TRAIN_STEPS" \
  --set train.num_workers="$NUM_WORKERS" --set train.data.cache_dir="$RUN/scene_cache" \
  --set train.ckpt_every=100 --set train.val_every=0 --set train.image_every=0 --set train.out_dir="$RUN"
CKPT=$RUN/final.pt; [ -f "$CKPT" ] || CKPT=$RUN/last.pt
if [ -f "$CKPT" ]; then
  step export $PY -m hle_core.cli export checkpoint --checkpoint "$CKPT" --out "$OUT/hle_street_gpu.pt"
else
  log "export: no checkpoint in $RUN (training ended before its first 100 steps)"
fi
grep -a "step .*loss\|s/step\|step/s" "$RUN"/*.log 2>/dev/null | tail -3 >> "$LOG"

# 2. benchmarks on the shipped model
if [ "$BENCH" = quick ]; then SIZES=(--resolutions 64x128); REPS=(--repeats 1); else SIZES=(--resolutions 1024x2048); REPS=(--repeats 10); fi
FP16=(); GRAPHS=(); [ "${DEVICE%%:*}" = cuda ] && FP16=(--fp16) && GRAPHS=(--torch-options channels_last cuda_graphs)
step backends_fp32 $PY bench/bench_backends.py --backends torch --backbones mobilenet_v2 --checkpoint models/hle_street.pt \
  --device "$DEVICE" "${SIZES[@]}" "${REPS[@]}" --out "$OUT/backends_fp32.json"
step backends_fp16_graphs $PY bench/bench_backends.py --backends torch --backbones mobilenet_v2 \
  --checkpoint models/hle_street.pt --device "$DEVICE" "${FP16[@]}" "${GRAPHS[@]}" "${SIZES[@]}" "${REPS[@]}" \
  --out "$OUT/backends_fp16_graphs.json"
if [ "$BENCH" = quick ]; then DSIZES=(--sizes 128x256 --scenes 1 --video '' --video-input-size '' --repeats 1)
else DSIZES=(--repeats 5 --worst-case); fi
if [ "$BENCH" = quick ]; then NODE=(--height 128 --width 256 --frames 2 --warmup 1); else NODE=(--frames 20); fi
step decode_trained $PY bench/bench_decode_trained.py --backend torch --device "$DEVICE" "${DSIZES[@]}" \
  --json "$OUT/decode_trained.json"
if $PY -c "import rclpy" 2>/dev/null; then
  step node $PY bench/bench_node.py --device "$DEVICE" "${NODE[@]}"
else
  log "node: skipped (rclpy is not importable on this machine; bench/soak_node.py needs a ROS 2 install)"
fi
log "done"
