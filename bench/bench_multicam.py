"""Several cameras: one node (``cameras: [c0, c1, ...]``, one network, batched) vs one single-camera node process per
camera, end to end over real DDS (Fast DDS, loopback), per-camera latency and total memory.

For each camera count N (``--cameras 1 2 4``) and each layout:

* ``one node``: one ``panoptic_node`` process with ``cameras:=[c0, ..., cN-1]`` (topics ``/c<i>/image`` →
  ``/hle_panoptic/c<i>/panoptic``);
* ``N processes``: N ``panoptic_node`` processes, node ``hle_panoptic_<i>`` remapped to ``/c<i>/image``;

the driver (this process) publishes one frame to every camera at the same instant (same stamp), waits until every
camera's PanopticSegmentation of that stamp has arrived (closed loop: no frame is dropped by the newest-frame
policy), and records per camera the latency publish → receipt (driver clock). After the timed frames it reads the
peak resident memory (VmHWM) of every node process and sums it. The images are synthetic street frames
(``hle_core.data.synthetic``) at ``--height`` x ``--width``; the model is the shipped default unless ``--model``.

Example (2-core CPU; each node process gets ``--threads`` OpenMP threads)::

    OMP_NUM_THREADS=2 .venv/bin/python bench/bench_multicam.py --cameras 1 2 4 --frames 20
"""
from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cameras", type=int, nargs="+", default=[1, 2, 4], help="camera counts to compare")
    p.add_argument("--frames", type=int, default=20, help="timed frame sets (one frame per camera each)")
    p.add_argument("--warmup", type=int, default=3, help="untimed frame sets first")
    p.add_argument("--height", type=int, default=480, help="camera image height")
    p.add_argument("--width", type=int, default=640, help="camera image width")
    p.add_argument("--model", default="", help="model file (default: the shipped default model, 256 x 512 input)")
    p.add_argument("--backend", default="torch", help="backend parameter of the nodes")
    p.add_argument("--device", default="cpu", help="device parameter of the nodes")
    p.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")),
                   help="OMP_NUM_THREADS of every node process")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for one frame set's outputs")
    p.add_argument("--batch-window-ms", type=float, default=None,
                   help="batch_window_ms of the one-node layout (default: the parameters file's)")
    p.add_argument("--layouts", nargs="+", default=["node", "processes"], choices=["node", "processes"])
    return p.parse_args(argv)


def node_env(threads: int, domain: int) -> dict[str, str]:
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
    env.pop("FASTDDS_BUILTIN_TRANSPORTS", None)
    return env


def start_nodes(args: argparse.Namespace, n: int, layout: str, domain: int, logdir: Path):
    """The node processes and, per camera, (image topic, panoptic topic)."""
    exe = str(Path(sys.executable).parent / "panoptic_node")
    common = ["--params-file", str(ROOT / "config" / "panoptic.yaml"), "-p", f"backend:={args.backend}",
              "-p", f"device:={args.device}", "-p", "qos.reliability:=reliable", "-p", "diagnostics.period:=5.0"]
    if args.model:
        common += ["-p", f"model:={args.model}"]
    cams = [f"c{i}" for i in range(n)]
    procs, topics = [], []
    if layout == "node":
        log = (logdir / f"node_{n}.log").open("w")
        window = [] if args.batch_window_ms is None else ["-p", f"batch_window_ms:={float(args.batch_window_ms)}"]
        procs.append(subprocess.Popen([exe, "--ros-args", *common, *window, "-p", f"cameras:=[{', '.join(cams)}]"],
                                      env=node_env(args.threads, domain), stdout=log, stderr=subprocess.STDOUT))
        topics = [(f"/{c}/image", f"/hle_panoptic/{c}/panoptic") for c in cams]
    else:
        for i, c in enumerate(cams):
            log = (logdir / f"proc_{n}_{i}.log").open("w")
            procs.append(subprocess.Popen([exe, "--ros-args", *common, "-r", f"__node:=hle_panoptic_{i}",
                                           "-r", f"image:=/{c}/image"],
                                          env=node_env(args.threads, domain), stdout=log, stderr=subprocess.STDOUT))
            topics.append((f"/{c}/image", f"/hle_panoptic_{i}/panoptic"))
    return procs, topics


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def run_one(args: argparse.Namespace, n: int, layout: str, frames: list[np.ndarray], domain: int,
            logdir: Path) -> dict:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    from hle_ros.conversions import array_to_image
    from hle_ros.msg import PanopticSegmentation
    from sensor_msgs.msg import Image

    procs, topics = start_nodes(args, n, layout, domain, logdir)
    context = rclpy.Context()
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    rclpy.init(context=context, domain_id=domain)
    node = rclpy.create_node("bench_multicam_driver", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    arrived: list[dict[int, float]] = [dict() for _ in topics]
    pubs = []
    for i, (image_topic, out_topic) in enumerate(topics):
        pubs.append(node.create_publisher(Image, image_topic, qos))
        node.create_subscription(PanopticSegmentation, out_topic,
                                 lambda m, i=i: arrived[i].__setitem__(m.header.stamp.sec, time.perf_counter()), qos)

    def spin_until(done, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                return False
            executor.spin_once(timeout_sec=0.005)
        return True

    try:
        if not spin_until(lambda: all(p.get_subscription_count() > 0 for p in pubs) and
                          all(node.count_publishers(t) > 0 for _, t in topics), 300.0):
            raise RuntimeError(f"{layout} x {n}: nodes not up; see {logdir}")
        latencies: list[list[float]] = [[] for _ in topics]
        wall0 = None
        for k in range(args.warmup + args.frames):
            if k == args.warmup:
                wall0 = time.perf_counter()
            sec = 1000 + k
            msgs = []
            for i in range(n):
                msg = array_to_image(frames[(k + i) % len(frames)], "rgb8")
                msg.header.stamp.sec, msg.header.frame_id = sec, f"c{i}"
                msgs.append(msg)
            sent = time.perf_counter()
            for pub, msg in zip(pubs, msgs):
                pub.publish(msg)
            if not spin_until(lambda: all(sec in a for a in arrived), args.timeout):
                raise RuntimeError(f"{layout} x {n}: frame set {sec} incomplete after {args.timeout} s")
            if k >= args.warmup:
                for i in range(n):
                    latencies[i].append((arrived[i][sec] - sent) * 1e3)
        wall = time.perf_counter() - wall0
        rss = sum(peak_rss_mib(p.pid) for p in procs)
    finally:
        executor.shutdown(timeout_sec=0.5)
        node.destroy_node()
        rclpy.try_shutdown(context=context)
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    flat = [v for per in latencies for v in per]
    return {
        "cameras": n, "layout": "one node" if layout == "node" else f"{n} process{'es' if n > 1 else ''}",
        "p50": statistics.median(flat), "p90": float(np.percentile(flat, 90)),
        "per_camera_p50": [statistics.median(v) for v in latencies],
        "fps_total": n * args.frames / wall, "rss_mib": rss,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from hle_core.allocator import keep_freed_memory

    print(f"memory allocator: {keep_freed_memory()}")   # as hle and the node do; HLE_KEEP_FREED_MEMORY=0: off
    from hle_core.data.synthetic import generate_video

    frames = [f.image for f in generate_video(4, size=(args.height, args.width), seed=5150).frames]
    logdir = Path(tempfile.mkdtemp(prefix="bench_multicam_"))
    window = "file default" if args.batch_window_ms is None else f"{args.batch_window_ms:g} ms"
    print(f"bench_multicam: {args.height}x{args.width} frames, model {args.model or 'shipped default'}, backend "
          f"{args.backend}, device {args.device}, {args.threads} thread(s) per node process, {args.frames} timed "
          f"frame sets (+{args.warmup} warm-up), one-node batch window {window}; logs in {logdir}", flush=True)
    rows = []
    for n in args.cameras:
        for layout in args.layouts:
            if layout == "processes" and n == 1 and "node" in args.layouts:
                continue                                # one camera: the two layouts are the same thing
            domain = 150 + (os.getpid() + len(rows)) % 50
            row = run_one(args, n, layout, frames, domain, logdir)
            rows.append(row)
            print(f"  {row['cameras']} camera(s), {row['layout']}: latency p50 {row['p50']:.0f} ms, p90 "
                  f"{row['p90']:.0f} ms (per camera p50 {', '.join(f'{v:.0f}' for v in row['per_camera_p50'])}), "
                  f"{row['fps_total']:.2f} frames/s in all, peak RSS {row['rss_mib']:.0f} MiB", flush=True)
    print("\n| cameras | layout | latency p50 [ms] | latency p90 [ms] | frames/s (all cameras) | peak RSS, sum [MiB] |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['cameras']} | {r['layout']} | {r['p50']:.0f} | {r['p90']:.0f} | {r['fps_total']:.2f} | "
              f"{r['rss_mib']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
