"""``sensor_msgs/Image`` / ``CompressedImage`` pixels ↔ numpy, by hand (no cv_bridge, no ROS import).

The functions take any object with the message's fields (``height``, ``width``, ``encoding``, ``is_bigendian``,
``step``, ``data``; ``format`` and ``data`` for compressed images): an rclpy message in the node
(:mod:`hle_ros.conversions` re-exports this module), a deserialised ``rosbags`` message in bag evaluation.
Image → array conversions return *views* of the message buffer (``np.frombuffer`` + a reshape over ``step``),
honouring row padding and ``is_bigendian``. Every refusal raises :class:`ImageConversionError`, whose ``reason``
(one of :data:`REJECT_REASONS`) feeds the node's and the evaluator's rejection counters.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "ENCODINGS",
    "INFERENCE_ENCODINGS",
    "REJECT_REASONS",
    "ImageConversionError",
    "ImageFields",
    "image_to_array",
    "image_to_rgb",
    "compressed_to_rgb",
    "as_rgb",
    "encode_array",
]

#: encoding → (dtype, channels) of the encodings this module reads and writes.
ENCODINGS: dict[str, tuple[np.dtype, int]] = {
    "rgb8": (np.dtype(np.uint8), 3),
    "bgr8": (np.dtype(np.uint8), 3),
    "rgba8": (np.dtype(np.uint8), 4),
    "bgra8": (np.dtype(np.uint8), 4),
    "mono8": (np.dtype(np.uint8), 1),
    "8UC1": (np.dtype(np.uint8), 1),
    "8UC3": (np.dtype(np.uint8), 3),
    "mono16": (np.dtype(np.uint16), 1),
    "16UC1": (np.dtype(np.uint16), 1),
    "32SC1": (np.dtype(np.int32), 1),
    "32FC1": (np.dtype(np.float32), 1),
}
#: Encodings the network runs on.
INFERENCE_ENCODINGS = ("rgb8", "bgr8", "mono8", "rgba8", "bgra8")
#: Why a frame was refused (the keys of the rejection counters).
REJECT_REASONS = ("encoding", "empty", "step", "size", "too_large", "decode")


class ImageConversionError(ValueError):
    """An image message cannot be converted; ``reason`` is one of :data:`REJECT_REASONS`."""

    def __init__(self, reason: str, message: str) -> None:
        if reason not in REJECT_REASONS:
            raise ValueError(f"unknown rejection reason {reason!r}, expected one of {REJECT_REASONS}")
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class ImageFields:
    """The pixel fields of a ``sensor_msgs/Image`` (everything but the header)."""

    height: int
    width: int
    encoding: str
    is_bigendian: int
    step: int                     # bytes per row
    data: bytes                   # step * height bytes


def _check_size(height: int, width: int, max_pixels: int | None, what: str) -> None:
    if height == 0 or width == 0:
        raise ImageConversionError("empty", f"{what} is empty: {width}x{height}")
    if max_pixels is not None and height * width > max_pixels:
        raise ImageConversionError(
            "too_large", f"{what} has {width}x{height} = {height * width} pixels, more than max_pixels={max_pixels}")


def image_to_array(msg: Any, max_pixels: int | None = None) -> np.ndarray:
    """View of a ``sensor_msgs/Image``'s pixels: ``(H, W)`` for one channel, ``(H, W, C)`` otherwise.

    Honours ``step`` (padded rows) and ``is_bigendian`` (multi-byte encodings get a byte-order-marked dtype,
    e.g. ``>i4``, so values are right without a copy). Channel order is the encoding's (bgr8 stays BGR).

    Raises:
        ImageConversionError: unknown encoding, empty image, more than ``max_pixels`` pixels (checked before
            the data is touched), ``step`` shorter than a row, or ``len(data) != step * height``.
    """
    if msg.encoding not in ENCODINGS:
        raise ImageConversionError(
            "encoding", f"unsupported image encoding {msg.encoding!r}, expected one of {sorted(ENCODINGS)}")
    dtype, channels = ENCODINGS[msg.encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    _check_size(height, width, max_pixels, f"{msg.encoding} image")
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise ImageConversionError(
            "step", f"step {step} is shorter than a row of {width} {msg.encoding} pixels ({row_bytes} bytes)")
    if len(msg.data) != step * height:
        raise ImageConversionError(
            "size", f"data holds {len(msg.data)} bytes, expected step * height = {step} * {height} = {step * height}")
    if dtype.itemsize > 1:
        dtype = dtype.newbyteorder(">" if msg.is_bigendian else "<")
    rows = np.frombuffer(msg.data, np.uint8).reshape(height, step)[:, :row_bytes]   # H x row_bytes, a view
    pixels = rows.view(dtype)                                                         # H x (W*C)
    return pixels.reshape(height, width) if channels == 1 else pixels.reshape(height, width, channels)


def image_to_rgb(msg: Any, max_pixels: int | None = None) -> np.ndarray:
    """View of an rgb8 / bgr8 / rgba8 / bgra8 image as ``(H, W, 3)`` uint8 RGB, or of a mono8 one as ``(H, W)``.

    Channel reordering and alpha dropping are negative / sliced strides, not copies.

    Raises:
        ImageConversionError: as :func:`image_to_array`, and reason ``encoding`` for any other encoding.
    """
    if msg.encoding not in INFERENCE_ENCODINGS:
        raise ImageConversionError(
            "encoding", f"image encoding {msg.encoding!r} is not accepted, expected one of {list(INFERENCE_ENCODINGS)}")
    return _reorder(image_to_array(msg, max_pixels), msg.encoding)


def _reorder(arr: np.ndarray, encoding: str) -> np.ndarray:
    if encoding in ("rgb8", "mono8"):
        return arr
    if encoding == "bgr8":
        return arr[..., ::-1]                          # H x W x 3, RGB view
    if encoding == "rgba8":
        return arr[..., :3]
    if encoding == "bgra8":
        return arr[..., 2::-1]
    raise ValueError(f"no channel reordering for {encoding!r}")


def compressed_to_rgb(msg: Any, max_pixels: int | None = None) -> np.ndarray:
    """Decode a ``sensor_msgs/CompressedImage`` (JPEG, PNG, ... via ``cv2.imdecode``) to RGB ``(H, W, 3)``
    or mono ``(H, W)`` uint8.

    Raises:
        ImageConversionError: ``empty`` (no data), ``decode`` (OpenCV cannot decode it), ``encoding`` (decodes
            to something other than 8-bit gray / BGR / BGRA, e.g. a 16-bit PNG), ``too_large``.
    """
    import cv2

    if len(msg.data) == 0:
        raise ImageConversionError("empty", f"compressed image ({msg.format!r}) has no data")
    img = cv2.imdecode(np.frombuffer(msg.data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ImageConversionError("decode", f"OpenCV cannot decode the {len(msg.data)}-byte {msg.format!r} image")
    if img.dtype != np.uint8:
        raise ImageConversionError("encoding", f"compressed image decodes to {img.dtype}, expected 8-bit")
    _check_size(img.shape[0], img.shape[1], max_pixels, f"decoded {msg.format!r} image")
    if img.ndim == 2:
        return img
    channels = img.shape[2]
    if channels == 3:
        return _reorder(img, "bgr8")
    if channels == 4:
        return _reorder(img, "bgra8")
    raise ImageConversionError("encoding", f"compressed image decodes to {channels} channels, expected 1, 3 or 4")


def as_rgb(image: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` view of an RGB or mono ``(H, W)`` image (mono is broadcast, not copied)."""
    if image.ndim == 2:
        return np.broadcast_to(image[..., None], (*image.shape, 3))
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    raise ValueError(f"expected an (H, W) or (H, W, 3) image, got shape {image.shape}")


def encode_array(array: np.ndarray, encoding: str) -> ImageFields:
    """The ``sensor_msgs/Image`` fields holding ``array`` (``(H, W)`` or ``(H, W, C)``) with ``encoding``.

    ``step = W * C * itemsize``, ``is_bigendian`` follows the array's byte order; the data is copied once
    (``tobytes``).

    Raises:
        ValueError: encoding unknown, or the array's dtype / channel count does not match it.
    """
    if encoding not in ENCODINGS:
        raise ValueError(f"unknown encoding {encoding!r}, expected one of {sorted(ENCODINGS)}")
    dtype, channels = ENCODINGS[encoding]
    got_channels = 1 if array.ndim == 2 else (array.shape[2] if array.ndim == 3 else -1)
    if array.dtype.newbyteorder("=") != dtype.newbyteorder("=") or got_channels != channels:
        raise ValueError(f"{encoding} needs {dtype} with {channels} channel(s), got {array.dtype} "
                         f"of shape {array.shape}")
    height, width = int(array.shape[0]), int(array.shape[1])
    order = array.dtype.byteorder
    bigendian = int(order == ">" or (order == "=" and sys.byteorder == "big")) if dtype.itemsize > 1 else 0
    return ImageFields(height, width, encoding, bigendian, width * channels * dtype.itemsize,
                       np.ascontiguousarray(array).tobytes())
