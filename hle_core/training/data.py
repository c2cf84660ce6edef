"""Datasets a recipe names (``train.data``): synthetic scenes generated on the fly, or a COCO / Cityscapes
panoptic download on disk. Training sets carry the §4.2 augmentations; validation sets are whole images."""
from __future__ import annotations

from torch.utils.data import Dataset

from ..config import HLEConfig
from ..data import PanopticDataset, SyntheticDataset
from ..data.transforms import ResizeMaxSide, train_transforms
from .config import TrainConfig

__all__ = ["build_train_dataset", "build_val_dataset"]


def _norm(cfg: HLEConfig) -> dict:
    return {"mean": cfg.model.mean, "std": cfg.model.std, "ignore_index": cfg.loss.ignore_index}


def build_train_dataset(cfg: HLEConfig, tcfg: TrainConfig, progress: bool = False) -> Dataset:
    """The training split of ``tcfg.data`` with random scale / crop (around things) / flip / colour jitter."""
    d = tcfg.data
    transforms = train_transforms(cfg.classes, tuple(tcfg.crop_size), tuple(tcfg.scale_range), tcfg.thing_crop_prob,
                                  tcfg.hflip, tcfg.color_jitter, d.max_side)
    if d.format == "synthetic":
        return SyntheticDataset(d.num_train, seed=d.train_seed, size=tuple(d.image_size), classes=cfg.classes,
                                transforms=transforms, cache_dir=d.cache_dir, progress=progress,
                                **_norm(cfg), **d.generator)
    return PanopticDataset(d.root, d.format, cfg.classes, transforms, split=d.train_split, seed=tcfg.seed,
                           **_norm(cfg))


def build_val_dataset(cfg: HLEConfig, tcfg: TrainConfig, progress: bool = False) -> Dataset:
    """The validation split: whole images (only resized to ``max_side`` when set); synthetic scenes come from
    ``val_seed``, a seed the training split never uses."""
    d = tcfg.data
    transforms = None
    if d.max_side:
        resize = ResizeMaxSide(d.max_side)
        transforms = lambda sample, generator: resize(sample)  # noqa: E731 - deterministic, ignores the generator
    if d.format == "synthetic":
        if d.val_seed == d.train_seed:
            raise ValueError("train.data.val_seed must differ from train_seed (validation on unseen scenes)")
        return SyntheticDataset(d.num_val, seed=d.val_seed, size=tuple(d.image_size), classes=cfg.classes,
                                transforms=transforms, cache_dir=d.cache_dir, progress=progress,
                                **_norm(cfg), **d.generator)
    return PanopticDataset(d.root, d.format, cfg.classes, transforms, split=d.val_split, **_norm(cfg))
