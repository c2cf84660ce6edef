"""``sensor_msgs/Image`` / ``CompressedImage`` pixels ↔ numpy, by hand (no cv_bridge, no ROS import).

The functions take any object with the message's fields (``height``, ``width``, ``encoding``, ``is_bigendian``,
``step``, ``data``; ``format`` and ``data`` for compressed images): an rclpy message in the node
(:mod:`hle_ros.conversions` re-exports this module), a deserialised ``rosbags`` message in bag evaluation.
Image → array conversions return *views* of the message buffer (``np.frombuffer`` + a reshape over ``step``),
honouring row padding and ``is_bigendian``. Every refusal raises :class:`ImageConversionError`, whose ``reason``
(one of :data:`REJECT_REASONS`) feeds the node's and the evaluator's rejection counters.

Size limits (``max_pixels``) bound what the pipeline will actually compute, not just the message: the image, and
the network input made from it (:func:`computed_size`: the image padded to multiples of :data:`PAD_MULTIPLE`, or
the fixed ``input_size`` it is letterboxed / stretched to), and its aspect ratio (:data:`MAX_ASPECT_RATIO`; a 1 x N
image would otherwise be padded to 32 x N). Compressed images are checked on the size their header declares,
before anything is decoded (:func:`compressed_size`).
"""
from __future__ import annotations

import struct
import sys
from dataclasses import dataclass
from typing import Any, Tuple, Union

import numpy as np

from .config import SIZE_MULTIPLE as PAD_MULTIPLE   # without a fixed network input, axes are padded to this
from .config import scaled_size

__all__ = [
    "InputFit",
    "ENCODINGS",
    "INFERENCE_ENCODINGS",
    "REJECT_REASONS",
    "ImageConversionError",
    "ImageFields",
    "PAD_MULTIPLE",
    "MAX_ASPECT_RATIO",
    "computed_size",
    "check_image_size",
    "compressed_size",
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
REJECT_REASONS = ("encoding", "empty", "step", "size", "too_large", "aspect", "decode")
#: With ``max_pixels`` set, images whose long side is more than this many times the short side are rejected
#: (``aspect``): no camera frame is that thin, and padding would multiply the work of a 1 x N image by 32.
MAX_ASPECT_RATIO = 16


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


#: How the pipeline fits an image to the network (:attr:`hle_core.pipeline.Pipeline.fit`): a fixed ``(H, W)`` input
#: size, or — images run at their own size — the model's test scale (a float; None is scale 1).
InputFit = Union[Tuple[int, int], float, None]


def computed_size(height: int, width: int, input_size: InputFit = None) -> tuple[int, int]:
    """``(H', W')`` of the network input the pipeline computes for a ``height`` x ``width`` image: the fixed
    ``input_size`` when there is one (letterbox and stretch both fill it), else the image — resized by the test
    scale when ``input_size`` is a float (``hle.model.test_scale``) — padded to multiples of :data:`PAD_MULTIPLE`."""
    if isinstance(input_size, (int, float)):
        height, width = scaled_size((height, width), float(input_size))
    elif input_size is not None:
        return int(input_size[0]), int(input_size[1])
    return -(-height // PAD_MULTIPLE) * PAD_MULTIPLE, -(-width // PAD_MULTIPLE) * PAD_MULTIPLE


def check_image_size(height: int, width: int, max_pixels: int | None, what: str = "image",
                     input_size: InputFit = None) -> None:
    """Refuse a ``height`` x ``width`` image before any of its data is touched.

    Always: ``empty`` (no pixels). With ``max_pixels``: ``too_large`` when the image or the network input made
    from it (:func:`computed_size`) has more than ``max_pixels`` pixels, ``aspect`` when its long side is more
    than :data:`MAX_ASPECT_RATIO` times its short side. ``max_pixels`` None: no size limit.
    """
    height, width = int(height), int(width)
    if height <= 0 or width <= 0:
        raise ImageConversionError("empty", f"{what} is empty: {width}x{height}")
    if max_pixels is None:
        return
    if height * width > max_pixels:
        raise ImageConversionError(
            "too_large", f"{what} has {width}x{height} = {height * width} pixels, more than max_pixels={max_pixels}")
    if max(height, width) > MAX_ASPECT_RATIO * min(height, width):
        raise ImageConversionError(
            "aspect", f"{what} of {width}x{height} is more than {MAX_ASPECT_RATIO} times as long as it is wide "
                      f"(its network input would be mostly padding)")
    h_in, w_in = computed_size(height, width, input_size)
    if h_in * w_in > max_pixels:
        how = (f"resized to the input size {h_in}x{w_in}" if isinstance(input_size, tuple)
               else f"scaled by the model's test_scale {input_size:g} and padded to multiples of {PAD_MULTIPLE}"
               if isinstance(input_size, (int, float)) and input_size != 1
               else f"padded to multiples of {PAD_MULTIPLE}")
        raise ImageConversionError(
            "too_large", f"{what} of {width}x{height} runs as a {w_in}x{h_in} network input ({how}) = "
                         f"{h_in * w_in} pixels, more than max_pixels={max_pixels}")


def image_to_array(msg: Any, max_pixels: int | None = None,
                   input_size: InputFit = None) -> np.ndarray:
    """View of a ``sensor_msgs/Image``'s pixels: ``(H, W)`` for one channel, ``(H, W, C)`` otherwise.

    Honours ``step`` (padded rows) and ``is_bigendian`` (multi-byte encodings get a byte-order-marked dtype,
    e.g. ``>i4``, so values are right without a copy). Channel order is the encoding's (bgr8 stays BGR).

    Raises:
        ImageConversionError: unknown encoding, empty image, too large / too thin for ``max_pixels`` (with the
            network ``input_size``, see :func:`check_image_size`; checked before the data is touched), ``step``
            shorter than a row, or ``len(data) != step * height``.
    """
    if msg.encoding not in ENCODINGS:
        raise ImageConversionError(
            "encoding", f"unsupported image encoding {msg.encoding!r}, expected one of {sorted(ENCODINGS)}")
    dtype, channels = ENCODINGS[msg.encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    check_image_size(height, width, max_pixels, f"{msg.encoding} image", input_size)
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


def image_to_rgb(msg: Any, max_pixels: int | None = None, input_size: InputFit = None) -> np.ndarray:
    """View of an rgb8 / bgr8 / rgba8 / bgra8 image as ``(H, W, 3)`` uint8 RGB, or of a mono8 one as ``(H, W)``.

    Channel reordering and alpha dropping are negative / sliced strides, not copies.

    Raises:
        ImageConversionError: as :func:`image_to_array`, and reason ``encoding`` for any other encoding.
    """
    if msg.encoding not in INFERENCE_ENCODINGS:
        raise ImageConversionError(
            "encoding", f"image encoding {msg.encoding!r} is not accepted, expected one of {list(INFERENCE_ENCODINGS)}")
    return _reorder(image_to_array(msg, max_pixels, input_size), msg.encoding)


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


def compressed_size(data: bytes | memoryview | np.ndarray) -> tuple[int, int] | None:
    """``(H, W)`` that a compressed image's header declares, without decoding it: PNG (IHDR), JPEG (the SOF
    marker), other formats through Pillow's lazy ``Image.open`` when Pillow is installed; None when unknown."""
    buf = data if isinstance(data, bytes) else memoryview(data).cast("B").tobytes()
    if buf[:8] == b"\x89PNG\r\n\x1a\n" and len(buf) >= 24 and buf[12:16] == b"IHDR":
        width, height = struct.unpack(">II", buf[16:24])
        return int(height), int(width)
    if buf[:2] == b"\xff\xd8":
        return _jpeg_size(buf)
    try:
        import io
        import warnings

        from PIL import Image as PILImage
    except ImportError:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with PILImage.open(io.BytesIO(buf)) as im:        # reads the header only
                width, height = im.size
    except PILImage.DecompressionBombError:
        return (1 << 31, 1 << 31)                    # larger than any max_pixels: rejected as too_large
    except Exception:  # noqa: BLE001 - any header PIL cannot read: size unknown, the decoder reports the error
        return None
    return int(height), int(width)


_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """``(H, W)`` of the first start-of-frame marker of a JPEG stream; None when there is none before the scan."""
    pos, n = 2, len(data)
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:                           # fill byte
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            pos += 2
            continue
        if marker == 0xDA:                           # start of scan before any frame header
            return None
        length = (data[pos + 2] << 8) | data[pos + 3]
        if marker in _JPEG_SOF:
            if pos + 9 > n:
                return None
            height, width = struct.unpack(">HH", data[pos + 5:pos + 9])
            return int(height), int(width)
        pos += 2 + length
    return None


def compressed_to_rgb(msg: Any, max_pixels: int | None = None,
                      input_size: InputFit = None) -> np.ndarray:
    """Decode a ``sensor_msgs/CompressedImage`` (JPEG, PNG, ... via ``cv2.imdecode``) to RGB ``(H, W, 3)``
    or mono ``(H, W)`` uint8.

    With ``max_pixels`` the size the header declares (:func:`compressed_size`) is checked first, exactly as for a
    raw image (:func:`check_image_size`), so an oversized image costs no decoding; an image whose size cannot be
    read from its header is then refused (``decode``).

    Raises:
        ImageConversionError: ``empty`` (no data), ``decode`` (no readable header under ``max_pixels``, or OpenCV
            cannot decode it), ``encoding`` (decodes to something other than 8-bit gray / BGR / BGRA, e.g. a
            16-bit PNG), ``too_large`` / ``aspect`` (see :func:`check_image_size`).
    """
    import cv2

    if len(msg.data) == 0:
        raise ImageConversionError("empty", f"compressed image ({msg.format!r}) has no data")
    if max_pixels is not None:
        declared = compressed_size(msg.data)
        if declared is None:
            raise ImageConversionError(
                "decode", f"cannot read the size of the {len(msg.data)}-byte {msg.format!r} image from its header "
                          f"(PNG, JPEG and formats Pillow reads are accepted); not decoding it")
        check_image_size(*declared, max_pixels, f"{msg.format!r} image (size from its header)", input_size)
    img = cv2.imdecode(np.frombuffer(msg.data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ImageConversionError("decode", f"OpenCV cannot decode the {len(msg.data)}-byte {msg.format!r} image")
    if img.dtype != np.uint8:
        raise ImageConversionError("encoding", f"compressed image decodes to {img.dtype}, expected 8-bit")
    check_image_size(img.shape[0], img.shape[1], max_pixels, f"decoded {msg.format!r} image", input_size)
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
