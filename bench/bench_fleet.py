"""Fleet evaluation (``hle bag-eval --bags``): serial vs process pool vs a local Ray runtime, in one run.

Writes ``--bags`` synthetic camera bags (``--frames`` frames of ``--size``, one clip each, seeds 1000+i; not
timed), then runs the real command once per executor, each as a fresh process (what a user pays: Python and torch
import, model load, worker start-up included), on the same bags with the same settings (``--backend torch
--device cpu``, no plots or overlays):

* ``serial``: ``--serial --threads <cores>`` (one process, torch on every core);
* ``pool``: ``--workers W`` (W processes, cores // W torch threads each);
* ``ray``: ``--ray --workers W`` (starts a local Ray runtime of W CPUs, one task per bag, shuts it down).

Reports wall clock per executor and its ratio to serial, Ray's start-up (``ray.init``, from the run's
fleet.json), the per-frame pipeline latency and what a worker returns per bag, checks that the three runs counted
the same frames and prints the largest difference of their fleet PQ / STQ / VPQ (serial runs torch on every core,
the workers on one thread each, so equality is up to floating-point order; the tests compare at equal threads).
Example (the figures of docs/RESULTS.md)::

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_fleet.py --bags 8 --frames 8 --size 128x256 \\
        --json runs/results/fleet.json
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

IMG, GT = "/camera/image_raw", "/camera/panoptic_gt"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bags", type=int, default=8, help="number of synthetic bags (default 8)")
    p.add_argument("--frames", type=int, default=8, help="frames per bag (default 8)")
    p.add_argument("--size", default="128x256", help="frame size HxW (default 128x256)")
    p.add_argument("--model", type=Path, default=ROOT / "models" / "hle_street.pt", help="model file")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="pool / Ray workers (default: cores)")
    p.add_argument("--executors", nargs="+", default=["serial", "pool", "ray"], choices=["serial", "pool", "ray"])
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    p.add_argument("--keep", type=Path, default=None, help="write bags and outputs here (default: a temp folder)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from hle_core.allocator import keep_freed_memory

    print(f"memory allocator: {keep_freed_memory()}")   # as hle and the node do; HLE_KEEP_FREED_MEMORY=0: off
    from hle_core.bags import write_synthetic_bag

    h, w = (int(v) for v in args.size.lower().split("x"))
    cores = os.cpu_count() or 1
    tmp = tempfile.TemporaryDirectory(prefix="bench_fleet_") if args.keep is None else None
    work = Path(tmp.name) if tmp is not None else args.keep
    bag_dir = work / "bags"
    bag_dir.mkdir(parents=True, exist_ok=True)
    for i in range(args.bags):
        write_synthetic_bag(bag_dir / f"bag_{i:03d}.mcap", num_clips=1, frames=args.frames, size=(h, w),
                            seed=1000 + i, fps=10.0, overwrite=True, progress=False)
    print(f"# {args.bags} bags x {args.frames} frames of {h}x{w}; model {args.model}; {cores} cores; "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    flags = {"serial": ["--serial", "--threads", str(cores)], "pool": ["--workers", str(args.workers)],
             "ray": ["--ray", "--workers", str(args.workers)]}
    results: dict[str, dict] = {}
    for ex in args.executors:
        out = work / f"out_{ex}"
        cmd = [sys.executable, "-m", "hle_core.cli", "bag-eval", "--bags", str(bag_dir), "--image-topic", IMG,
               "--gt-topic", GT, "--model", str(args.model), "--backend", "torch", "--device", "cpu",
               "--no-plots", "--overlays", "0", "--no-progress", "--recompute", "--out", str(out), *flags[ex]]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            print(proc.stdout[-2000:], proc.stderr[-4000:], sep="\n", file=sys.stderr)
            raise SystemExit(f"{ex}: exit status {proc.returncode}")
        fleet = json.loads((out / "fleet.json").read_text())
        ok = [b for b in fleet["bags"] if b["status"] == "ok"]
        # what a worker hands back per bag (Ray: the task's return object): the bag's files + its result.json
        returned = [sum(f.stat().st_size for f in (out / "bags" / b["key"]).iterdir()) for b in ok]
        results[ex] = {"wall_s": wall, "run": fleet["run"], "fleet": fleet["fleet"], "cmd": " ".join(cmd),
                       "bag_elapsed_s": [b["elapsed_s"] for b in ok], "bag_frames": [b["frames_evaluated"] for b in ok],
                       "returned_bytes_per_bag": sum(returned) / max(len(returned), 1)}
        print(f"{ex}: {wall:.1f} s", flush=True)

    ref = results[args.executors[0]]["fleet"]
    for ex, r in results.items():        # serial runs torch on every core, the workers on one thread each: equal
        f = r["fleet"]                   # only up to float summation order (the tests compare at equal threads)
        for k in ("frames_total", "frames_evaluated", "frames_scored"):
            if f[k] != ref[k]:
                raise SystemExit(f"{ex}: fleet {k} {f[k]} differs from {args.executors[0]}'s {ref[k]}")
        r["max_abs_diff_vs_first"] = max(abs(f[k] - ref[k]) for k in ("PQ", "PQ_th", "PQ_st", "STQ", "AQ", "SQ_sem",
                                                                          "VPQ"))
    frames = ref["frames_evaluated"]
    base = results["serial"]["wall_s"] if "serial" in results else None
    print(f"\n{'executor':8} {'workers x threads':>17} {'wall [s]':>9} {'vs serial':>9} {'frames/s':>9} "
          f"{'Ray init [s]':>12}")
    for ex, r in results.items():
        run = r["run"]
        ratio = f"{base / r['wall_s']:.2f}x" if base else "-"
        init = f"{run['ray_init_s']:.1f}" if run.get("ray_init_s") is not None else "-"
        print(f"{ex:8} {run['workers']:>9} x {run['threads']:<5} {r['wall_s']:9.1f} {ratio:>9} "
              f"{frames / r['wall_s']:9.2f} {init:>12}")
    print(f"\nfleet: {ref['bags']} bags, {frames} frames evaluated, PQ {100 * ref['PQ']:.2f}, STQ "
          f"{100 * ref['STQ']:.2f}, VPQ {100 * ref['VPQ']:.2f}; largest |difference| of PQ / STQ / VPQ terms to "
          f"{args.executors[0]}: " + ", ".join(f"{ex} {r['max_abs_diff_vs_first']:.1e}" for ex, r in results.items()))
    for ex, r in results.items():
        t = r["fleet"]["latency_ms"].get("total", {})
        infer = r["fleet"]["latency_ms"].get("infer", {})
        per_frame = 1000 * sum(r["bag_elapsed_s"]) / max(sum(r["bag_frames"]), 1)
        print(f"{ex}: pipeline latency total p50 {t.get('p50', float('nan')):.1f} ms (infer p50 "
              f"{infer.get('p50', float('nan')):.1f} ms) over {t.get('n', 0)} frames after warm-up; worker time per "
              f"frame incl. bag reading, scoring, reports and the first bag's model load {per_frame:.1f} ms; "
              f"returned per bag {r['returned_bytes_per_bag'] / 1024:.1f} KiB")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"bags": args.bags, "frames": args.frames, "size": [h, w], "cores": cores,
                                         "model": str(args.model), "results": results}, indent=1))
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
