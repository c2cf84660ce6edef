"""Training recipe (paper §4.2): typed defaults; YAML recipes under ``config/`` override them.

A recipe file has two sections::

    hle:      # HLEConfig overrides (classes, model, loss, decoder)
      model: {backbone: resnet50, embedding_dim: 12}
    train:    # TrainConfig overrides
      lr: 1.0e-5
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import ConfigError, HLEConfig, _dc_update, load_config

__all__ = ["DataConfig", "TrainConfig", "load_recipe", "validate_train_config"]


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
    # synthetic: render the scenes once into this folder and read them back (hle_core.data.scene_cache);
    # null renders every scene at every use
    cache_dir: str | None = None


@dataclass
class TrainConfig:
    """Optimisation and bookkeeping (§4.2: Adam, polynomial decay, crops around things)."""

    data: DataConfig = field(default_factory=DataConfig)
    steps: int = 2000
    stop_at: int = 0                   # > 0: stop after this step with last.pt written; the lr schedule still
                                       # runs to `steps` (continue with --resume): a long run in chunks
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
    channels_last: bool = True         # NHWC weights and inputs (oneDNN / cuDNN convolutions are faster so)
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
    # a checkpoint (a release file from `hle export checkpoint` will do) whose weights start this run, with a
    # fresh optimizer and lr schedule: a warm restart / fine-tune when no optimizer state is left. Ignored by
    # --resume, whose checkpoint already holds the weights.
    init_weights: str | None = None
    tensorboard: bool = True


def load_recipe(path: str | Path | None, overrides: dict[str, Any] | None = None) -> tuple[HLEConfig, TrainConfig]:
    """Read a recipe YAML into ``(HLEConfig, TrainConfig)``; ``overrides`` = ``{"hle": {...}, "train": {...}}``."""
    from ..config import read_yaml

    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"recipe not found: {path}")
        data = read_yaml(path) or {}
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
    errors: list[str] = []                  # every type and range error of the train section, listed at once
    tcfg = _update_each(TrainConfig(), train_values, "train", errors)
    tcfg.data = _update_each(DataConfig(), data_values, "train.data", errors)
    errors += _errors(tcfg)
    if errors:
        raise ConfigError(f"{path if path is not None else 'recipe'}: {len(errors)} invalid value(s): "
                          + "; ".join(errors))
    return cfg, tcfg


def _update_each(obj: Any, values: dict[str, Any], section: str, errors: list[str]) -> Any:
    """``_dc_update`` key by key, so that every bad key / type is reported (into ``errors``), not just the first."""
    for key, value in values.items():
        try:
            obj = _dc_update(obj, {key: value}, section)
        except ConfigError as exc:
            errors.append(str(exc))
    return obj


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a mapping, got {value!r}")
    return dict(value)


def validate_train_config(t: TrainConfig) -> None:
    """Check every value of ``t`` (types are :func:`load_recipe`'s job); raises one :class:`ConfigError` listing all
    errors, so a recipe is fixed in one go and nothing fails after training has started."""
    errors = _errors(t)
    if errors:
        raise ConfigError(f"{len(errors)} invalid training value(s): " + "; ".join(errors))


def _validate(t: TrainConfig) -> None:
    validate_train_config(t)


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _errors(t: TrainConfig) -> list[str]:
    """Every out-of-range value of ``t``, as ``"train.<key> must ..., got ..."``."""
    errors: list[str] = []

    def need(ok: bool, name: str, rule: str, value: Any) -> None:
        if not ok:
            errors.append(f"train.{name} must {rule}, got {value!r}")

    def integer(name: str, lo: int, rule: str, obj: Any = t) -> None:
        v = getattr(obj, name.split(".")[-1])
        need(isinstance(v, int) and not isinstance(v, bool) and v >= lo, name, rule, v)

    def real(name: str, lo: float, hi: float = math.inf, rule: str = "", lo_open: bool = False,
             hi_open: bool = False) -> None:
        v = getattr(t, name)
        ok = _number(v) and (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
        need(ok, name, rule, v)

    d = t.data
    need(d.format in ("synthetic", "coco", "cityscapes"), "data.format", "be synthetic|coco|cityscapes", d.format)
    if d.format != "synthetic" and not d.root:
        errors.append(f"train.data.root is required for format {d.format!r}")
    need(bool(d.train_split) and bool(d.val_split), "data.train_split/val_split", "be non-empty",
         (d.train_split, d.val_split))
    integer("stop_at", 0, "be >= 0 (0: run to train.steps)")
    integer("data.num_train", 1, "be >= 1", d)
    integer("data.num_val", 0, "be >= 0", d)
    integer("data.train_seed", 0, "be >= 0", d)
    integer("data.val_seed", 0, "be >= 0", d)
    need(all(isinstance(v, int) and v >= 32 for v in d.image_size), "data.image_size", "be (H, W) with H, W >= 32",
         d.image_size)
    need(d.max_side is None or (isinstance(d.max_side, int) and d.max_side >= 32), "data.max_side",
         "be null or >= 32", d.max_side)
    unknown = set(d.generator) - {"min_area", "density", "noise_sigma"}
    if unknown:
        errors.append(f"train.data.generator: unknown keys {sorted(unknown)} (min_area, density, noise_sigma)")
    g = d.generator
    if "min_area" in g:
        need(isinstance(g["min_area"], int) and not isinstance(g["min_area"], bool) and g["min_area"] >= 1,
             "data.generator.min_area", "be an integer >= 1", g["min_area"])
    if "density" in g:
        need(_number(g["density"]) and g["density"] > 0, "data.generator.density", "be > 0", g["density"])
    if "noise_sigma" in g:
        need(_number(g["noise_sigma"]) and g["noise_sigma"] >= 0, "data.generator.noise_sigma", "be >= 0",
             g["noise_sigma"])

    integer("steps", 1, "be >= 1")
    integer("batch_size", 1, "be >= 1")
    real("lr", 0.0, rule="be a finite number > 0", lo_open=True)
    real("class_param_lr_mult", 0.0, rule="be a finite number >= 0")
    real("weight_decay", 0.0, rule="be a finite number >= 0")
    real("poly_power", 0.0, rule="be a finite number >= 0")
    integer("warmup_steps", 0, "be >= 0")
    need(all(isinstance(v, int) and v > 0 and v % 32 == 0 for v in t.crop_size), "crop_size",
         "be positive multiples of 32", t.crop_size)
    lo, hi = t.scale_range
    need(_number(lo) and _number(hi) and 0 < lo <= hi, "scale_range", "be (lo, hi) with 0 < lo <= hi", t.scale_range)
    real("thing_crop_prob", 0.0, 1.0, rule="lie in [0, 1]")
    real("color_jitter", 0.0, 1.0, rule="lie in [0, 1)", hi_open=True)
    real("grad_clip", 0.0, rule="be a finite number >= 0 (0 disables)")
    integer("loss_stride", 1, "be >= 1")
    integer("num_workers", 0, "be >= 0")
    integer("seed", 0, "be >= 0")
    need(t.device in ("auto", "cpu", "cuda"), "device", "be auto|cpu|cuda", t.device)
    need(isinstance(t.out_dir, str) and bool(t.out_dir.strip()), "out_dir", "be a non-empty path", t.out_dir)
    integer("ckpt_every", 0, "be >= 0 (0: only at the end)")
    integer("log_every", 1, "be >= 1")
    integer("image_every", 0, "be >= 0 (0 disables)")
    integer("val_every", 0, "be >= 0 (0: only at the end)")
    return errors


def to_dict(t: TrainConfig) -> dict[str, Any]:
    return dataclasses.asdict(t)
