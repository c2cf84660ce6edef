"""``hle train``: train an HLE network from a recipe (paper §4.2).

    hle train --config config/synthetic_small.yaml
    hle train --config config/synthetic_small.yaml --resume runs/synthetic_small/last.pt
    hle train --config config/synthetic_small.yaml --set train.steps=100 --set hle.loss.use_vq=false
    torchrun --nproc_per_node 2 -m hle_core.cli train --config config/cityscapes.yaml   # DDP

Writes ``<out_dir>/last.pt`` every ``ckpt_every`` steps (atomically), ``final.pt`` at the end,
``val_metrics.json`` (PQ on the validation split) and TensorBoard logs under ``<out_dir>/tb``.
"""
from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_parser", "run", "parse_set"]


def parse_set(items: list[str]) -> dict[str, dict[str, Any]]:
    """``["train.steps=100", "hle.loss.use_vq=false"]`` -> ``{"train": {"steps": 100}, "hle": {"loss": {...}}}``;
    values are parsed as YAML scalars / lists."""
    import yaml

    from ..config import ConfigError

    out: dict[str, dict[str, Any]] = {"hle": {}, "train": {}}
    for item in items:
        key, sep, value = item.partition("=")
        parts = key.strip().split(".")
        if not sep or len(parts) < 2 or parts[0] not in out or not all(parts):
            raise ConfigError(f"--set expects hle.<key>=<value> or train.<key>=<value>, got {item!r}")
        node = out[parts[0]]
        for p in parts[1:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = yaml.safe_load(value)
    return out


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("train", help="train an HLE network from a YAML recipe",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="recipe YAML with 'hle' and 'train' sections (config/*.yaml)")
    p.add_argument("--resume", default=None, help="checkpoint (last.pt) to continue exactly from")
    p.add_argument("--out", default=None, help="output folder (overrides train.out_dir)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe value, e.g. train.steps=100 (repeatable)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    import logging
    import sys

    import torch

    from ..model import CheckpointError
    from ..training import load_recipe, train

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    overrides = parse_set(args.set)
    if args.out:
        overrides["train"]["out_dir"] = args.out
    cfg, tcfg = load_recipe(args.config, overrides)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        final = train(cfg, tcfg, resume=args.resume, progress=not args.no_progress)
    except CheckpointError as exc:          # --resume / train.init_weights: a missing, corrupt or foreign checkpoint
        print(f"hle train: error: {exc}", file=sys.stderr)
        return 2
    print(f"final checkpoint: {final}")
    return 0
