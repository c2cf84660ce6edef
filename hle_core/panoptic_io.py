"""COCO panoptic codec and file I/O, and the one exception hierarchy of panoptic files (paper §4.1, §4.2).

The single place where panoptic ids, PNGs and panoptic JSON files are read and written; the data-set readers /
writers (:mod:`hle_core.data.coco_panoptic`, :mod:`hle_core.data.cityscapes`), the COCO export of predictions
(:mod:`hle_core.evaluation.coco_export`) and the file evaluation (:mod:`hle_core.evaluation.pq_files`) all use it.

* **Codec**: COCO panoptic id = R + 256·G + 256²·B (panopticapi's ``rgb2id`` / ``id2rgb``), 0 = void.
  :func:`rgb_to_id` returns ``uint32`` (every 24-bit id fits, no sign to go wrong); :func:`id_to_rgb` takes any
  integer map with ids in ``[0, 256³)``.
* **PNG files**: :func:`read_panoptic_png` (8-bit RGB(A) PNG -> (H, W) uint32 ids), :func:`write_panoptic_png`,
  plus the generic :func:`read_image` (RGB photo), :func:`read_label_png` (8/16-bit single channel) and
  :func:`write_png`. OpenCV decodes PNGs about twice as fast as PIL and releases the GIL while it does, so a
  thread pool decodes in parallel (:func:`hle_core.evaluation.pq_files.pq_compute`).
* **JSON files**: :func:`load_panoptic_json` / :func:`write_panoptic_json` (``images``, ``annotations`` with
  ``segments_info``, ``categories``).

Every error is a :class:`PanopticFormatError` (a ``ValueError``) whose message names the file, image or segment
concerned; the PNG / JSON mismatch errors also derive from ``KeyError`` (what panopticapi raises for the same
faults) and :class:`PanopticFileNotFoundError` from ``FileNotFoundError``.

Importing this module loads NumPy only; OpenCV is imported by the functions that read or write images (so
``import hle_core.evaluation`` stays light).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

__all__ = [
    "PanopticFormatError",
    "PanopticFileNotFoundError",
    "UnknownCategoryError",
    "SegmentMismatchError",
    "MissingPredictionError",
    "MAX_SEGMENT_ID",
    "rgb_to_id",
    "id_to_rgb",
    "read_panoptic_png",
    "write_panoptic_png",
    "write_rgb_png",
    "read_image",
    "read_label_png",
    "write_png",
    "load_panoptic_json",
    "write_panoptic_json",
]

#: COCO panoptic ids are 24-bit: every id lies in [0, MAX_SEGMENT_ID).
MAX_SEGMENT_ID = 1 << 24


# ----------------------------------------------------------------------------------------------------
# exceptions (one hierarchy for the data-set readers and the evaluation)
class PanopticFormatError(ValueError):
    """Base class: a panoptic file, annotation or map is malformed or inconsistent (not an 8-bit RGB PNG,
    malformed JSON, PNG and JSON disagree, sizes differ). The message names the file / image / segment."""


class PanopticFileNotFoundError(PanopticFormatError, FileNotFoundError):
    """A PNG, JSON file or folder that is needed does not exist; the message names the path."""


class _KeyErrorMessage(KeyError):
    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""


class UnknownCategoryError(PanopticFormatError, _KeyErrorMessage):
    """A segment's category is not in the class table / the evaluated categories (or disagrees with it)."""


class SegmentMismatchError(PanopticFormatError, _KeyErrorMessage):
    """A segment id is in a PNG but not in its JSON ``segments_info``, or the other way round."""


class MissingPredictionError(PanopticFormatError, _KeyErrorMessage):
    """A ground-truth image has no prediction annotation with the same ``image_id``."""


# ----------------------------------------------------------------------------------------------------
# codec
def rgb_to_id(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3|4) uint8 RGB(A) -> (H, W) uint32 COCO panoptic ids R + 256·G + 256²·B (alpha ignored)."""
    c = np.asarray(rgb)
    if c.ndim != 3 or c.shape[2] not in (3, 4) or c.dtype != np.uint8:
        raise PanopticFormatError(f"expected an (H, W, 3) or (H, W, 4) uint8 RGB array, got shape {c.shape} "
                                  f"dtype {c.dtype}")
    c = c[..., :3].astype(np.uint32)
    return c[..., 0] | (c[..., 1] << 8) | (c[..., 2] << 16)


def id_to_rgb(ids: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_id`: (H, W) integer ids in ``[0, 256³)`` -> (H, W, 3) uint8 RGB."""
    ids = np.asarray(ids)
    if ids.size and (ids.min() < 0 or ids.max() >= MAX_SEGMENT_ID):
        raise ValueError(f"COCO panoptic ids must lie in [0, 256^3), got range [{ids.min()}, {ids.max()}]")
    ids = ids.astype(np.int64)
    return np.stack([ids % 256, ids // 256 % 256, ids // 65536], axis=-1).astype(np.uint8)


def _bgr_to_id(bgr: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """(H, W, 3|4) uint8 BGR(A) from OpenCV -> (H, W) uint32 ids, in two vectorised passes.

    The bytes are reordered to RGBA with one ``cvtColor`` and the four bytes of each pixel read as one
    little-endian uint32 whose top (alpha) byte is masked off. ``out``: an (H, W, 4) uint8 buffer to reuse (a
    fresh 2 MB array per image costs page faults); the ids are then a view into it.
    """
    import cv2

    code = cv2.COLOR_BGR2RGBA if bgr.shape[2] == 3 else cv2.COLOR_BGRA2RGBA
    if out is None or out.shape != bgr.shape[:2] + (4,) or out.dtype != np.uint8:
        out = np.empty(bgr.shape[:2] + (4,), np.uint8)
    rgba = cv2.cvtColor(bgr, code, dst=out)            # H x W x 4 uint8, contiguous
    ids = rgba.view(np.uint32)[..., 0]                 # H x W, bytes R,G,B,A -> R + 2^8 G + 2^16 B + 2^24 A
    if sys.byteorder != "little":                      # pragma: no cover - no big-endian CI
        ids = ids.byteswap()
    np.bitwise_and(ids, 0xFFFFFF, out=ids)
    return ids


# ----------------------------------------------------------------------------------------------------
# image files
def _decode_file(path: Path, flags: int, what: str) -> np.ndarray:
    """``cv2.imdecode`` of a file, with clear errors. ``np.fromfile`` + ``imdecode`` instead of ``imread``:
    errors that say what is wrong, and non-ASCII paths on every platform."""
    import cv2

    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except FileNotFoundError:
        raise PanopticFileNotFoundError(f"{what} not found: {path}") from None
    except IsADirectoryError:
        raise PanopticFormatError(f"expected {what} file, got a directory: {path}") from None
    img = cv2.imdecode(data, flags) if data.size else None
    if img is None:
        raise PanopticFormatError(f"cannot decode {path} as an image (empty, truncated or not an image file)")
    return img


def read_panoptic_png(path: str | Path, out: np.ndarray | None = None) -> np.ndarray:
    """Read a COCO panoptic PNG as (H, W) uint32 segment ids (0 = void).

    Args:
        out: optional (H, W, 4) uint8 scratch buffer; when its shape fits, the returned ids are a view into it
            (valid until the buffer is reused).
    Raises:
        PanopticFileNotFoundError: ``path`` does not exist.
        PanopticFormatError: the file is not a decodable 8-bit RGB / RGBA image.
    """
    import cv2

    path = Path(path)
    img = _decode_file(path, cv2.IMREAD_UNCHANGED, "panoptic PNG")
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] not in (3, 4):
        raise PanopticFormatError(f"{path}: expected an 8-bit RGB panoptic PNG (ids R + 256G + 256^2 B), got "
                                  f"shape {img.shape} dtype {img.dtype}")
    return _bgr_to_id(img, out)


def write_png(path: str | Path, array: np.ndarray) -> None:
    """Write an OpenCV-ordered (H, W) / (H, W, 3) array as PNG, creating the folder."""
    import cv2

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), array):
        raise OSError(f"could not write {path}")


def write_rgb_png(path: str | Path, rgb: np.ndarray) -> None:
    """Write an (H, W, 3) uint8 RGB array as PNG (or the format of ``path``'s suffix)."""
    write_png(path, np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8)[..., ::-1]))


def write_panoptic_png(path: str | Path, ids: np.ndarray) -> None:
    """Write (H, W) integer ids in ``[0, 256³)`` as a COCO panoptic RGB PNG (reads back with
    :func:`read_panoptic_png` as the same ids)."""
    write_rgb_png(path, id_to_rgb(ids))


def read_image(path: str | Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an image file; clear errors for missing or unreadable files."""
    import cv2

    return cv2.cvtColor(_decode_file(Path(path), cv2.IMREAD_COLOR, "image file"), cv2.COLOR_BGR2RGB)


def read_label_png(path: str | Path) -> np.ndarray:
    """(H, W) int32 of a single-channel 8/16-bit label PNG (e.g. Cityscapes ``instanceIds``)."""
    import cv2

    img = _decode_file(Path(path), cv2.IMREAD_UNCHANGED, "label PNG")
    if img.ndim != 2 or img.dtype not in (np.uint8, np.uint16, np.int32):
        raise PanopticFormatError(f"{path}: expected a single-channel 8/16-bit label PNG, got shape "
                                  f"{img.shape} dtype {img.dtype}")
    return img.astype(np.int32)


# ----------------------------------------------------------------------------------------------------
# JSON files
def load_panoptic_json(path: str | Path, what: str = "panoptic",
                       require: Iterable[str] = ("annotations",)) -> dict[str, Any]:
    """A COCO panoptic JSON as a dict, checked to be an object with the ``require``d keys.

    Raises:
        PanopticFileNotFoundError: no such file. PanopticFormatError: not JSON, or keys missing.
    """
    try:
        with open(path, "rb") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise PanopticFileNotFoundError(f"{what} JSON not found: {path}") from None
    except IsADirectoryError:
        raise PanopticFormatError(f"expected a {what} JSON file, got a directory: {path}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PanopticFormatError(f"{what} JSON {path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise PanopticFormatError(f"{what} JSON {path} is not a JSON object (COCO panoptic format expected)")
    missing = [k for k in require if k not in data]
    if missing:
        raise PanopticFormatError(f"{what} JSON {path} has no {missing} (COCO panoptic format expected)")
    return data


def write_panoptic_json(path: str | Path, images: Sequence[Mapping[str, Any]],
                        annotations: Sequence[Mapping[str, Any]], categories: Sequence[Mapping[str, Any]]) -> Path:
    """Write a COCO panoptic JSON (``images``, ``annotations``, ``categories``), creating the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"images": list(images), "annotations": list(annotations),
                                "categories": list(categories)}))
    return path
