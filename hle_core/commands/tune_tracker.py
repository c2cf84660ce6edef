"""``hle tune-tracker``: score a grid of tracker configurations on a video bag with ground truth (paper §4.5).

    hle synth --video --bag tune.mcap --num 4 --frames 40 --size 128x256 --seed 778
    hle tune-tracker --bag tune.mcap --image-topic /camera/image_raw --gt-topic /camera/panoptic_gt \\
        --model models/hle_street.pt --out runs/tracker.yaml
    hle bag-eval --bag test.mcap ... --tracker-config runs/tracker.yaml     # report on another seed

The pipeline runs once per frame with tracking off (frames, sequences and ground truth exactly as ``hle
bag-eval`` reads them); each candidate then replays only the association on the cached segments and is scored
with bag-eval's own STQ / ID-switch code, so its numbers equal those of ``hle bag-eval --tracker-config`` with
the same configuration.

Candidates: the box-overlap-only baseline (``box``, as ``--box-tracker``), the base configuration (``base``:
``--base`` or ``TrackerConfig()``), then every combination of the grid on the base (``--grid NAME=V1,V2,...``
replaces or adds one field's values, ``NAME=`` drops it; defaults in ``hle_core.tracking.tune.DEFAULT_GRID``).

Objective: among candidates with AQ >= ``--min-aq`` (default ``box``: the baseline's AQ, so that a tracker
that associates nothing cannot win on switches), the fewest ID switches, then the higher AQ, then STQ.

Writes ``--out`` (YAML ``tracker: {...}``, every field: usable as ``hle bag-eval --tracker-config``, and the
values for the node's ``tracking.*`` parameters), ``<out>.candidates.json`` and ``<out>.candidates.md`` (all
candidates, best first).
"""
from __future__ import annotations

import argparse
import shlex
from pathlib import Path

__all__ = ["add_parser", "run", "command_line"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    from .bag_eval import add_pipeline_arguments

    p = subparsers.add_parser("tune-tracker", help="pick tracker gates / weights on a video bag (fewest ID switches)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bag", type=Path, required=True, help="rosbag2 directory, or a .mcap / .db3 file")
    p.add_argument("--image-topic", required=True, help="sensor_msgs/Image (or CompressedImage) topic to segment")
    p.add_argument("--gt-topic", required=True, help="32SC1 ground-truth topic (Cityscapes ids), matched by stamp")
    p.add_argument("--model", type=Path, required=True, help="checkpoint (.pt), ONNX export (.onnx) or .engine")
    add_pipeline_arguments(p)
    p.add_argument("--sequence-gap", type=float, default=2.0, metavar="S",
                   help="a header-stamp gap above S seconds starts a new sequence (tracker reset; default 2)")
    p.add_argument("--base", type=Path, default=None, metavar="YAML",
                   help="starting tracker config (a 'tracker:' section); default TrackerConfig()")
    p.add_argument("--grid", action="append", default=[], metavar="NAME=V1,V2,...",
                   help="values of one TrackerConfig field to search, e.g. min_hits=1,2,3 (repeatable; NAME= "
                        "drops a default grid field)")
    p.add_argument("--min-aq", default="box", metavar="box|none|X",
                   help="AQ floor of eligible candidates: box (the baseline's AQ, default), none, or a number")
    p.add_argument("--vpq", action="store_true", help="also compute VPQ for every candidate (slower)")
    p.add_argument("--out", type=Path, required=True, help="YAML to write the best 'tracker:' section to")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)
    return p


def command_line(args: argparse.Namespace) -> str:
    """The ``hle tune-tracker`` command that reproduces ``args`` (recorded in the outputs)."""
    parts = ["hle", "tune-tracker", "--bag", str(args.bag), "--image-topic", args.image_topic, "--gt-topic",
             args.gt_topic, "--model", str(args.model), "--backend", args.backend, "--device", args.device]
    parts += ["--input-size", f"{args.input_size[0]}x{args.input_size[1]}", "--resize-mode", args.resize_mode] \
        if args.input_size else []
    parts += ["--sequence-gap", f"{args.sequence_gap:g}"]
    parts += ["--base", str(args.base)] if args.base is not None else []
    for item in args.grid:
        parts += ["--grid", item]
    parts += ["--min-aq", str(args.min_aq)] + (["--vpq"] if args.vpq else []) + ["--out", str(args.out)]
    return " ".join(shlex.quote(p) for p in parts)


def _min_aq(text: str) -> float | str | None:
    from ..config import ConfigError

    if text in ("box", "none"):
        return None if text == "none" else text
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"--min-aq must be box, none or a number, got {text!r}") from None


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from ..bags import BagError
    from ..config import ConfigError
    from ..tracking import TrackerConfig, load_tracker_config
    from ..tracking.tune import (cache_bag_frames, grid_candidates, parse_grid, tune_tracker, write_candidates,
                                 write_tracker_yaml)

    if not args.bag.exists():
        raise FileNotFoundError(f"bag not found: {args.bag}")
    if not args.model.is_file():
        raise FileNotFoundError(f"model file not found: {args.model}")
    if args.sequence_gap < 0:
        raise ConfigError("--sequence-gap must be >= 0")
    min_aq = _min_aq(args.min_aq)
    base = load_tracker_config(args.base) if args.base is not None else TrackerConfig()
    grid = parse_grid(args.grid)
    candidates, skipped = grid_candidates(grid, base)
    command = command_line(args)
    try:
        cache = cache_bag_frames(args.bag, args.image_topic, args.gt_topic, args.model, backend=args.backend,
                                 device=args.device, input_size=args.input_size, resize=args.resize_mode,
                                 sequence_gap_s=args.sequence_gap,
                                 progress=not args.no_progress)
    except BagError as exc:
        raise ConfigError(str(exc)) from exc
    m = cache.metrics
    print(f"{len(cache.frames)} frames evaluated ({m['frames_total']} total, {cache.scored} scored, "
          f"{m['sequences']} sequences) in {cache.seconds:.1f} s; {len(candidates)} candidates, "
          f"{len(skipped)} invalid grid combinations skipped")
    if cache.scored == 0:
        print(f"hle tune-tracker: error: no frame has ground truth on {args.gt_topic} (gt_status {m['gt_status']})")
        return 1
    result = tune_tracker(cache, candidates, min_aq=min_aq, vpq=args.vpq, progress=not args.no_progress)
    result.skipped = skipped

    print(f"\n{'candidate':20s}| {'ID sw':>6s} {'AQ':>6s} {'STQ':>6s}")
    print("-" * 42)
    for name in dict.fromkeys(("box", "base", result.best_row["name"])):
        r = result.row(name)
        print(f"{name + (' (best)' if r is result.best_row else ''):20s}| {r['id_switches']:6d} "
              f"{100 * r['AQ']:6.2f} {100 * r['STQ']:6.2f}")
    for k, v in result.best_row["changes"].items():
        print(f"  {k}: {getattr(TrackerConfig(), k)} -> {v}")

    best, box = result.best_row, result.row("box")
    floor = "none" if result.min_aq is None else f"{result.min_aq:.4f}"
    comment = [f"hle tune-tracker: {len(candidates)} candidates on {args.bag} ({cache.scored} scored frames, "
               f"{m['sequences']} sequences), model {args.model}",
               f"objective: AQ >= {floor}, then fewest ID switches, then higher AQ, then STQ",
               f"best: candidate {best['candidate']} ({best['name']}): {best['id_switches']} ID switches, "
               f"AQ {best['AQ']:.4f}, STQ {best['STQ']:.4f}; box baseline {box['id_switches']} / "
               f"{box['AQ']:.4f} / {box['STQ']:.4f}",
               f"command: {command}"]
    out = write_tracker_yaml(args.out, result.best, comment)
    stem = args.out.with_suffix("")
    json_path, md_path = Path(f"{stem}.candidates.json"), Path(f"{stem}.candidates.md")
    write_candidates(result, json_path, md_path, meta={
        "command": command, "bag": str(args.bag), "model": str(args.model), "grid": grid,
        "base": dataclasses.asdict(base), "frames_evaluated": len(cache.frames),
        "frames_scored": cache.scored, "sequences": m["sequences"], "PQ": m.get("PQ"),
        "cache_seconds": round(cache.seconds, 2)})
    print(f"wrote {out}, {json_path}, {md_path}")
    return 0
