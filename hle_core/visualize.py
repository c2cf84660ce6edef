"""Pictures a person would rather look at: panoptic colouring, overlays, embeddings as RGB (paper Fig. 3, 8).

Pure numpy / torch, no ROS, no plotting library; every function returns ``uint8`` ``(H, W, 3)`` RGB.
"""
from __future__ import annotations

import numpy as np
import torch

from .config import LABEL_DIVISOR, VOID_ID, ClassTable

__all__ = ["colorize_panoptic", "overlay", "embedding_to_rgb", "instance_boundaries"]


def _class_palette(classes: ClassTable) -> np.ndarray:
    """Lookup table category id -> colour, ``(LABEL_DIVISOR, 3)`` uint8; void black."""
    lut = np.zeros((LABEL_DIVISOR, 3), np.uint8)
    for c in classes.classes:
        lut[c.id] = c.color
    return lut


def instance_boundaries(panoptic: np.ndarray) -> np.ndarray:
    """``(H, W)`` bool: pixels whose right or lower neighbour has another panoptic id."""
    edge = np.zeros(panoptic.shape, bool)
    edge[:, :-1] |= panoptic[:, :-1] != panoptic[:, 1:]
    edge[:-1, :] |= panoptic[:-1, :] != panoptic[1:, :]
    return edge


def colorize_panoptic(panoptic: np.ndarray, classes: ClassTable, boundaries: bool = True) -> np.ndarray:
    """Colour a panoptic map (Cityscapes convention): class colour, each instance shifted by a hue jitter.

    Args:
        panoptic: ``(H, W)`` int panoptic ids (void 0, stuff = category id, thing = category id * 1000 + k).
    """
    if panoptic.ndim != 2:
        raise ValueError(f"panoptic map must be (H, W), got shape {panoptic.shape}")
    pan = panoptic.astype(np.int64)
    cat = np.where(pan >= LABEL_DIVISOR, pan // LABEL_DIVISOR, pan)
    k = np.where(pan >= LABEL_DIVISOR, pan % LABEL_DIVISOR, -1)
    lut = _class_palette(classes)
    rgb = lut[np.clip(cat, 0, LABEL_DIVISOR - 1)].astype(np.int16)
    # per-instance jitter: a deterministic offset from the instance number (golden-ratio hashing)
    jitter = ((np.arange(256) * 0.618034) % 1.0 * 120 - 60).astype(np.int16)
    offs = np.where(k[..., None] >= 0, jitter[np.clip(k, 0, 255)][..., None] * np.array([1, -1, 1], np.int16), 0)
    rgb = np.clip(rgb + offs, 0, 255).astype(np.uint8)
    rgb[pan == VOID_ID] = 0
    if boundaries:
        rgb[instance_boundaries(pan)] = 255
    return rgb


def overlay(image: np.ndarray, panoptic: np.ndarray, classes: ClassTable, alpha: float = 0.5) -> np.ndarray:
    """Blend :func:`colorize_panoptic` over an ``(H, W, 3)`` uint8 RGB image; void pixels keep the image."""
    if image.shape[:2] != panoptic.shape:
        raise ValueError(f"image {image.shape[:2]} and panoptic {panoptic.shape} differ in size")
    colour = colorize_panoptic(panoptic, classes, boundaries=False).astype(np.float32)
    out = image.astype(np.float32)
    labelled = (panoptic != VOID_ID)[..., None]
    out = np.where(labelled, (1 - alpha) * out + alpha * colour, out)
    out[instance_boundaries(panoptic)] = 255
    return out.clip(0, 255).astype(np.uint8)


def embedding_to_rgb(embedding: torch.Tensor | np.ndarray, mode: str = "pca", max_samples: int = 20000,
                     basis: torch.Tensor | None = None) -> np.ndarray:
    """Show a ``(D, H, W)`` embedding map as RGB: its first three PCA components, or its first 3 dims (Fig. 8).

    ``basis`` (``(D, 3)``) fixes the PCA projection, so consecutive video frames share colours.
    """
    e = torch.as_tensor(embedding).float()
    if e.dim() != 3:
        raise ValueError(f"embedding must be (D, H, W), got shape {tuple(e.shape)}")
    d, h, w = e.shape
    flat = e.reshape(d, -1).T                                         # N x D
    if mode == "first3":
        proj = flat[:, :3] if d >= 3 else torch.cat((flat, flat.new_zeros(flat.shape[0], 3 - d)), 1)
        lo, hi = -1.0, 1.0
        rgb = (proj - lo) / (hi - lo)
    elif mode == "pca":
        step = max(1, flat.shape[0] // max_samples)
        mean = flat[::step].mean(0, keepdim=True)
        if basis is None:
            _, _, v = torch.linalg.svd(flat[::step] - mean, full_matrices=False)  # rows of v: principal axes
            basis = v[:3].T if d >= 3 else torch.eye(d, 3)
        proj = (flat - mean) @ basis                                  # N x 3
        lo = proj[::step].quantile(0.01, dim=0)
        hi = proj[::step].quantile(0.99, dim=0)
        rgb = (proj - lo) / (hi - lo).clamp_min(1e-6)
    else:
        raise ValueError(f"mode must be 'pca' or 'first3', got {mode!r}")
    return (rgb.clamp(0, 1) * 255).round().to(torch.uint8).reshape(h, w, 3).cpu().numpy()
