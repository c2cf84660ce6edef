"""Joint image / panoptic-label augmentation for training (paper §4.2: random scale, crops around thing
classes, flips), in the style of torchvision ``references/segmentation``: every transform maps a sample
``{"image": (3, H, W) float32 in [0, 1], "panoptic": (H, W) int32}`` to a new one, geometric transforms
move both together (bilinear for the image, nearest for labels), photometric ones touch the image only.

Randomness comes only from the ``torch.Generator`` passed to ``__call__``, so a sample's augmentation is a
function of its seed (see ``hle_core.training.sampler.sample_seed``).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from ..config import LABEL_DIVISOR, VOID_ID, ClassTable

__all__ = ["Compose", "ResizeMaxSide", "RandomScale", "RandomCrop", "RandomHorizontalFlip", "ColorJitter",
           "train_transforms", "resize_sample"]

Sample = dict[str, torch.Tensor]


def _uniform(g: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=g))


def _check(sample: Sample) -> tuple[int, int]:
    img, pan = sample["image"], sample["panoptic"]
    if img.ndim != 3 or img.shape[0] != 3 or pan.shape != img.shape[1:]:
        raise ValueError(f"sample must hold image (3, H, W) and panoptic (H, W) of the same size, got "
                         f"{tuple(img.shape)} and {tuple(pan.shape)}")
    return int(img.shape[1]), int(img.shape[2])


def resize_sample(sample: Sample, size: tuple[int, int]) -> Sample:
    """Resize to ``size`` (h, w): image bilinear (antialiased when shrinking), labels nearest neighbour
    with the same half-pixel geometry (source index ⌊(i + ½)·H/h⌋), so both stay aligned."""
    H, W = _check(sample)
    h, w = int(size[0]), int(size[1])
    if (h, w) == (H, W):
        return sample
    img = F.interpolate(sample["image"][None], size=(h, w), mode="bilinear", align_corners=False,
                        antialias=h < H or w < W)[0]
    # ⌊(i + ½)·H/h⌋ in exact integer arithmetic (float rounding would break ties the wrong way)
    rows = (2 * torch.arange(h) + 1) * H // (2 * h)                                    # h
    cols = (2 * torch.arange(w) + 1) * W // (2 * w)                                    # w
    return {**sample, "image": img, "panoptic": sample["panoptic"][rows[:, None], cols[None, :]]}


class Compose:
    """Apply transforms in order with one generator."""

    def __init__(self, transforms: Sequence) -> None:
        self.transforms = list(transforms)

    def __call__(self, sample: Sample, generator: torch.Generator) -> Sample:
        for t in self.transforms:
            sample = t(sample, generator)
        return sample

    def __repr__(self) -> str:
        return f"Compose({self.transforms})"


class ResizeMaxSide:
    """Shrink so that the longer side is at most ``max_side`` (COCO 640, Vistas 2048, paper §4.2)."""

    def __init__(self, max_side: int) -> None:
        if max_side < 1:
            raise ValueError(f"max_side must be >= 1, got {max_side}")
        self.max_side = int(max_side)

    def __call__(self, sample: Sample, generator: torch.Generator | None = None) -> Sample:  # noqa: ARG002 - transform signature
        H, W = _check(sample)
        f = self.max_side / max(H, W)
        return sample if f >= 1 else resize_sample(sample, (max(1, round(H * f)), max(1, round(W * f))))


class RandomScale:
    """Resize by a factor drawn uniformly from ``[min_scale, max_scale]``."""

    def __init__(self, min_scale: float, max_scale: float) -> None:
        if not 0 < min_scale <= max_scale:
            raise ValueError(f"need 0 < min_scale <= max_scale, got {min_scale}, {max_scale}")
        self.min_scale, self.max_scale = float(min_scale), float(max_scale)

    def __call__(self, sample: Sample, generator: torch.Generator) -> Sample:
        H, W = _check(sample)
        s = _uniform(generator, self.min_scale, self.max_scale)
        return resize_sample(sample, (max(1, round(H * s)), max(1, round(W * s))))


class RandomCrop:
    """Crop ``size`` (h, w), padding with void / black where the image is smaller.

    With probability ``thing_prob`` the crop is centred on a random pixel of a thing instance chosen
    uniformly among the non-crowd thing instances present ("crop around thing classes", §4.2), shifted
    only as much as needed to stay inside the image; otherwise the position is uniform.
    """

    def __init__(self, size: tuple[int, int], classes: ClassTable, thing_prob: float = 0.5) -> None:
        if len(size) != 2 or min(size) < 1:
            raise ValueError(f"crop size must be (h, w) >= 1, got {size}")
        if not 0.0 <= thing_prob <= 1.0:
            raise ValueError(f"thing_prob must lie in [0, 1], got {thing_prob}")
        self.size, self.thing_prob = (int(size[0]), int(size[1])), float(thing_prob)
        self.thing_ids = torch.tensor([c.id for c in classes.classes if c.isthing], dtype=torch.int64)

    def _thing_centre(self, pan: torch.Tensor, g: torch.Generator) -> tuple[int, int] | None:
        is_instance = (pan >= LABEL_DIVISOR) & torch.isin(pan.long() // LABEL_DIVISOR, self.thing_ids)  # H x W
        if not bool(is_instance.any()):
            return None
        ids = torch.unique(pan[is_instance])
        chosen = ids[int(torch.randint(len(ids), (), generator=g))]
        ys, xs = torch.nonzero(pan == chosen, as_tuple=True)
        p = int(torch.randint(len(ys), (), generator=g))
        return int(ys[p]), int(xs[p])

    def __call__(self, sample: Sample, generator: torch.Generator) -> Sample:
        H, W = _check(sample)
        h, w = self.size
        img, pan = sample["image"], sample["panoptic"]
        if H < h or W < w:   # pad bottom / right: image black, labels void
            ph, pw = max(h - H, 0), max(w - W, 0)
            img = F.pad(img, (0, pw, 0, ph), value=0.0)
            pan = F.pad(pan, (0, pw, 0, ph), value=VOID_ID)
            H, W = H + ph, W + pw
        centre = None
        if self.thing_prob > 0 and float(torch.rand((), generator=generator)) < self.thing_prob:
            centre = self._thing_centre(pan, generator)
        if centre is None:
            y0 = int(torch.randint(H - h + 1, (), generator=generator))
            x0 = int(torch.randint(W - w + 1, (), generator=generator))
        else:
            y0 = min(max(centre[0] - h // 2, 0), H - h)
            x0 = min(max(centre[1] - w // 2, 0), W - w)
        return {**sample, "image": img[:, y0:y0 + h, x0:x0 + w], "panoptic": pan[y0:y0 + h, x0:x0 + w]}


class RandomHorizontalFlip:
    """Mirror image and labels together with probability ``p``."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = float(p)

    def __call__(self, sample: Sample, generator: torch.Generator) -> Sample:
        _check(sample)
        if float(torch.rand((), generator=generator)) >= self.p:
            return sample
        return {**sample, "image": sample["image"].flip(-1), "panoptic": sample["panoptic"].flip(-1)}


class ColorJitter:
    """Brightness, contrast and saturation factors drawn from ``[1 − s, 1 + s]``; image only, result
    clamped to [0, 1]."""

    def __init__(self, brightness: float = 0.2, contrast: float = 0.2, saturation: float = 0.2) -> None:
        for name, v in (("brightness", brightness), ("contrast", contrast), ("saturation", saturation)):
            if not 0.0 <= v < 1.0:
                raise ValueError(f"{name} jitter must lie in [0, 1), got {v}")
        self.b, self.c, self.s = float(brightness), float(contrast), float(saturation)

    def __call__(self, sample: Sample, generator: torch.Generator) -> Sample:
        _check(sample)
        img = sample["image"]
        b, c, s = (_uniform(generator, 1 - v, 1 + v) for v in (self.b, self.c, self.s))
        weights = torch.tensor([0.299, 0.587, 0.114], dtype=img.dtype).view(3, 1, 1)
        img = img * b
        img = (img - img.mean()) * c + img.mean()
        grey = (img * weights).sum(0, keepdim=True)                                    # 1 x H x W
        img = (img - grey) * s + grey
        return {**sample, "image": img.clamp(0.0, 1.0)}


def train_transforms(classes: ClassTable, crop_size: tuple[int, int], scale_range: tuple[float, float] = (0.75, 1.25),
                     thing_crop_prob: float = 0.5, hflip: bool = True, color_jitter: float = 0.2,
                     max_side: int | None = None) -> Compose:
    """The training recipe of §4.2 (values from ``TrainConfig``): [max-side resize], random scale, crop
    (around things with probability ``thing_crop_prob``), horizontal flip, colour jitter."""
    ts: list = [ResizeMaxSide(max_side)] if max_side else []
    ts += [RandomScale(*scale_range), RandomCrop(crop_size, classes, thing_crop_prob)]
    if hflip:
        ts.append(RandomHorizontalFlip(0.5))
    if color_jitter > 0:
        ts.append(ColorJitter(color_jitter, color_jitter, color_jitter))
    return Compose(ts)
