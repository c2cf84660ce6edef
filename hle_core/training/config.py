"""Training recipe (paper §4.2): typed defaults; YAML recipes under ``config/`` override them.

A recipe file has two sections::

    hle:      # HLEConfig overrides (classes, model, loss, decoder)
      model: {backbone: resnet50, embedding_dim: 12}
    train:    # TrainConfig overrides
      lr: 1.0e-5
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import ConfigError, HLEConfig, _dc_update, load_config

__all__ = ["DataConfig", "TrainConfig", "load_recipe"]


@dataclass
class DataConfig:
    """Where training / validation images come from."""

    format: str = "synthetic"          # synthetic | coco | cityscapes
    root: str | None = None            # dataset root for coco / cityscapes
    train_split: str = "train"
    val_split: str = "val"
    num_train: int = 512               # synthetic: images in the training set
    num_val: int = 32                  # synthetic: images in the validation set
    train_seed: int = 1                # synthetic scene seeds (validation uses a seed never used in training)
    val_seed: int = 1_000_003
    image_size: tuple[int, int] = (256, 512)   # synthetic scene size (H, W)
    max_side: int | None = None        # resize so the longer side is at most this (COCO 640, Vistas 2048)
    # synthetic: SceneGenerator options for both splits (min_area: things with fewer visible pixels are void;
    # density: multiplies the number of things; noise_sigma: sensor noise), e.g. {min_area: 64}
    generator: dict = field(default_factory=dict)


@dataclass
class TrainConfig:
    """Optimisation and bookkeeping (§4.2: Adam, polynomial decay, crops around things)."""

    data: DataConfig = field(default_factory=DataConfig)
    steps: int = 2000
    batch_size: int = 8
    lr: float = 1e-5                   # paper: Adam 1e-5
    class_param_lr_mult: float = 1.0   # lr multiplier for μ̂_k and σ_k (eq. 15 VQ means move at lr × this)
    weight_decay: float = 0.0
    poly_power: float = 0.9            # lr = lr0 · (1 - step / steps) ** power
    warmup_steps: int = 0
    crop_size: tuple[int, int] = (256, 512)
    scale_range: tuple[float, float] = (0.75, 1.25)
    thing_crop_prob: float = 0.5       # probability that a crop is centred on a thing instance
    hflip: bool = True
    color_jitter: float = 0.2
    amp: bool = True                   # mixed precision on CUDA (ignored on CPU)
    grad_clip: float = 0.0             # 0 disables
    loss_stride: int = 1               # > 1: the loss sees every loss_stride-th pixel (ρ kept in input pixels)
    num_workers: int = 0
    seed: int = 0
    device: str = "auto"               # auto | cpu | cuda
    out_dir: str = "runs/hle"
    ckpt_every: int = 500
    log_every: int = 20
    image_every: int = 200             # TensorBoard images (overlay, embedding PCA)
    val_every: int = 0                 # 0: validate only at the end
    tensorboard: bool = True


def load_recipe(path: str | Path | None, overrides: dict[str, Any] | None = None) -> tuple[HLEConfig, TrainConfig]:
    """Read a recipe YAML into ``(HLEConfig, TrainConfig)``; ``overrides`` = ``{"hle": {...}, "train": {...}}``."""
    import yaml

    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"recipe not found: {path}")
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping with 'hle' and 'train' sections")
        unknown = set(data) - {"hle", "train"}
        if unknown:
            raise ConfigError(f"{path}: unknown sections {sorted(unknown)} (expected 'hle', 'train')")
    for section in ("hle", "train"):
        if not isinstance(data.get(section) or {}, dict):
            raise ConfigError(f"{path}: '{section}' must be a mapping, got {type(data[section]).__name__}")
    overrides = overrides or {}
    # hle.classes given as a path: relative to the recipe's folder, then the CWD
    cfg = load_config(None, {**(data.get("hle") or {})}, base_dir=path.parent if path is not None else None)
    if overrides.get("hle"):
        cfg = cfg.override(overrides["hle"])
    recipe_train, override_train = dict(data.get("train") or {}), dict(overrides.get("train") or {})
    # train.data merges key by key (`--set train.data.num_val=0` keeps the recipe's format and root)
    data_values = {**_mapping(recipe_train.pop("data", None), f"{path}: train.data"),
                   **_mapping(override_train.pop("data", None), "override train.data")}
    train_values = {**recipe_train, **override_train}
    tcfg = _dc_update(TrainConfig(), train_values, "train")
    tcfg.data = _dc_update(DataConfig(), data_values, "train.data")
    _validate(tcfg)
    return cfg, tcfg


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a mapping, got {value!r}")
    return dict(value)


def _validate(t: TrainConfig) -> None:
    if t.data.format not in ("synthetic", "coco", "cityscapes"):
        raise ConfigError(f"train.data.format must be synthetic|coco|cityscapes, got {t.data.format!r}")
    if t.data.format != "synthetic" and not t.data.root:
        raise ConfigError(f"train.data.root is required for format {t.data.format!r}")
    unknown = set(t.data.generator) - {"min_area", "density", "noise_sigma"}
    if unknown:
        raise ConfigError(f"train.data.generator: unknown keys {sorted(unknown)} (min_area, density, noise_sigma)")
    if t.steps < 1 or t.batch_size < 1 or t.lr <= 0:
        raise ConfigError("train.steps and train.batch_size must be >= 1 and train.lr > 0")
    if any(v % 32 for v in t.crop_size):
        raise ConfigError(f"train.crop_size must be multiples of 32, got {t.crop_size}")
    if t.loss_stride < 1:
        raise ConfigError(f"train.loss_stride must be >= 1, got {t.loss_stride}")
    if t.device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"train.device must be auto|cpu|cuda, got {t.device!r}")


def to_dict(t: TrainConfig) -> dict[str, Any]:
    return dataclasses.asdict(t)
