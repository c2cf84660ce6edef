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

Fleet evaluation (:mod:`hle_core.bags.fleet`): ``--bags PATH...`` (files, bag directories, folders of bags,
globs) evaluates every bag with the same model and settings: ``OUT/bags/<bag>-<hash>/`` holds each bag's
metrics.json / report.md as above, ``OUT/fleet_report.md`` / ``fleet.json`` / ``fleet_pq.png`` the fleet's
PQ / STQ / VPQ / ID switches / latency computed from the statistics summed over all frames, a table of bags and
a plot of per-bag PQ. A process pool sized to the cores by default (``--workers``), ``--serial``, or Ray
(``--ray``: a local runtime; ``--ray-address ADDR``: a cluster; ``pip install .[fleet]``). Rerunning the same
command skips bags whose result matches the bag's, the model's and the settings' hashes (``--recompute``:
evaluate all). A bag that cannot be read is a row of the report, not the end of the run::

    hle bag-eval --bags recordings/ 'more/*.mcap' --image-topic /camera/image_raw \
        --gt-topic /camera/panoptic_gt --model model.pt --out eval_fleet
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..tracking import TrackerConfig

__all__ = ["add_parser", "run"]

#: Default of --pred-topic and --output-topic: where the node publishes under its default name and namespace
#: (what ``ros2 bag record`` of a live run holds). A command-line default only: the bag evaluation library
#: (:mod:`hle_core.bags`) takes its topics as arguments.
NODE_OUTPUT_TOPIC = "/hle_panoptic/panoptic"


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
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--bag", type=Path, help="rosbag2 directory, or a .mcap / .db3 file")
    which.add_argument("--bags", nargs="+", metavar="PATH",
                       help="fleet evaluation: bag files, bag directories, folders of bags or globs (quote them); "
                            "one report over all bags plus each bag's own")
    p.add_argument("--image-topic", required=True, help="sensor_msgs/Image (or CompressedImage) topic to segment")
    p.add_argument("--gt-topic", default=None,
                   help="32SC1 ground-truth topic (Cityscapes ids), matched by header stamp; omit to skip scoring")
    p.add_argument("--model", type=Path, default=None,
                   help="checkpoint (.pt), ONNX export (.onnx) or .engine (required unless --pred-bag)")
    p.add_argument("--pred-bag", type=Path, default=None,
                   help="score recorded node output (PanopticSegmentation messages) from this bag instead of "
                        "running a model, e.g. `ros2 bag record /hle_panoptic/panoptic` of a live run")
    p.add_argument("--pred-topic", default=NODE_OUTPUT_TOPIC, help="topic of --pred-bag (default "
                   f"{NODE_OUTPUT_TOPIC})")
    add_pipeline_arguments(p)
    p.add_argument("--out", type=Path, required=True, help="output folder for metrics.json, report.md and plots")
    p.add_argument("--output-bag", nargs="?", const="", default=None, metavar="PATH",
                   help="also write the node's PanopticSegmentation messages to a bag (default path: "
                        "<OUT>_panoptic.mcap beside OUT); an existing path is refused unless --overwrite")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing bag at --output-bag (only a bag, never the input --bag)")
    p.add_argument("--output-topic", default=NODE_OUTPUT_TOPIC,
                   help=f"topic of the messages in --output-bag (default {NODE_OUTPUT_TOPIC})")
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
    fleet = p.add_argument_group("fleet evaluation (--bags)")
    fleet.add_argument("--workers", type=int, default=None, metavar="N",
                       help="worker processes, one model each (default: the cores; Ray: CPUs of a local runtime)")
    fleet.add_argument("--serial", action="store_true", help="evaluate the bags one after the other in this process")
    fleet.add_argument("--ray", action="store_true", help="one Ray task per bag on a local Ray runtime "
                       "(pip install .[fleet])")
    fleet.add_argument("--ray-address", default=None, metavar="ADDR",
                       help="join this Ray cluster (e.g. ray://head:10001 or auto); implies --ray")
    fleet.add_argument("--ray-gpus-per-task", type=float, default=0.0, metavar="F",
                       help="GPUs each Ray task reserves (e.g. 0.25: four workers share a GPU; default 0)")
    fleet.add_argument("--threads", type=int, default=None, metavar="N",
                       help="torch threads per worker (default: cores // workers, at least 1)")
    fleet.add_argument("--max-retries", type=int, default=2, metavar="N",
                       help="reruns of a bag whose worker died (default 2)")
    fleet.add_argument("--recompute", action="store_true",
                       help="evaluate every bag again, even those whose result is up to date")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from ..bags import BagError, default_output_bag, evaluate_bag
    from ..config import ConfigError

    if args.bags is not None:
        return run_fleet_command(args)
    if args.bag is not None and (args.workers is not None or args.serial or args.ray or args.ray_address
                                 or args.ray_gpus_per_task or args.threads is not None or args.recompute):
        raise ConfigError("--workers, --serial, --ray, --ray-address, --ray-gpus-per-task, --threads and --recompute "
                          "need --bags")
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
    _check_scoring_arguments(args)
    tracker = _tracker_config(args)
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
                         out_dir=args.out, output_bag=output_bag, output_topic=args.output_topic,
                         overwrite=args.overwrite,
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


def _check_scoring_arguments(args: argparse.Namespace) -> None:
    """The checks one bag and a fleet share: sequence gap, warm-up, overlays, tracking options."""
    from ..config import ConfigError

    if args.sequence_gap < 0 or args.warmup < 0 or args.overlays < 0:
        raise ConfigError("--sequence-gap, --warmup and --overlays must be >= 0")
    if args.no_tracking and (args.tracker_config is not None or args.box_tracker):
        raise ConfigError("--no-tracking excludes --tracker-config and --box-tracker")


def _tracker_config(args: argparse.Namespace) -> TrackerConfig | None:
    """``--tracker-config`` (None: the defaults), with ``--box-tracker`` applied."""
    from ..tracking import TrackerConfig, load_tracker_config

    tracker = load_tracker_config(args.tracker_config) if args.tracker_config is not None else None
    if args.box_tracker:
        tracker = dataclasses.replace(tracker or TrackerConfig(), use_embeddings=False)
    return tracker


def run_fleet_command(args: argparse.Namespace) -> int:
    """``--bags``: :func:`hle_core.bags.fleet.run_fleet`; exit 0 when a frame was evaluated, else 1."""
    from ..bags.fleet import FleetSettings, run_fleet
    from ..config import ConfigError

    if args.model is None:
        raise ConfigError("--bags needs --model")
    if args.pred_bag is not None or args.output_bag is not None:
        raise ConfigError("--pred-bag and --output-bag work on one --bag, not with --bags")
    if not args.model.is_file():
        raise FileNotFoundError(f"model file not found: {args.model}")
    _check_scoring_arguments(args)
    if (args.workers is not None and args.workers < 1) or (args.threads is not None and args.threads < 1) \
            or args.max_retries < 0 or args.ray_gpus_per_task < 0:
        raise ConfigError("--workers and --threads must be >= 1, --max-retries and --ray-gpus-per-task >= 0")
    use_ray = args.ray or args.ray_address is not None
    if use_ray and args.serial:
        raise ConfigError("--serial excludes --ray / --ray-address")
    tracker = _tracker_config(args)
    settings = FleetSettings(image_topic=args.image_topic, gt_topic=args.gt_topic, backend=args.backend,
                             device=args.device, input_size=tuple(args.input_size) if args.input_size else None,
                             resize=args.resize_mode, tracking=not args.no_tracking,
                             tracker=dataclasses.asdict(tracker) if tracker is not None else None,
                             sequence_gap_s=args.sequence_gap, warmup=args.warmup, num_overlays=args.overlays,
                             plots=not args.no_plots)
    r = run_fleet(args.bags, args.model, settings, args.out,
                  executor="ray" if use_ray else "serial" if args.serial else "pool", workers=args.workers,
                  threads=args.threads, max_retries=args.max_retries, ray_address=args.ray_address,
                  gpus_per_task=args.ray_gpus_per_task, recompute=args.recompute)
    print(fleet_summary(r))
    print(f"report: {args.out / 'fleet_report.md'}")
    return 0 if r["fleet"]["frames_evaluated"] else 1


def fleet_summary(r: dict) -> str:
    """A few lines for the terminal: bags, frames, fleet scores, failed bags."""
    f, run = r["fleet"], r["run"]
    pct = lambda v: "–" if v is None else f"{100 * v:.1f}"  # noqa: E731
    lines = [f"bags: {f['bags']} ({f['bags_ok']} read, {f['bags_failed']} failed; {run['evaluated']} evaluated, "
             f"{run['reused']} up to date) in {run['elapsed_s']:.1f} s ({run['executor']})",
             f"frames: {f['frames_total']} total, {f['frames_evaluated']} evaluated, {f['frames_rejected']} rejected, "
             f"{f['frames_scored']} scored"]
    if "PQ" in f:
        lines.append(f"fleet PQ {pct(f['PQ'])} (things {pct(f['PQ_th'])}, stuff {pct(f['PQ_st'])})  STQ "
                     f"{pct(f['STQ'])}  VPQ {pct(f.get('VPQ'))}  ID switches {f['id_switches']}")
    for b in r["bags"]:
        if b["status"] != "ok":
            lines.append(f"not evaluated: {b['bag']}: {b.get('reason')}")
    return "\n".join(lines)


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
