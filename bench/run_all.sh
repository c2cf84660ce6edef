#!/usr/bin/env bash
# Every measurement quoted in docs/RESULTS.md, in sequence (they must not share the CPU with each other).
# Usage: bench/run_all.sh [SECTION...]   sections: loss decode backends node pq soak tracking fleet train (default: all)
# Outputs: runs/results/<section>.{txt,json}. Run on a quiet machine; `uptime` is logged before each section.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=.venv/bin/python
OUT=runs/results
MODEL=${MODEL:-models/hle_street.pt}
mkdir -p "$OUT"
export PYTHONPATH=. OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
sections=("$@")
[ ${#sections[@]} -eq 0 ] && sections=(loss decode backends node pq soak tracking fleet train)

run() {   # run NAME CMD...: log the command, the load and the output
  local name=$1; shift
  { echo "# $(date -u +%FT%TZ) $(uptime)"; echo "# \$ $*"; } > "$OUT/$name.txt"
  "$@" 2>&1 | sed -u "s/.*\r//" | tee -a "$OUT/$name.txt"   # keep the last state of progress bars
}

for s in "${sections[@]}"; do
  case $s in
    train) run train_throughput $PY bench/bench_train_step.py --config config/synthetic_street.yaml --steps 5 \
             --warmup 1 --rounds 2 --scenes 16 --json "$OUT/train_throughput.json" ;;
    loss) run loss $PY bench/bench_loss.py --instances 1 10 50 --height 256 --width 512 --threads 2 ;;
    decode) run decode $PY bench/bench_decode.py --sizes 512x1024,1024x2048 --repeats 3 --threads 2 \
              --json "$OUT/decode.json" ;;
    backends) run backends $PY bench/bench_backends.py --backends torch onnxruntime \
                --resolutions 512x1024 1024x2048 --backbones mobilenet_v2 resnet50 --repeats 3 --warmup 1 \
                --threads 2 --out "$OUT/backends.json" ;;
    node) run node $PY bench/bench_node.py --frames 10 --warmup 2 ;;
    pq) run pq env OMP_NUM_THREADS=1 $PY bench/bench_pq.py --repeats 5 ;;   # sparse (80 pairs) + dense (60), 512x1024
    soak) run soak $PY bench/soak_node.py --frames 10000 --rate 30 --height 240 --width 320 --window-s 30 \
            --json "$OUT/soak.json" ;;
    tracking)   # embeddings vs box-overlap-only tracker on an unseen-seed synthetic video bag
      $PY -m hle_core.cli synth --video --bag "$OUT/tracking_bag.mcap" --num 4 --frames 40 --size 128x256 \
        --seed 777 --overwrite > /dev/null
      run tracking_embedding $PY -m hle_core.cli bag-eval --bag "$OUT/tracking_bag.mcap" \
        --image-topic /camera/image_raw --gt-topic /camera/panoptic_gt --model "$MODEL" --backend torch \
        --device cpu --out "$OUT/tracking_embedding" --no-progress
      run tracking_box $PY -m hle_core.cli bag-eval --bag "$OUT/tracking_bag.mcap" \
        --image-topic /camera/image_raw --gt-topic /camera/panoptic_gt --model "$MODEL" --backend torch \
        --device cpu --box-tracker --out "$OUT/tracking_box" --no-progress ;;
    fleet) run fleet env OMP_NUM_THREADS=1 $PY bench/bench_fleet.py --bags 8 --frames 8 --size 128x256 \
             --model "$MODEL" --json "$OUT/fleet.json" ;;
    *) echo "unknown section $s" >&2; exit 2 ;;
  esac
done
