"""``hle bag-eval``: run the node's pipeline over a rosbag2 bag and score it (no ROS install needed).

    hle synth --video --bag camera.mcap --num 2 --frames 30
    hle bag-eval --bag camera.mcap --image-topic /camera/image_raw --gt-topic /camera/panoptic_gt \\
        --model model.pt --out eval_camera --output-bag
    hle bag-eval --bag camera.mcap --image-topic /camera/image_raw --gt-topic /camera/panoptic_gt \\
        --pred-bag node_output.mcap --out eval_live        # score a live node's recorded output, no model run

Reads mcap and sqlite3 bags (a bag directory or a bare ``.mcap`` / ``.db3`` file; a truncated MCAP file is
salvaged up to the damage), builds the pipeline from ``--model`` exactly as the node does (``.pt`` → torch,
``.onnx`` → onnxruntime, ``--backend auto`` picks as the node's ``backend: auto``), processes every image in
header-stamp order and writes ``OUT/metrics.json``, ``OUT/report.md``, plots and overlay images. With
``--pred-bag`` no model runs: the node's recorded ``PanopticSegmentation`` messages are matched to the images by
header stamp and scored the same way (:mod:`hle_core.bags.score`; frames without output: ``not_received``).

Every image message is accounted for: evaluated + rejected = total (rejections counted by reason). Images
without a ground-truth message of the same header stamp are evaluated (latency, tracking) but not scored
(``gt_status: no_gt``). See :mod:`hle_core.bags.evaluate` for every reason and metric.

Exit status: 0 when at least one frame was evaluated (a damaged bag is reported, not fatal), 1 when none was,
2 for bad input (no such bag or model, a topic missing from the bag).
"""
from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_parser", "run"]


def add_pipeline_arguments(p: argparse.ArgumentParser) -> None:
    """How the pipeline is built from ``--model`` (backend, device, input size, resize mode), as the node builds
    it; shared by every command that runs the pipeline over a bag (``bag-eval``, ``tune-tracker``)."""
    from .synth import parse_size

    p.add_argument("--backend", choices=("auto", "tensorrt", "onnxruntime", "torch"), default="auto",
                   help="inference backend, picked as the node does (default auto)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")
    p.add_argument("--input-size", type=parse_size, default=None, metavar="HxW",
                   help="network input size, multiples of 32 (default: each image's own size, padded)")
    p.add_argument("--resize-mode", choices=("letterbox", "stretch"), default="letterbox",
                   help="fit images to --input-size keeping the aspect ratio (letterbox: scale, pad bottom/right) "
                        "or not (stretch), as the node's resize_mode (default letterbox)")


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("bag-eval", help="evaluate a model on a rosbag2 bag (PQ, STQ, VPQ, latency)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bag", type=Path, required=True, help="rosbag2 directory, or a .mcap / .db3 file")
    p.add_argument("--image-topic", required=True, help="sensor_msgs/Image (or CompressedImage) topic to segment")
    p.add_argument("--gt-topic", default=None,
                   help="32SC1 ground-truth topic (Cityscapes ids), matched by header stamp; omit to skip scoring")
    p.add_argument("--model", type=Path, default=None,
                   help="checkpoint (.pt), ONNX export (.onnx) or .engine (required unless --pred-bag)")
    p.add_argument("--pred-bag", type=Path, default=None,
                   help="score recorded node output (PanopticSegmentation messages) from this bag instead of "
                        "running a model, e.g. `ros2 bag record /hle_panoptic/panoptic` of a live run")
    p.add_argument("--pred-topic", default="/hle_panoptic/panoptic", help="topic of --pred-bag (default "
                   "/hle_panoptic/panoptic)")
    add_pipeline_arguments(p)
    p.add_argument("--out", type=Path, required=True, help="output folder for metrics.json, report.md and plots")
    p.add_argument("--output-bag", nargs="?", const="", default=None, metavar="PATH",
                   help="also write the node's PanopticSegmentation messages to a bag (default path: "
                        "<OUT>_panoptic.mcap beside OUT); an existing path is refused unless --overwrite")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing bag at --output-bag (only a bag, never the input --bag)")
    p.add_argument("--no-tracking", action="store_true", help="run without the tracker (no track ids)")
    p.add_argument("--box-tracker", action="store_true",
                   help="box-overlap-only baseline tracker (TrackerConfig.use_embeddings=false; with "
                        "--tracker-config: that config with use_embeddings=false)")
    p.add_argument("--tracker-config", type=Path, default=None, metavar="YAML",
                   help="tracker settings: a YAML 'tracker:' section, e.g. written by hle tune-tracker (missing keys: "
                        "TrackerConfig defaults; default: the node's default tracker)")
    p.add_argument("--sequence-gap", type=float, default=2.0, metavar="S",
                   help="a header-stamp gap above S seconds starts a new sequence (tracker reset; default 2)")
    p.add_argument("--warmup", type=int, default=1, help="first N frames left out of latency figures (default 1)")
    p.add_argument("--overlays", type=int, default=6, help="overlay images in the report (default 6)")
    p.add_argument("--no-plots", action="store_true", help="do not draw matplotlib plots")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from ..bags import BagError, default_output_bag, evaluate_bag
    from ..config import ConfigError
    from ..tracking import TrackerConfig, load_tracker_config

    if not args.bag.exists():
        raise FileNotFoundError(f"bag not found: {args.bag}")
    if args.pred_bag is None and args.model is None:
        raise ConfigError("give --model (run the pipeline) or --pred-bag (score recorded node output)")
    if args.pred_bag is not None:
        if args.model is not None:
            raise ConfigError("--model and --pred-bag exclude each other")
        if args.output_bag is not None:
            raise ConfigError("--output-bag needs --model: with --pred-bag the node's output is already a bag")
        if not args.pred_bag.exists():
            raise FileNotFoundError(f"prediction bag not found: {args.pred_bag}")
    elif not args.model.is_file():
        raise FileNotFoundError(f"model file not found: {args.model}")
    if args.sequence_gap < 0 or args.warmup < 0 or args.overlays < 0:
        raise ConfigError("--sequence-gap, --warmup and --overlays must be >= 0")
    if args.no_tracking and (args.tracker_config is not None or args.box_tracker):
        raise ConfigError("--no-tracking excludes --tracker-config and --box-tracker")
    tracker = load_tracker_config(args.tracker_config) if args.tracker_config is not None else None
    if args.box_tracker:
        tracker = dataclasses.replace(tracker or TrackerConfig(), use_embeddings=False)
    output_bag = None
    if args.output_bag is not None:
        output_bag = Path(args.output_bag) if args.output_bag else default_output_bag(args.out)
    try:
        if args.pred_bag is not None:
            from ..bags.score import score_recorded_bag

            m = score_recorded_bag(args.bag, args.gt_topic, args.pred_bag, args.pred_topic,
                                   image_topic=args.image_topic, out_dir=args.out, sequence_gap_s=args.sequence_gap,
                                   num_overlays=args.overlays, plots=not args.no_plots)
            print(summary(m))
            print(f"report: {args.out / 'report.md'}")
            return 0 if m["frames_evaluated"] else 1
        m = evaluate_bag(args.bag, args.image_topic, gt_topic=args.gt_topic, model=args.model, backend=args.backend,
                         device=args.device, input_size=args.input_size, resize=args.resize_mode,
                         tracking=not args.no_tracking,
                         tracker=tracker,
                         out_dir=args.out, output_bag=output_bag, overwrite=args.overwrite,
                         sequence_gap_s=args.sequence_gap,
                         warmup=args.warmup, num_overlays=args.overlays, plots=not args.no_plots,
                         progress=not args.no_progress)
    except BagError as exc:
        raise ConfigError(str(exc)) from exc
    except FileExistsError as exc:              # --output-bag would replace something (see bags.writer.check_target)
        raise ConfigError(f"--output-bag: {exc}") from exc
    print(summary(m))
    print(f"report: {args.out / 'report.md'}")
    return 0 if m["frames_evaluated"] else 1


def summary(m: dict) -> str:
    """A few lines for the terminal: frames, scores, latency."""
    rej = ", ".join(f"{k} {v}" for k, v in m["rejected_by_reason"].items()) or "none"
    lines = [f"frames: {m['frames_total']} total, {m['frames_evaluated']} evaluated, {m['frames_rejected']} rejected "
             f"({rej}), {m.get('frames_scored', 0)} scored"]
    if m.get("read_error"):
        lines.append(f"bag damaged: {m['read_error']}")
    if "predictions_total" in m:
        lines.append(f"recorded predictions: {m['predictions_total']}, {m['predictions_unmatched']} matching no image")
    if "pq" in m:
        pct = lambda v: "–" if v is None else f"{100 * v:.1f}"  # noqa: E731
        lines.append(f"PQ {pct(m['PQ'])} (things {pct(m['pq']['Things']['pq'])}, stuff {pct(m['pq']['Stuff']['pq'])})"
                     f"  STQ {pct(m['stq']['STQ'])} (AQ {pct(m['stq']['AQ'])}, SQ {pct(m['stq']['SQ_sem'])})"
                     f"  VPQ {pct(m['vpq']['VPQ'])}  ID switches {m['id_switches']}")
    total = m.get("latency_ms", {}).get("total")
    if total:
        lines.append(f"latency total [ms]: p50 {total['p50']:.1f}  p90 {total['p90']:.1f}  p99 {total['p99']:.1f}  "
                     f"max {total['max']:.1f}")
    return "\n".join(lines)
