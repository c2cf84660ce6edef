"""``hle tune-decoder``: Optuna search of the panoptic decoder's thresholds on a validation split (paper §4.2).

    hle tune-decoder --checkpoint runs/synthetic_small/final.pt --synthetic 64 --synthetic-seed 1000003 \\
        --size 128x256 --trials 100 --seed 0 --out runs/synthetic_small/decoder.yaml
    hle tune-decoder --checkpoint model.pt --data /data/cityscapes --format cityscapes --split val \\
        --limit 100 --trials 200 --out decoder.yaml --save-checkpoint model_tuned.pt

The network runs once over the split (outputs kept in memory: about (D + 3) · H · W · 4 bytes per image, use
``--limit`` on large images); every trial then decodes and scores only. Trial 0 is the checkpoint's own decoder
configuration, so the best found is never worse on this split. Searched: seed / merge / mask / stuff thresholds
and the minimum instance / stuff areas (ranges: ``--space``, defaults in ``hle_core.evaluation.tune``).

Writes ``--out`` (YAML ``hle: decoder: {...}``, loadable with ``hle_core.config.load_config``, usable as
``hle evaluate --decoder``), the trial table ``<out>.trials.csv`` / ``<out>.trials.json``, and with
``--save-checkpoint`` a copy of the checkpoint carrying the tuned decoder (the ROS node's ``decoder.*``
parameters default to the values a checkpoint carries). ``--test-scale`` tunes at another test resolution
(``hle.model.test_scale``: images resized by that factor before the network) and stores it in that copy with the
thresholds, which depend on it. Deterministic for a given ``--seed``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .synth import parse_size

__all__ = ["add_parser", "run", "command_line"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("tune-decoder", help="Optuna search of the decoder thresholds maximising PQ",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, required=True, help="HLE checkpoint (.pt) written by hle train")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", type=Path, default=None, help="validation data set root on disk")
    src.add_argument("--synthetic", type=int, default=None, metavar="N",
                     help="tune on N synthetic street scenes generated in memory instead")
    p.add_argument("--format", choices=("coco", "cityscapes"), default="coco", help="layout of --data (default coco)")
    p.add_argument("--split", default="val", help="split name of --data (default val)")
    p.add_argument("--synthetic-seed", type=int, default=1000003,
                   help="scene seed of --synthetic (default 1000003, the validation seed of "
                        "config/synthetic_small.yaml; never a training seed)")
    p.add_argument("--size", type=parse_size, default=None,
                   help="HxW of --synthetic scenes (default: the checkpoint's synthetic training size, else 256x512)")
    p.add_argument("--generator", default=None, metavar="YAML",
                   help="SceneGenerator options of --synthetic, e.g. '{min_area: 64, density: 0.6}' (default: those "
                        "the checkpoint was trained with)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N images of --data")
    p.add_argument("--trials", type=int, default=100, help="Optuna trials, trial 0 = the checkpoint's decoder "
                                                           "(default 100)")
    p.add_argument("--seed", type=int, default=0, help="seed of the TPE sampler (default 0)")
    p.add_argument("--space", action="append", default=[], metavar="NAME=LOW:HIGH",
                   help="search range of one threshold, e.g. min_stuff_area=0:2048 (repeatable)")
    p.add_argument("--flip", action="store_true", help="flip test-time augmentation of the cached outputs")
    p.add_argument("--test-scale", type=float, default=None, metavar="S",
                   help="resize each image by S before the network (hle.model.test_scale; default: the "
                        "checkpoint's own); tuned at that scale and stored in --save-checkpoint")
    p.add_argument("--device", default="auto", help="network device: auto | cpu | cuda | cuda:N (decoding: CPU)")
    p.add_argument("--out", type=Path, required=True, help="YAML to write the best 'hle: decoder:' section to")
    p.add_argument("--save-checkpoint", type=Path, default=None, metavar="PATH",
                   help="also write a copy of the checkpoint whose embedded decoder config is the best found")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)
    return p


def command_line(args: argparse.Namespace) -> str:
    """The ``hle tune-decoder`` command that reproduces ``args`` (recorded in the outputs)."""
    import shlex

    parts = ["hle", "tune-decoder", "--checkpoint", str(args.checkpoint)]
    if args.data is not None:
        parts += ["--data", str(args.data), "--format", args.format, "--split", args.split]
        parts += ["--limit", str(args.limit)] if args.limit is not None else []
    else:
        parts += ["--synthetic", str(args.synthetic), "--synthetic-seed", str(args.synthetic_seed)]
        parts += ["--size", f"{args.size[0]}x{args.size[1]}"] if args.size is not None else []
        parts += ["--generator", args.generator] if args.generator is not None else []
    parts += ["--test-scale", f"{args.test_scale:g}"] if args.test_scale is not None else []
    parts += ["--trials", str(args.trials), "--seed", str(args.seed)]
    for item in args.space:
        parts += ["--space", item]
    parts += ["--flip"] if args.flip else []
    parts += ["--out", str(args.out)]
    return " ".join(shlex.quote(p) for p in parts)


def run(args: argparse.Namespace) -> int:
    from ..config import ConfigError
    from ..panoptic_io import PanopticFormatError
    from ..model import CheckpointError

    for flag, value, low in (("--trials", args.trials, 1), ("--limit", args.limit, 1),
                             ("--synthetic", args.synthetic, 1), ("--synthetic-seed", args.synthetic_seed, 0)):
        if value is not None and value < low:
            print(f"hle tune-decoder: error: {flag} must be >= {low}, got {value}", file=sys.stderr)
            return 2
    try:
        return _tune(args, command_line(args))
    except (CheckpointError, ConfigError, FileNotFoundError, PanopticFormatError) as exc:
        print(f"hle tune-decoder: error: {exc}", file=sys.stderr)
        return 2


def _synthetic_settings(args: argparse.Namespace) -> tuple[tuple[int, int], dict]:
    """Scene size and SceneGenerator options of ``--synthetic``: given, else the checkpoint's training data."""
    import yaml

    from ..config import ConfigError
    from ..model import load_checkpoint

    data = load_checkpoint(args.checkpoint)["extra"].get("train", {}).get("data", {})
    trained_synthetic = data.get("format") == "synthetic"
    size = tuple(args.size) if args.size is not None else \
        tuple(data["image_size"]) if trained_synthetic and data.get("image_size") else (256, 512)
    if args.generator is not None:
        generator = yaml.safe_load(args.generator) or {}
        if not isinstance(generator, dict):
            raise ConfigError(f"--generator must be a YAML mapping, got {args.generator!r}")
    else:
        generator = dict(data.get("generator") or {}) if trained_synthetic else {}
    return size, generator


def _tune(args: argparse.Namespace, command: str) -> int:
    import dataclasses
    import time

    import torch

    from ..config import ConfigError
    from ..data import PanopticDataset, SyntheticDataset
    from ..config import resolve_device
    from ..evaluation.checkpoint_eval import load_eval_inputs
    from ..evaluation.predict import infer_outputs
    from ..evaluation.tune import parse_space, tune_decoder, write_decoder_yaml, write_trials

    space = parse_space(args.space)
    dev = resolve_device(args.device)
    model, cfg = load_eval_inputs(args.checkpoint, dev, test_scale=args.test_scale)
    if args.data is not None:
        if not args.data.is_dir():
            raise FileNotFoundError(f"data set folder not found: {args.data}")
        dataset = PanopticDataset(args.data, args.format, cfg.classes, split=args.split, mean=cfg.model.mean,
                                  std=cfg.model.std)
        if args.limit is not None and args.limit < len(dataset):
            dataset = torch.utils.data.Subset(dataset, range(args.limit))
        source = f"{args.data} ({args.format}, split {args.split}, {len(dataset)} images)"
    else:
        size, generator = _synthetic_settings(args)
        args.size = size
        try:
            dataset = SyntheticDataset(args.synthetic, args.synthetic_seed, size, cfg.classes,
                                       mean=cfg.model.mean, std=cfg.model.std, **generator)
        except ValueError as exc:     # e.g. a checkpoint whose classes are not the street classes
            raise ConfigError(f"--synthetic: {exc}") from exc
        source = (f"{args.synthetic} synthetic scenes, seed {args.synthetic_seed}, {size[0]}x{size[1]}"
                  + (f", generator {generator}" if generator else ""))

    t0 = time.perf_counter()
    cached = []
    for c in infer_outputs(model, cfg, dataset, flip=args.flip, device=dev, progress=not args.no_progress):
        # kept on the host: many images' maps would not fit a GPU, and CPU decoding keeps the search deterministic
        c.maps = {k: v.cpu() for k, v in c.maps.items()}
        cached.append(c)
    megabytes = sum(v.numel() * v.element_size() for c in cached for v in c.maps.values()) / 2**20
    print(f"network outputs of {source} cached in {time.perf_counter() - t0:.1f} s ({megabytes:.0f} MiB)")
    params = {k: v.detach().cpu() for k, v in model.decode_params().items()}

    result = tune_decoder(cached, params, cfg, trials=args.trials, seed=args.seed, space=space,
                          progress=not args.no_progress)

    base_r, best_r = result.baseline_results, result.best_results
    print(f"\n{'decoder':16s}| {'PQ':>6s} {'PQ_th':>6s} {'PQ_st':>6s} {'SQ':>6s} {'RQ':>6s} {'mIoU':>6s}")
    print("-" * 58)
    for name, r in (("checkpoint", base_r), (f"best (trial {result.best_trial})", best_r)):
        print(f"{name:16s}| {100 * r['All']['pq']:6.2f} {100 * r['Things']['pq']:6.2f} {100 * r['Stuff']['pq']:6.2f} "
              f"{100 * r['All']['sq']:6.2f} {100 * r['All']['rq']:6.2f} {100 * r['miou']['miou']:6.2f}")
    changed = {k: (getattr(result.baseline, k), v) for k, v in dataclasses.asdict(result.best).items()
               if getattr(result.baseline, k) != v}
    for k, (old, new) in changed.items():
        print(f"  {k}: {old} -> {new}")

    comment = [f"hle tune-decoder: {args.trials} Optuna TPE trials (seed {args.seed}) on {source}",
               f"checkpoint {args.checkpoint}, flip {'on' if args.flip else 'off'}, "
               f"test scale {cfg.model.test_scale:g} (area thresholds in pixels of the resized image)",
               f"PQ {base_r['All']['pq']:.4f} (checkpoint's decoder) -> {best_r['All']['pq']:.4f} "
               f"(trial {result.best_trial})",
               f"command: {command}"]
    out = write_decoder_yaml(args.out, result.best, comment)
    stem = args.out.with_suffix("")
    csv_path, json_path = Path(f"{stem}.trials.csv"), Path(f"{stem}.trials.json")
    write_trials(result, csv_path, json_path, meta={
        "command": command, "checkpoint": str(args.checkpoint), "source": source, "flip": bool(args.flip),
        "test_scale": cfg.model.test_scale,
        "trials_requested": args.trials, "seed": args.seed})
    print(f"wrote {out}, {csv_path}, {json_path}")
    if args.save_checkpoint is not None:
        from ..model import load_checkpoint, save_checkpoint

        payload = load_checkpoint(args.checkpoint)
        model.cfg = model.cfg.override({"decoder": dataclasses.asdict(result.best),
                                        "model": {"test_scale": cfg.model.test_scale}})
        extra = {**payload["extra"], "tuned_decoder": {"source": source, "trials": args.trials, "seed": args.seed,
                                                       "pq_before": base_r["All"]["pq"],
                                                       "pq_after": best_r["All"]["pq"]}}
        save_checkpoint(args.save_checkpoint, model, step=payload["step"], extra=extra)
        print(f"wrote {args.save_checkpoint} (checkpoint with the tuned decoder; optimizer state not copied)")
    return 0
