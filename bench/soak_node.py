"""Soak test of the panoptic node end to end on real DDS: a stream of images at a fixed rate for a long time.

Starts ``hle_ros.panoptic_node`` as its own process (own ROS_DOMAIN_ID, localhost discovery), publishes
``--frames`` images at ``--rate`` Hz, and per time window reports: frames published / answered, latency
(publish → ~/panoptic received, from the header stamp) percentiles, the node's own counters from
/diagnostics (dropped because inference was busy, rejected, failed), the frames in flight inside the node
(received − processed − dropped − rejected − failed: bounded by the latest-frame slot, must not grow) and the
node's resident memory. What to look for: flat latency percentiles, no growth of in-flight frames, RSS flat
after warm-up. Model: an untrained small checkpoint (built here) unless ``--model`` is given. Examples::

    OMP_NUM_THREADS=1 .venv/bin/python bench/soak_node.py --frames 300 --window-s 2
    .venv/bin/python bench/soak_node.py --model default --video /usr/share/doc/opencv-doc/examples/data/vtest.avi \
        --height 480 --width 640 --frames 300 --rate 30 --node-threads 2                   # the real video
    .venv/bin/python bench/soak_node.py --frames 10000 --rate 30 --json soak.json          # ~6 min
    .venv/bin/python bench/soak_node.py --model hle.pt --backend tensorrt --device cuda --height 1024 --width 2048
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=10000, help="images to publish")
    p.add_argument("--rate", type=float, default=30.0, help="publishing rate [Hz]")
    p.add_argument("--video", default=None,
                   help="publish the frames of this video (resized to --height x --width, looped) instead of "
                        "random images, e.g. /usr/share/doc/opencv-doc/examples/data/vtest.avi (Debian opencv-doc)")
    p.add_argument("--video-frames", type=int, default=120, help="frames read from --video (then looped)")
    p.add_argument("--height", type=int, default=240, help="image height")
    p.add_argument("--width", type=int, default=320, help="image width")
    p.add_argument("--model", default="", help="model file (default: an untrained small checkpoint built here); "
                                                "'default': no model parameter, i.e. the node's shipped default "
                                                "model at its default input size")
    p.add_argument("--backend", default="torch", help="node parameter backend")
    p.add_argument("--device", default="cpu", help="node parameter device")
    p.add_argument("--fast-downsample", type=int, default=-1, help="node parameter decoder.fast_downsample")
    p.add_argument("--reliability", default="reliable", choices=["reliable", "best_effort"],
                   help="node parameter qos.reliability (of its image subscription)")
    p.add_argument("--window-s", type=float, default=30.0, help="report window [s]")
    p.add_argument("--domain-id", type=int, default=150 + os.getpid() % 80, help="ROS_DOMAIN_ID for the run")
    p.add_argument("--node-threads", type=int, default=1, help="OMP_NUM_THREADS of the node process")
    p.add_argument("--param", action="append", default=[], metavar="NAME:=VALUE",
                   help="another node parameter (repeatable), e.g. --param pipeline_overlap:=false")
    p.add_argument("--json", default="", help="write the per-window table and the summary to this file")
    return p.parse_args(argv)


def build_small_model(path: Path) -> Path:
    import torch

    from hle_core.config import HLEConfig
    from hle_core.model import build_model, save_checkpoint

    cfg = HLEConfig()
    cfg.model.pretrained = None
    cfg.model.aspp_channels = cfg.model.decoder_channels = 16
    cfg.model.low_level_channels = 8
    torch.manual_seed(0)
    return save_checkpoint(path, build_model(cfg))


def video_images(path: str, num: int, height: int, width: int) -> list[np.ndarray]:
    """The first ``num`` frames of a video as RGB ``height × width`` uint8 arrays (area interpolation)."""
    import cv2

    if not Path(path).is_file():
        raise SystemExit(f"--video {path}: no such file (Debian: apt-get install opencv-doc for vtest.avi)")
    cap = cv2.VideoCapture(path)
    images = []
    while len(images) < num:
        ok, frame = cap.read()
        if not ok:
            break
        if frame.shape[:2] != (height, width):
            frame = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
        images.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    cap.release()
    if not images:
        raise SystemExit(f"--video {path}: OpenCV read no frame")
    return images


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def percentile(v: list[float], q: float) -> float:
    return float(np.percentile(v, q)) if v else float("nan")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="hle_soak_"))
    model = args.model or str(build_small_model(tmp / "small.pt"))
    model_param = [] if model == "default" else ["-p", f"model:={model}"]
    env = dict(os.environ, ROS_DOMAIN_ID=str(args.domain_id), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               OMP_NUM_THREADS=str(args.node_threads))
    log = tmp / "node.log"
    node_proc = subprocess.Popen(
        [sys.executable, "-m", "hle_ros.panoptic_node", "--ros-args", "--params-file",
         str(ROOT / "config" / "panoptic.yaml"), *model_param, "-p", f"backend:={args.backend}",
         "-p", f"device:={args.device}", "-p", f"decoder.fast_downsample:={args.fast_downsample}",
         "-p", f"qos.reliability:={args.reliability}", *[a for v in args.param for a in ("-p", v)]],
        cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)

    os.environ.update(ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", FASTDDS_BUILTIN_TRANSPORTS="LARGE_DATA")
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from hle_ros.conversions import array_to_image
    from hle_ros.msg import PanopticSegmentation

    ctx = rclpy.Context()
    rclpy.init(args=[], context=ctx, domain_id=args.domain_id)   # not sys.argv: --param NAME:=V is no remap
    node = rclpy.create_node("hle_soak_driver", context=ctx)
    lock = threading.Lock()
    latencies: list[tuple[float, float]] = []            # (received at, latency ms)
    diag: dict[str, str] = {}

    def on_panoptic(msg: PanopticSegmentation) -> None:
        now = time.time()
        sent = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        with lock:
            latencies.append((now, (now - sent) * 1e3))

    def on_diag(msg: DiagnosticArray) -> None:
        for st in msg.status:
            if st.hardware_id == "/hle_panoptic":
                with lock:
                    diag.clear()
                    diag.update({kv.key: kv.value for kv in st.values})

    node.create_subscription(PanopticSegmentation, "/hle_panoptic/panoptic", on_panoptic, 10)
    node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
    pub = node.create_publisher(Image, "image", QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()

    if args.video:
        images = video_images(args.video, args.video_frames, args.height, args.width)
    else:
        rng = np.random.default_rng(0)
        images = [rng.integers(0, 256, (args.height, args.width, 3), dtype=np.uint8) for _ in range(8)]
    frames = [array_to_image(image, "rgb8") for image in images]
    t_wait = time.monotonic()
    while pub.get_subscription_count() == 0:
        if node_proc.poll() is not None or time.monotonic() - t_wait > 120:
            print(f"node did not come up (exit {node_proc.poll()}):\n{log.read_text()}", file=sys.stderr)
            return 1
        time.sleep(0.1)
    print(f"node up after {time.monotonic() - t_wait:.1f} s; {args.frames} frames {args.height}x{args.width} "
          f"({args.video or 'random pixels'}) "
          f"at {args.rate:g} Hz, windows of {args.window_s:g} s, model {model}, backend {args.backend} "
          f"on {args.device}")
    header = (f"{'t [s]':>7s} {'sent':>6s} {'answered':>8s} {'p50 ms':>8s} {'p90 ms':>8s} {'p99 ms':>8s} "
              f"{'dropped':>8s} {'rejected':>8s} {'failed':>6s} {'in-flight':>9s} {'RSS MiB':>8s}")
    print(header)
    windows = []
    period = 1.0 / args.rate
    t0 = time.monotonic()
    next_report = t0 + args.window_s
    seen = 0
    for i in range(args.frames + 1):
        now = time.monotonic()
        if now >= next_report or i == args.frames:
            if i == args.frames:
                time.sleep(1.5)                       # let the last answers and a diagnostics report arrive
            with lock:
                window = [lat for _, lat in latencies[seen:]]
                seen = len(latencies)
                d = dict(diag)
            counters = {k: int(d.get(k, "0")) for k in ("received", "processed", "dropped", "rejected", "failed")}
            in_flight = counters["received"] - counters["processed"] - counters["dropped"] - counters["rejected"] \
                - counters["failed"]
            row = {"t_s": round(time.monotonic() - t0, 1), "sent": i, "answered": seen,
                   "p50_ms": percentile(window, 50), "p90_ms": percentile(window, 90),
                   "p99_ms": percentile(window, 99), "dropped": counters["dropped"],
                   "rejected": counters["rejected"], "failed": counters["failed"], "in_flight": in_flight,
                   "rss_mib": rss_mib(node_proc.pid),
                   # the node's own mean time per pipeline stage over its last diagnostics window (ms)
                   "node_stages_ms": {k[len("stage_"):-len("_ms")]: round(float(v), 2) for k, v in d.items()
                                      if k.startswith("stage_") and k.endswith("_ms")}}
            windows.append(row)
            print(f"{row['t_s']:7.1f} {i:6d} {seen:8d} {row['p50_ms']:8.1f} {row['p90_ms']:8.1f} "
                  f"{row['p99_ms']:8.1f} {row['dropped']:8d} {row['rejected']:8d} {row['failed']:6d} "
                  f"{in_flight:9d} {row['rss_mib']:8.1f}", flush=True)
            next_report += args.window_s
            if i == args.frames:
                break
        msg = frames[i % len(frames)]
        stamp = time.time()
        msg.header.stamp.sec, msg.header.stamp.nanosec = int(stamp), int((stamp % 1) * 1e9)
        msg.header.frame_id = "soak"
        pub.publish(msg)
        sleep = t0 + (i + 1) * period - time.monotonic()
        if sleep > 0:
            time.sleep(sleep)

    node_proc.send_signal(signal.SIGINT)
    t_stop = time.monotonic()
    rc = node_proc.wait(timeout=30)
    stop_s = time.monotonic() - t_stop
    executor.shutdown(timeout_sec=1)            # ends spin() in the spinner thread: join it before tearing down
    spinner.join(timeout=5)
    node.destroy_node()                         # subscriptions and their DDS readers go before the context
    rclpy.try_shutdown(context=ctx)

    steady = windows[1:] if len(windows) > 2 else windows
    rss = [w["rss_mib"] for w in steady]
    p50 = [w["p50_ms"] for w in windows if not np.isnan(w["p50_ms"])]
    summary = {
        "frames_sent": args.frames, "answered": windows[-1]["answered"],
        "answered_fraction": windows[-1]["answered"] / max(args.frames, 1),
        "p50_ms_first_last_window": [p50[0], p50[-1]] if p50 else None,
        "p50_ms_median_over_windows": statistics.median(p50) if p50 else None,
        "in_flight_max": max(w["in_flight"] for w in windows),
        "rss_mib_after_warmup_min_max": [min(rss), max(rss)],
        "node_stages_ms_last_window": windows[-1]["node_stages_ms"],
        "node_exit_code": rc, "sigint_to_exit_s": round(stop_s, 3), "node_log": str(log),
    }
    print("summary:", json.dumps(summary))
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "windows": windows, "summary": summary}, indent=1))
    return 0 if rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
