"""COCO panoptic PNG reading for the evaluation: 8-bit RGB PNG -> (H, W) uint32 segment ids.

COCO panoptic id = R + 256·G + 256²·B (panopticapi's ``rgb2id``); 0 is void. OpenCV decodes PNGs about twice as
fast as PIL; it returns BGR(A), so the bytes are reordered to RGBA with one ``cvtColor`` and the four bytes of
each pixel read as one little-endian uint32 whose top (alpha) byte is masked off.
"""
from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

from .errors import PanopticFileNotFoundError, PanopticFormatError

__all__ = ["read_panoptic_png", "rgb_to_id"]


def rgb_to_id(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3|4) uint8 RGB(A) -> (H, W) uint32 COCO panoptic ids R + 256·G + 256²·B (alpha ignored)."""
    c = np.asarray(rgb)
    if c.ndim != 3 or c.shape[2] not in (3, 4) or c.dtype != np.uint8:
        raise PanopticFormatError(f"expected an (H, W, 3) or (H, W, 4) uint8 RGB array, got shape {c.shape} "
                                  f"dtype {c.dtype}")
    c = c[..., :3].astype(np.uint32)
    return c[..., 0] | (c[..., 1] << 8) | (c[..., 2] << 16)


def _bgr_to_id(bgr: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """(H, W, 3|4) uint8 BGR(A) from OpenCV -> (H, W) uint32 ids, in two vectorised passes.

    ``out``: an (H, W, 4) uint8 buffer to reuse (a fresh 2 MB array per image costs page faults, which OpenCV's
    threads turn into seconds of kernel time); the ids are a view into it.
    """
    code = cv2.COLOR_BGR2RGBA if bgr.shape[2] == 3 else cv2.COLOR_BGRA2RGBA
    if out is None or out.shape != bgr.shape[:2] + (4,) or out.dtype != np.uint8:
        out = np.empty(bgr.shape[:2] + (4,), np.uint8)
    rgba = cv2.cvtColor(bgr, code, dst=out)            # H x W x 4 uint8, contiguous
    ids = rgba.view(np.uint32)[..., 0]                 # H x W, bytes R,G,B,A -> R + 2^8 G + 2^16 B + 2^24 A
    if sys.byteorder != "little":                      # pragma: no cover - no big-endian CI
        ids = ids.byteswap()
    np.bitwise_and(ids, 0xFFFFFF, out=ids)
    return ids


def read_panoptic_png(path: str | Path, out: np.ndarray | None = None) -> np.ndarray:
    """Read a COCO panoptic PNG as (H, W) uint32 segment ids (0 = void).

    Args:
        out: optional (H, W, 4) uint8 scratch buffer; when its shape fits, the returned ids are a view into it
            (valid until the buffer is reused).
    Raises:
        PanopticFileNotFoundError: ``path`` does not exist.
        PanopticFormatError: the file is not a decodable 8-bit RGB / RGBA image.
    """
    path = Path(path)
    # np.fromfile + imdecode instead of imread: clear errors and non-ASCII paths on every platform
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except FileNotFoundError:
        raise PanopticFileNotFoundError(f"panoptic PNG not found: {path}") from None
    except IsADirectoryError:
        raise PanopticFormatError(f"expected a panoptic PNG file, got a directory: {path}") from None
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        raise PanopticFormatError(f"cannot decode {path} as an image (empty, truncated or not a PNG)")
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] not in (3, 4):
        raise PanopticFormatError(f"{path}: expected an 8-bit RGB panoptic PNG (ids R + 256G + 256^2 B), got "
                                  f"shape {img.shape} dtype {img.dtype}")
    return _bgr_to_id(img, out)
