"""Messages ↔ numpy, by hand (no cv_bridge), and the PanopticSegmentation message built from a FrameResult.

Plain functions, testable without a running node. The pixel codecs (image → array views honouring row padding
and ``is_bigendian``, compressed decoding, :class:`ImageConversionError` with a ``reason`` from
:data:`REJECT_REASONS` that feeds the node's counters) are ROS-free and live in :mod:`hle_core.image_codec`
(bag evaluation uses them on rosbags messages); they are re-exported here. This module adds what needs the rclpy
message classes: ``sensor_msgs/Image`` construction and the ``PanopticSegmentation`` message, whose field
values come from :mod:`hle_core.message_fields`.
"""
from __future__ import annotations

import array
from typing import Any

import numpy as np
from sensor_msgs.msg import Image, RegionOfInterest

from hle_core.config import ClassTable
# The pixel codecs are ROS-free and live in hle_core (bag evaluation uses them too); re-exported here.
from hle_core.image_codec import (ENCODINGS, INFERENCE_ENCODINGS, REJECT_REASONS, ImageConversionError, as_rgb,
                                  compressed_to_rgb, encode_array, image_to_array, image_to_rgb)
from hle_core.message_fields import class_table_fields, instance_fields

__all__ = [
    "ENCODINGS",
    "INFERENCE_ENCODINGS",
    "REJECT_REASONS",
    "ImageConversionError",
    "image_to_array",
    "image_to_rgb",
    "compressed_to_rgb",
    "as_rgb",
    "array_to_image",
    "labels_to_image",
    "build_panoptic_msg",
]


def array_to_image(array: np.ndarray, encoding: str, header: Any = None) -> Image:
    """A ``sensor_msgs/Image`` holding ``array`` (``(H, W)`` or ``(H, W, C)``) with the given encoding.

    ``step = W * C * itemsize``, ``is_bigendian`` follows the array's byte order; the data is copied once
    (``tobytes``, the fast path; assigning a memoryview is ~100x slower).

    Raises:
        ValueError: encoding unknown, or the array's dtype / channel count does not match it.
    """
    fields = encode_array(array, encoding)
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width, msg.encoding = fields.height, fields.width, fields.encoding
    msg.is_bigendian, msg.step, msg.data = fields.is_bigendian, fields.step, fields.data
    return msg


def labels_to_image(panoptic: np.ndarray, header: Any = None) -> Image:
    """The panoptic label map ``(H, W)`` int32 (void 0, stuff = class id, thing = class id × 1000 + k) as 32SC1."""
    if panoptic.ndim != 2:
        raise ValueError(f"panoptic map must be (H, W), got shape {panoptic.shape}")
    return array_to_image(panoptic.astype(np.int32, copy=False), "32SC1", header)


def build_panoptic_msg(header: Any, result: Any, classes: ClassTable, embedding_dim: int, backend: str = "",
                       processing_time_ms: float = 0.0, labels: Image | None = None) -> Any:
    """``hle_ros/PanopticSegmentation`` for one :class:`hle_core.pipeline.FrameResult`.

    Args:
        header: the input image's header (stamp and frame), copied to the message and its label image.
        result: the pipeline's FrameResult: ``panoptic`` (H, W) int32 and per-segment arrays of length S
            (``ids``, ``category_ids``, ``is_thing``, ``scores``, ``areas``, ``boxes`` (S, 4) inclusive
            x0, y0, x1, y1, ``embeddings`` (S, D) unit rows, ``track_ids``).
        classes: the model's class table (names, category ids, thing flags) for consumers.
        embedding_dim: D, the length of every instance's ``embedding``.
        backend: name of the backend that produced the result.
        processing_time_ms: receive → segmentation wall time.
        labels: the 32SC1 label image if already built (to share it with ``~/labels``), else built here.
    """
    from hle_ros.msg import PanopticInstance, PanopticSegmentation   # generated from msg/ (built separately)

    fields = instance_fields(result, classes, embedding_dim)      # validates the embedding width first
    table = class_table_fields(classes)
    msg = PanopticSegmentation()
    msg.header = header
    msg.labels = labels if labels is not None else labels_to_image(result.panoptic, header)
    msg.class_names = table["class_names"]
    msg.class_ids = array.array("H", table["class_ids"])
    msg.class_is_thing = table["class_is_thing"]
    msg.embedding_dim = int(embedding_dim)
    msg.label_divisor = table["label_divisor"]
    msg.backend = backend
    msg.processing_time_ms = float(processing_time_ms)
    instances = []
    for f in fields:                                                  # one entry per segment, not per pixel
        x, y, w, h = f["bbox"]
        inst = PanopticInstance(id=f["id"], track_id=f["track_id"], class_id=f["class_id"],
                                class_index=f["class_index"], is_thing=f["is_thing"], score=f["score"],
                                area=f["area"])
        inst.bbox = RegionOfInterest(x_offset=x, y_offset=y, width=w, height=h)
        inst.embedding = array.array("f", f["embedding"].tobytes())
        instances.append(inst)
    msg.instances = instances
    return msg
