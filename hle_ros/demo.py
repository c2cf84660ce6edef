"""``make demo``: the whole product end to end on this machine, in one folder.

1. model     the default checkpoint (``models/hle_street.pt``, trained by ``hle train --config
             config/synthetic_street.yaml``; when the file is missing, a quick stand-in is trained here first
             with ``config/synthetic_small.yaml``), exported to ONNX
2. bag       a synthetic camera bag with ground truth (``hle synth --video --bag``), scenes from a seed never
             used in training
3. live      the real node (``python -m hle_ros.panoptic_node``) as its own process on real DDS, fed by the bag
             replay (``hle bag-play``); its ``~/panoptic`` messages are recorded into a bag
4. score     the recorded node output against the ground truth: PQ, STQ, VPQ, ID switches, embedding
             stability, latency (``hle bag-eval --pred-bag``), report + overlays
5. offline   the same bag through the same Pipeline without ROS (``hle bag-eval``), every frame

    python -m hle_ros.demo [--out demo_out] [--clips 2] [--frames 40] [--rate 0.5]

Everything lands in ``--out`` (named at the end). This module drives ROS (rclpy), so it lives in hle_ros;
all the ML work runs in hle_core.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = ROOT / "models" / "hle_street.pt"
DEFAULT_RECIPE = ROOT / "config" / "synthetic_small.yaml"
NODE_NAME = "hle_panoptic"
IMAGE_TOPIC = "/camera/image_raw"
GT_TOPIC = "/camera/panoptic_gt"
OUTPUT_TOPIC = f"/{NODE_NAME}/panoptic"
#: scenes of the demo bag come from this seed; training uses train_seed 1 and validation 1000003
DEMO_SEED = 20_211_125


class DemoError(RuntimeError):
    """A demo step failed; the message says which and where its log is."""


def _step(n: int, total: int, text: str) -> float:
    print(f"\n[demo {n}/{total}] {text}", flush=True)
    return time.perf_counter()


def _done(t0: float, text: str = "done") -> None:
    print(f"           {text} ({time.perf_counter() - t0:.1f} s)", flush=True)


# --- 1. model ------------------------------------------------------------------------------------------------
def ensure_model(model: Path, recipe: Path, out: Path) -> Path:
    """The checkpoint to run; trains it with ``hle train`` when missing (a few minutes on 2 cores)."""
    if model.is_file():
        return model
    print(f"           {model} is missing: training it now with {recipe} (progress below)", flush=True)
    run_dir = out / "train"
    subprocess.run([sys.executable, "-m", "hle_core.cli", "train", "--config", str(recipe), "--out", str(run_dir)],
                   check=True)
    return run_dir / "final.pt"


def export_model(checkpoint: Path, out: Path, size: tuple[int, int]) -> Path:
    """ONNX export (model config + class table in the metadata) for the node's onnxruntime backend."""
    from hle_core.runtime.export import export_onnx

    onnx_path = out / "model.onnx"
    export_onnx(checkpoint, onnx_path, height=size[0], width=size[1])
    return onnx_path


# --- 3. live run over DDS ------------------------------------------------------------------------------------
def _node_env(domain_id: int) -> dict[str, str]:
    return dict(os.environ, ROS_DOMAIN_ID=str(domain_id), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
                PYTHONUNBUFFERED="1")


def start_node(model: Path, backend: str, domain_id: int, log_path: Path) -> subprocess.Popen:
    """The node as its own process, parameters from config/panoptic.yaml plus the demo's overrides."""
    cmd = [sys.executable, "-m", "hle_ros.panoptic_node", "--ros-args",
           "--params-file", str(ROOT / "config" / "panoptic.yaml"),
           "-p", f"model:={model}", "-p", f"backend:={backend}", "-p", "device:=cpu",
           "-p", "qos.reliability:=reliable", "-r", f"image:={IMAGE_TOPIC}"]
    return subprocess.Popen(cmd, cwd=ROOT, env=_node_env(domain_id), stdout=log_path.open("w"),
                            stderr=subprocess.STDOUT)


def stop_node(proc: subprocess.Popen, timeout: float = 10.0) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def run_live(bag: Path, model: Path, backend: str, out: Path, rate: float, expected: int) -> dict[str, Any]:
    """Start the node, replay ``bag`` into it, record its ``~/panoptic`` output (raw CDR) into a bag."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    from hle_core.bags import BagWriter
    from hle_core.bags.types import PANOPTIC_TYPE, hle_typestore
    from hle_ros.bag_play import play_bag
    from hle_ros.msg import PanopticSegmentation
    from hle_ros.panoptic_node import configure_transport

    domain_id = 150 + os.getpid() % 80
    node_log = out / "node.log"
    proc = start_node(model, backend, domain_id, node_log)
    os.environ.update(ROS_DOMAIN_ID=str(domain_id), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    configure_transport()
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain_id)
    node = rclpy.create_node("hle_demo", context=context)
    recorded = out / "node_output.mcap"
    writer = BagWriter(recorded, typestore=hle_typestore(), overwrite=True)
    writer.add_topic(OUTPUT_TOPIC, PANOPTIC_TYPE)
    lock = threading.Lock()
    received: list[int] = []

    def on_panoptic(data: bytes) -> None:     # raw CDR: recorded exactly as the node published it
        now = time.time_ns()
        with lock:
            writer.write_raw(OUTPUT_TOPIC, now, data)
            received.append(now)

    node.create_subscription(PanopticSegmentation, OUTPUT_TOPIC, on_panoptic,
                             QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE), raw=True)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        # the node is up when it subscribes to the image topic (autostart walks it to active)
        deadline = time.monotonic() + 120.0
        while node.count_subscribers(IMAGE_TOPIC) == 0:
            if proc.poll() is not None:
                raise DemoError(f"the node exited with code {proc.returncode} during start-up; see {node_log}")
            if time.monotonic() > deadline:
                raise DemoError(f"the node did not subscribe to {IMAGE_TOPIC} within 120 s; see {node_log}")
            time.sleep(0.1)
        t0 = time.perf_counter()
        published = play_bag(bag, IMAGE_TOPIC, node, rate=rate, wait_s=10.0, reliability="reliable", depth=10)
        # wait for the last outputs (a frame in inference when the replay ended)
        settle = time.monotonic() + 10.0
        while time.monotonic() < settle:
            with lock:
                n = len(received)
            if n >= published:
                break
            time.sleep(0.2)
        time.sleep(0.5)
        wall = time.perf_counter() - t0
    finally:
        executor.shutdown(timeout_sec=1.0)
        node.destroy_node()
        rclpy.try_shutdown(context=context)
        code = stop_node(proc)
        with lock:
            writer.close()
    if code not in (0, -signal.SIGINT, 130):
        print(f"           warning: node exit code {code}; see {node_log}", flush=True)
    return {"published": published, "received": len(received), "replay_wall_s": wall, "recorded_bag": str(recorded),
            "node_log": str(node_log), "node_exit_code": code, "expected_frames": expected}


# --- summary -------------------------------------------------------------------------------------------------
def _missing(v: Any) -> bool:
    """None, NaN or not a number: shown as "-"."""
    try:
        return v is None or math.isnan(float(v))
    except (TypeError, ValueError):
        return True


def _pct(v: Any) -> str:
    return "-" if _missing(v) else f"{100 * float(v):.1f}"


def _num(v: Any, fmt: str = "{:.3f}") -> str:
    return "-" if _missing(v) else fmt.format(float(v))


def summary_table(rows: dict[str, dict[str, Any]]) -> str:
    """One line per run: frames, PQ / PQ_th / PQ_st, STQ (AQ), VPQ, ID switches, stability, latency."""
    head = ("run", "frames evaluated/total", "PQ", "PQ_th", "PQ_st", "STQ", "AQ", "VPQ", "ID switches",
            "d_cos same object / nearest other", "latency p50 / p90 ms")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, m in rows.items():
        pq, stq, vpq = m.get("pq") or {}, m.get("stq") or {}, m.get("vpq") or {}
        lat = (m.get("latency_ms") or {}).get("total") or {}
        stab = m.get("embedding_stability") or {}
        cells = (name, f"{m.get('frames_evaluated', 0)}/{m.get('frames_total', 0)}",
                 _pct((pq.get("All") or {}).get("pq")), _pct((pq.get("Things") or {}).get("pq")),
                 _pct((pq.get("Stuff") or {}).get("pq")), _pct(stq.get("STQ")), _pct(stq.get("AQ")),
                 _pct(vpq.get("VPQ")), _num(m.get("id_switches"), "{:.0f}"),
                 f"{_num(stab.get('mean_same_object_distance'))} / {_num(stab.get('mean_nearest_other_distance'))}",
                 f"{_num(lat.get('p50'), '{:.0f}')} / {_num(lat.get('p90'), '{:.0f}')}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    ap.add_argument("--model", default=str(DEFAULT_MODEL), help="checkpoint (default: the committed synthetic one)")
    ap.add_argument("--recipe", default=str(DEFAULT_RECIPE), help="recipe to train with when the model is missing")
    ap.add_argument("--backend", default="onnxruntime", choices=("onnxruntime", "torch", "auto"),
                    help="node backend (default onnxruntime on the exported ONNX file)")
    ap.add_argument("--clips", type=int, default=2, help="synthetic clips in the bag (default 2)")
    ap.add_argument("--frames", type=int, default=40, help="frames per clip (default 40)")
    ap.add_argument("--fps", type=float, default=10.0, help="camera rate recorded in the bag (default 10)")
    ap.add_argument("--rate", type=float, default=0.5, help="replay speed factor (default 0.5: 5 Hz)")
    ap.add_argument("--seed", type=int, default=DEMO_SEED, help="scene seed of the bag (not a training seed)")
    args = ap.parse_args(argv)
    from hle_core.allocator import keep_freed_memory

    keep_freed_memory()                           # as the hle command and the node do

    import torch

    from hle_core.bags import evaluate_bag, write_synthetic_bag
    from hle_core.bags.score import score_recorded_bag
    from hle_core.config import SIZE_MULTIPLE, scaled_size
    from hle_core.model import load_checkpoint

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    total, t_start = 5, time.perf_counter()

    t = _step(1, total, "model: checkpoint and ONNX export")
    checkpoint = ensure_model(Path(args.model), Path(args.recipe), out)
    payload = load_checkpoint(checkpoint)
    cfg = payload["config"]
    size = tuple(payload.get("extra", {}).get("train", {}).get("data", {}).get("image_size", (128, 256)))
    model_for_node: Path = checkpoint
    network = scaled_size(size, cfg.model.test_scale)        # the model's test resolution of these frames
    network = (-(-network[0] // SIZE_MULTIPLE) * SIZE_MULTIPLE, -(-network[1] // SIZE_MULTIPLE) * SIZE_MULTIPLE)
    if args.backend != "torch":
        model_for_node = export_model(checkpoint, out, network)
    _done(t, f"{checkpoint.name} ({cfg.model.backbone}, embedding {cfg.model.embedding_dim}), "
             f"node model {model_for_node.name} ({network[0]}x{network[1]}, test scale {cfg.model.test_scale:g}), "
             f"frames {size[0]}x{size[1]}")

    t = _step(2, total, f"synthetic camera bag: {args.clips} clips x {args.frames} frames, seed {args.seed}")
    bag = out / "camera.mcap"
    write_synthetic_bag(bag, num_clips=args.clips, frames=args.frames, size=size, seed=args.seed, fps=args.fps,
                        classes=cfg.classes, overwrite=True)
    _done(t, str(bag))

    t = _step(3, total, f"live: node process on DDS ({args.backend}), bag replay at {args.rate}x, recording")
    live = run_live(bag, model_for_node, args.backend, out, args.rate, args.clips * args.frames)
    _done(t, f"published {live['published']} images, received {live['received']} panoptic messages")

    t = _step(4, total, "score the recorded node output against the ground truth")
    live_metrics = score_recorded_bag(bag, GT_TOPIC, live["recorded_bag"], OUTPUT_TOPIC, classes=cfg.classes,
                                      out_dir=out / "live", image_topic=IMAGE_TOPIC)
    live_metrics["live"] = live
    (out / "live" / "metrics.json").write_text(json.dumps(live_metrics, indent=2, default=str))
    _done(t, str(out / "live" / "report.md"))

    t = _step(5, total, "offline: the same Pipeline over every frame of the bag (hle bag-eval)")
    offline = evaluate_bag(bag, IMAGE_TOPIC, gt_topic=GT_TOPIC, model=model_for_node, backend=args.backend,
                           device="cpu", out_dir=out / "offline")
    _done(t, str(out / "offline" / "report.md"))

    table = summary_table({"live node (DDS)": live_metrics, "offline bag-eval": offline})
    (out / "summary.md").write_text(table + "\n")
    print("\n" + table)
    print(f"\n[demo] finished in {time.perf_counter() - t_start:.0f} s. Everything is in {out}:")
    print("       summary.md, live/report.md, offline/report.md, overlays in live/ and offline/, "
          "camera.mcap, node_output.mcap, node.log")
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except DemoError as exc:
        print(f"[demo] error: {exc}", file=sys.stderr)
        raise SystemExit(1)
