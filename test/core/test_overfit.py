"""Loss–decoder consistency: a network trained on a handful of fixed scenes must segment exactly those scenes.

This is the guard for every later change to the losses (eq. 7–16), the network heads or the decoder (§3.5): if
the hierarchical loss and the decoding disagree about what an instance is, the network can fit the loss and
still decode badly, and this test fails. Two fixed synthetic street scenes (seed 7 of the generator, 128x256,
things of at least 150 px) hold persons, cars and bicycles, touching same-class cars among them. The network
(the shipped recipe's MobileNetV2 DeepLabV3+ from ImageNet weights) trains on them without augmentation and is
scored on the very same scenes with the default decoder: every thing class PQ >= 0.8 and PQ_th >= 0.9.

Marked ``slow`` (a few minutes on 2 cores); it runs in ``make test``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from hle_core.data import SyntheticDataset
from hle_core.evaluation.predict import evaluate_model
from hle_core.model import build_model, load_checkpoint
from hle_core.training import load_recipe, train

ROOT = Path(__file__).resolve().parents[2]

SCENES, SEED, SIZE = 2, 7, (128, 256)
GENERATOR = {"min_area": 150, "density": 0.5}
STEPS = 300


def overfit_recipe(out_dir: Path):
    train_section = {
        "steps": STEPS, "batch_size": SCENES, "lr": 2.0e-3, "warmup_steps": 10, "crop_size": list(SIZE),
        "scale_range": [1.0, 1.0], "thing_crop_prob": 0.0, "hflip": False, "color_jitter": 0.0, "loss_stride": 1,
        "device": "cpu", "ckpt_every": 0, "image_every": 0, "tensorboard": False, "out_dir": str(out_dir),
        "data": {"format": "synthetic", "num_train": SCENES, "num_val": 0, "train_seed": SEED, "val_seed": SEED + 1,
                 "image_size": list(SIZE), "generator": GENERATOR, "cache_dir": None}}
    return load_recipe(ROOT / "config" / "synthetic_street.yaml", {"train": train_section})


def test_fixed_scenes_hold_every_thing_class():
    """The scenes must exercise what the test claims: all three thing classes, two same-class things touching."""
    ds = SyntheticDataset(SCENES, seed=SEED, size=SIZE, **GENERATOR)
    cats, touching = set(), False
    for i in range(SCENES):
        pan = ds.generator.frame(i).panoptic
        ids = np.unique(pan[pan >= 1000])
        cats |= set((ids // 1000).tolist())
        right = (pan[:, :-1] != pan[:, 1:]) & (pan[:, :-1] >= 1000) & (pan[:, 1:] >= 1000)
        touching |= bool(((pan[:, :-1] // 1000 == pan[:, 1:] // 1000) & right).any())
    names = {c.id: c.name for c in ds.classes.classes}
    assert {names[c] for c in cats} == {"person", "car", "bicycle"}
    assert touching


@pytest.mark.slow
def test_overfit_fixed_scenes(tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, min(2, threads)))
    try:
        cfg, tcfg = overfit_recipe(tmp_path / "run")
        torch.manual_seed(0)
        final = train(cfg, tcfg, progress=False)
        payload = load_checkpoint(final)
        model = build_model(payload["config"])
        model.load_state_dict(payload["model"])
        results = evaluate_model(model, cfg, SyntheticDataset(SCENES, seed=SEED, size=SIZE, classes=cfg.classes,
                                                              **GENERATOR))
    finally:
        torch.set_num_threads(threads)
    per_class = results["per_class"]
    things = {c.name: per_class[c.id]["pq"] for c in cfg.classes.classes if c.isthing}
    assert min(things.values()) >= 0.8, f"thing classes below PQ 0.8 on their own training scenes: {things}"
    assert results["Things"]["pq"] >= 0.9, f"PQ_th {results['Things']['pq']:.3f} < 0.9 (per class {things})"
