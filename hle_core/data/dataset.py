"""Training / validation datasets (paper §4.1–4.2): panoptic samples -> network inputs and loss targets.

Every item is a dict of tensors (so the default collate stacks a batch):

* ``image``    (3, H, W) float32, normalised with ``ModelConfig.mean/std``
* ``semantic`` (H, W) int64 class *index* into the class table; ``LossConfig.ignore_index`` on void and
  crowd pixels
* ``instance`` (H, W) int64, 0 = no instance, 1..n = thing instances of this image (crowd -> 0)
* ``panoptic`` (H, W) int32, the Cityscapes-convention map after the transforms
* ``index``    () int64, the dataset index

An item may be requested as ``ds[i]`` (augmentation seed derived from the dataset's ``seed`` and ``i``)
or ``ds[(i, seed)]`` as :class:`hle_core.training.sampler.EpochSampler` yields it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import torch
from torch.utils.data import Dataset

from ..config import LABEL_DIVISOR, ClassTable, LossConfig, ModelConfig, street_class_table
from ..panoptic_io import PanopticFileNotFoundError
from .cityscapes import CityscapesPanopticReader, CityscapesReader, cityscapes_panoptic_paths
from .coco_panoptic import CocoPanopticReader, coco_paths
from .synthetic import SceneGenerator

__all__ = ["panoptic_to_targets", "PanopticDataset", "SyntheticDataset"]

Transform = Callable[[dict, torch.Generator], dict]


def panoptic_to_targets(panoptic: torch.Tensor, classes: ClassTable,
                        ignore_index: int = LossConfig.ignore_index) -> tuple[torch.Tensor, torch.Tensor]:
    """Cityscapes-convention map (H, W) -> (``semantic`` (H, W) int64, ``instance`` (H, W) int64).

    ``semantic``: class index of each pixel's category; void, crowd (thing category with id < 1000) and
    categories outside ``classes`` get ``ignore_index``. ``instance``: the thing instances numbered 1..n
    in increasing panoptic id; everything else 0.
    """
    if panoptic.ndim != 2:
        raise ValueError(f"panoptic must be (H, W), got shape {tuple(panoptic.shape)}")
    pan = panoptic.long()
    cat = torch.where(pan >= LABEL_DIVISOR, pan // LABEL_DIVISOR, pan)                   # H x W
    lut = torch.full((LABEL_DIVISOR,), ignore_index, dtype=torch.int64)
    thing = torch.zeros(LABEL_DIVISOR, dtype=torch.bool)
    for k, c in enumerate(classes.classes):
        lut[c.id], thing[c.id] = k, c.isthing
    known = (cat > 0) & (cat < LABEL_DIVISOR)
    cat = torch.where(known, cat, torch.zeros_like(cat))          # void / out-of-range -> 0 (ignored below)
    is_thing = thing[cat]
    crowd = is_thing & (pan < LABEL_DIVISOR)
    semantic = torch.where(known & ~crowd, lut[cat], torch.full_like(pan, ignore_index))
    is_instance = is_thing & ~crowd & (semantic != ignore_index)
    ids, inverse = torch.unique(torch.where(is_instance, pan, torch.zeros_like(pan)), return_inverse=True)
    instance = inverse if bool((ids == 0).any()) else inverse + 1   # 0 is the smallest id when present
    instance = torch.where(is_instance, instance, torch.zeros_like(instance))
    return semantic, instance


class _PanopticBase(Dataset):
    def __init__(self, classes: ClassTable | None, transforms: Transform | None, mean, std,
                 ignore_index: int | None, seed: int) -> None:
        self.classes = classes if classes is not None else street_class_table()
        self.transforms = transforms
        mc = ModelConfig()
        self.mean = torch.tensor(mc.mean if mean is None else mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(mc.std if std is None else std, dtype=torch.float32).view(3, 1, 1)
        self.ignore_index = LossConfig.ignore_index if ignore_index is None else int(ignore_index)
        self.seed = int(seed)

    def _load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def __getitem__(self, item: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        index, aug_seed = (item if isinstance(item, tuple) else (item, None))
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for dataset of {len(self)} samples")
        if aug_seed is None:
            aug_seed = (self.seed * 1_000_003 + index) % (2**63 - 1)
        image, panoptic = self._load(index)
        sample = {"image": torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255.0,
                  "panoptic": torch.from_numpy(np.ascontiguousarray(panoptic, dtype=np.int32))}
        if self.transforms is not None:
            sample = self.transforms(sample, torch.Generator().manual_seed(int(aug_seed)))
        semantic, instance = panoptic_to_targets(sample["panoptic"], self.classes, self.ignore_index)
        return {"image": (sample["image"] - self.mean) / self.std, "semantic": semantic, "instance": instance,
                "panoptic": sample["panoptic"].to(torch.int32), "index": torch.tensor(index)}


class PanopticDataset(_PanopticBase):
    """A COCO panoptic or Cityscapes data set on disk.

    Args:
        root: data set root (``format="coco"``: ``annotations/panoptic_<split>.json`` etc.;
            ``"cityscapes"``: ``gtFine/`` and ``leftImg8bit/``).
        format: ``"coco"`` or ``"cityscapes"``.
        classes: the model's class table (default: the street table); data set categories are mapped by id.
        transforms: joint transform (``hle_core.data.transforms``), None for whole images.
        split: split name (``train2017`` for the official COCO download).
        cityscapes_source: ``"auto"`` (panoptic JSON when present, else ``gtFine`` instanceIds),
            ``"panoptic"`` or ``"gtfine"``.
        unknown: ``"error"`` or ``"ignore"`` (void) for categories outside ``classes``.
        category_map: data set category id -> class table id, applied first.
        mean, std, ignore_index: default to ``ModelConfig`` / ``LossConfig``.
        seed: base of the augmentation seed of ``ds[i]``.
    """

    def __init__(self, root: str | Path, format: str, classes: ClassTable | None = None,
                 transforms: Transform | None = None, *, split: str = "train", cityscapes_source: str = "auto",
                 unknown: str = "error", category_map: Mapping[int, int] | None = None,
                 mean: tuple[float, float, float] | None = None, std: tuple[float, float, float] | None = None,
                 ignore_index: int | None = None, seed: int = 0) -> None:
        super().__init__(classes, transforms, mean, std, ignore_index, seed)
        kw = dict(classes=self.classes, unknown=unknown, category_map=category_map)
        if format == "coco":
            self.reader = CocoPanopticReader(*coco_paths(root, split), **kw)
        elif format == "cityscapes":
            if cityscapes_source not in ("auto", "panoptic", "gtfine"):
                raise ValueError(f"cityscapes_source must be auto|panoptic|gtfine, got {cityscapes_source!r}")
            has_json = cityscapes_panoptic_paths(root, split)[0].is_file()
            if cityscapes_source == "panoptic" or (cityscapes_source == "auto" and has_json):
                self.reader = CityscapesPanopticReader(root, split, **kw)
            else:
                self.reader = CityscapesReader(root, split, **kw)
        else:
            raise ValueError(f"format must be 'coco' or 'cityscapes', got {format!r}")
        if len(self.reader) == 0:
            raise PanopticFileNotFoundError(f"no samples in {format} data set {root} split {split!r}")

    def __len__(self) -> int:
        return len(self.reader)

    def _load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        s = self.reader[index]
        return s.image, s.panoptic


class SyntheticDataset(_PanopticBase):
    """``num`` procedural street scenes; scene ``i`` is ``SceneGenerator(size, seed).frame(i)``, so the data
    set is deterministic per index. Generated on the fly, or, with ``cache_dir``, rendered once into a
    :class:`~hle_core.data.scene_cache.SceneCache` there and read back (the same scenes, bit for bit)."""

    def __init__(self, num: int, seed: int = 0, size: tuple[int, int] = (256, 512),
                 classes: ClassTable | None = None, transforms: Transform | None = None, *,
                 mean: tuple[float, float, float] | None = None, std: tuple[float, float, float] | None = None,
                 ignore_index: int | None = None, cache_dir: str | Path | None = None,
                 progress: bool = False, **generator_kwargs) -> None:
        if num < 1:
            raise ValueError(f"num must be >= 1, got {num}")
        super().__init__(classes, transforms, mean, std, ignore_index, seed)
        self.num = int(num)
        self.generator = SceneGenerator(size, seed, self.classes, **generator_kwargs)
        self.cache = None
        if cache_dir is not None:
            from .scene_cache import SceneCache

            self.cache = SceneCache.open(cache_dir, self.num, seed, size, self.classes, generator_kwargs,
                                         progress=progress)

    def __len__(self) -> int:
        return self.num

    def _load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if self.cache is not None:
            return self.cache[index]
        f = self.generator.frame(index)
        return f.image, f.panoptic
