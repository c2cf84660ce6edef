"""Messages ↔ numpy, by hand (no cv_bridge), and the PanopticSegmentation message built from a FrameResult.

Plain functions, testable without a running node. The pixel codecs (image → array views honouring row padding
and ``is_bigendian``, compressed decoding, :class:`ImageConversionError` with a ``reason`` from
:data:`REJECT_REASONS` that feeds the node's counters) are ROS-free and live in :mod:`hle_core.image_codec`
(bag evaluation uses them on rosbags messages); they are re-exported here. This module adds what needs the rclpy
message classes: ``sensor_msgs/Image`` construction and the ``PanopticSegmentation`` message, whose field
values come from :mod:`hle_core.message_fields`; the ecosystem's messages of the same result
(``vision_msgs/Detection2DArray`` with track ids, ``vision_msgs/LabelInfo``) and ``sensor_msgs/CameraInfo``
matched to the label image (:func:`camera_info_for_labels`).
"""
from __future__ import annotations

import array
from typing import Any

import numpy as np
from sensor_msgs.msg import CameraInfo, Image, RegionOfInterest

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
    "build_detections_msg",
    "build_label_info_msg",
    "camera_info_for_labels",
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


def build_detections_msg(header: Any, result: Any) -> Any:
    """``vision_msgs/Detection2DArray`` of the thing instances of a FrameResult (stuff has no detection).

    Per thing segment, one ``Detection2D``: ``header`` = the input's header; ``id`` = the track id as decimal text
    (the same number as ``PanopticInstance.track_id`` of the panoptic message of this stamp), empty while the
    instance is untracked (tracking off, or a track not yet confirmed); ``results`` = one hypothesis with
    ``class_id`` = the category id as decimal text (the ``class_id`` of ``~/label_info``) and ``score`` = the
    decoder's seed score, pose left zero (2-D only); ``bbox`` = the segment's tight axis-aligned box in label
    image pixels, centre ``((x0 + x1) / 2, (y0 + y1) / 2)`` with pixel centres at integer coordinates (the
    convention of sensor_msgs/CameraInfo's K), size ``(x1 - x0 + 1, y1 - y0 + 1)``, theta 0.
    """
    from vision_msgs.msg import Detection2D, Detection2DArray, ObjectHypothesisWithPose

    out = Detection2DArray()
    out.header = header
    dets = []
    for i in np.flatnonzero(np.asarray(result.is_thing, bool)):
        x0, y0, x1, y1 = (float(v) for v in result.boxes[i])
        det = Detection2D()
        det.header = header
        track = int(result.track_ids[i])
        det.id = str(track) if track >= 0 else ""
        det.bbox.center.position.x = (x0 + x1) / 2.0
        det.bbox.center.position.y = (y0 + y1) / 2.0
        det.bbox.size_x = x1 - x0 + 1.0
        det.bbox.size_y = y1 - y0 + 1.0
        hyp = ObjectHypothesisWithPose()
        hyp.hypothesis.class_id = str(int(result.category_ids[i]))
        hyp.hypothesis.score = float(result.scores[i])
        det.results = [hyp]
        dets.append(det)
    out.detections = dets
    return out


def build_label_info_msg(header: Any, classes: ClassTable, threshold: float = 0.0) -> Any:
    """``vision_msgs/LabelInfo``: every class of the model, ``class_id`` = category id, ``class_name`` = its name
    (things and stuff; the id convention of the label image and of Detection2D hypotheses); ``threshold`` =
    the decoder's seed threshold (a thing scoring below it is never reported)."""
    from vision_msgs.msg import LabelInfo, VisionClass

    msg = LabelInfo()
    if header is not None:
        msg.header = header
    msg.class_map = [VisionClass(class_id=int(c.id), class_name=str(c.name)) for c in classes.classes]
    msg.threshold = float(threshold)
    return msg


def camera_info_for_labels(info: CameraInfo, header: Any, width: int, height: int) -> CameraInfo:
    """``info`` re-issued for a label image of ``width`` x ``height`` pixels, with ``header``.

    At the calibrated size (``info.width`` x ``info.height``), or for an uncalibrated info of zero size, the
    intrinsics are copied. At another size, K and P are scaled per axis with sx = width / info.width and
    sy = height / info.height: focal lengths (and P's Tx, Ty) multiply by s; principal points, with pixel
    centres at integer coordinates (a resize maps u to (u + 0.5)·s - 0.5), become c' = (c + 0.5)·s - 0.5.
    D and R are unchanged (distortion is defined on normalised coordinates), the ROI is scaled, and binning is
    reset to 0 (the published size is the full label image).
    """
    out = CameraInfo()
    out.header = header
    out.distortion_model = info.distortion_model
    out.d = list(info.d)
    out.r = info.r
    out.binning_x, out.binning_y = info.binning_x, info.binning_y
    out.width, out.height = int(width), int(height)
    if info.width == 0 or info.height == 0 or (info.width, info.height) == (width, height):
        out.k, out.p, out.roi = info.k, info.p, info.roi
        return out
    sx, sy = width / info.width, height / info.height
    k = np.array(info.k, np.float64).reshape(3, 3)
    p = np.array(info.p, np.float64).reshape(3, 4)
    for m in (k, p):
        m[0, :2] *= sx
        m[0, 2] = (m[0, 2] + 0.5) * sx - 0.5
        m[1, :2] *= sy
        m[1, 2] = (m[1, 2] + 0.5) * sy - 0.5
    p[0, 3] *= sx
    p[1, 3] *= sy
    out.k, out.p = k.reshape(-1).tolist(), p.reshape(-1).tolist()
    roi = info.roi
    out.roi = RegionOfInterest(x_offset=int(round(roi.x_offset * sx)), y_offset=int(round(roi.y_offset * sy)),
                               width=int(round(roi.width * sx)), height=int(round(roi.height * sy)),
                               do_rectify=roi.do_rectify)
    out.binning_x = out.binning_y = 0
    return out
