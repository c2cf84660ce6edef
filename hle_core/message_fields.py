"""Field values of the node's ``hle_ros/PanopticSegmentation`` message (msg/), computed without ROS.

One definition of how a :class:`hle_core.pipeline.FrameResult` maps onto the message, shared by the live node
(:func:`hle_ros.conversions.build_panoptic_msg`, rclpy message classes) and by bag evaluation
(:mod:`hle_core.bags.writer`, rosbags message classes), so the two can never disagree; and the one way back,
:func:`frame_from_message`, with which recorded node output is scored (:mod:`hle_core.bags.score`).

A frame has three forms and one conversion between each pair: the decoder's ``PanopticResult`` (tensors on the
network's device) → ``FrameResult`` (host arrays, :meth:`hle_core.pipeline.Pipeline.finish`) ⇄ message.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .config import LABEL_DIVISOR, ClassTable

__all__ = ["instance_fields", "frame_from_message", "class_table_fields", "class_table_from_fields"]


def class_table_fields(classes: ClassTable) -> dict[str, Any]:
    """``class_names``, ``class_ids``, ``class_is_thing`` (parallel, network class order) and ``label_divisor``."""
    return {"class_names": list(classes.names), "class_ids": list(classes.ids),
            "class_is_thing": list(classes.thing_mask), "label_divisor": LABEL_DIVISOR}


def class_table_from_fields(msg: Any) -> ClassTable:
    """The class table a ``PanopticSegmentation`` message carries (inverse of :func:`class_table_fields`)."""
    from .config import ClassInfo

    names, ids, things = list(msg.class_names), list(msg.class_ids), list(msg.class_is_thing)
    if not (len(names) == len(ids) == len(things)):
        raise ValueError(f"message class table fields differ in length: {len(names)} names, {len(ids)} ids, "
                         f"{len(things)} thing flags")
    # the message carries no colours: a fixed colour per category id, so overlays stay readable and stable
    def colour(cid: int) -> tuple[int, int, int]:
        r, g, b = (int(v) for v in np.random.default_rng(int(cid)).integers(40, 256, 3))
        return r, g, b

    return ClassTable(tuple(ClassInfo(int(i), str(n), bool(t), colour(i)) for n, i, t in zip(names, ids, things)))


def instance_fields(result: Any, classes: ClassTable, embedding_dim: int) -> list[dict[str, Any]]:
    """One ``PanopticInstance`` field dict per segment of ``result`` (things and stuff).

    Args:
        result: a FrameResult: per-segment arrays of length S (``ids``, ``category_ids``, ``is_thing``,
            ``scores``, ``areas``, ``boxes`` (S, 4) inclusive x0, y0, x1, y1, ``embeddings`` (S, D) unit rows,
            ``track_ids``).
        classes: the model's class table (``class_index`` is the position of the category in it).
        embedding_dim: D, the length of every ``embedding``.
    Returns:
        dicts with ``id``, ``track_id``, ``class_id``, ``class_index``, ``is_thing``, ``score``, ``area``,
        ``bbox`` = (x_offset, y_offset, width, height) and ``embedding`` ((D,) float32, contiguous).
    Raises:
        ValueError: the embeddings do not have ``embedding_dim`` columns.
    """
    s = int(result.ids.shape[0])
    embeddings = np.ascontiguousarray(result.embeddings, dtype=np.float32)
    embeddings = embeddings.reshape(s, -1) if s else embeddings.reshape(0, embedding_dim)   # S x D
    if embeddings.shape[1] != embedding_dim:
        raise ValueError(f"segment embeddings have {embeddings.shape[1]} dims, expected embedding_dim={embedding_dim}")
    index_of = {c.id: k for k, c in enumerate(classes.classes)}
    out = []
    for i in range(s):                                                # one entry per segment, not per pixel
        x0, y0, x1, y1 = (int(v) for v in result.boxes[i])
        class_id = int(result.category_ids[i])
        out.append({
            "id": int(result.ids[i]),
            "track_id": int(result.track_ids[i]),
            "class_id": class_id,
            "class_index": index_of[class_id],
            "is_thing": bool(result.is_thing[i]),
            "score": float(result.scores[i]),
            "area": int(result.areas[i]),
            "bbox": (max(x0, 0), max(y0, 0), max(x1 - x0 + 1, 0), max(y1 - y0 + 1, 0)),
            "embedding": embeddings[i],
        })
    return out


def frame_from_message(msg: Any) -> Any:
    """A deserialised ``PanopticSegmentation`` message (rclpy or rosbags class) → a
    :class:`~hle_core.pipeline.FrameResult`, the inverse of :func:`instance_fields` + the label image.

    ``bbox`` (x_offset, y_offset, width, height) becomes the inclusive ``(x0, y0, x1, y1)`` box; an instance
    whose ``embedding`` does not have ``embedding_dim`` values gets a zero row; the node's
    ``processing_time_ms`` is ``timings_ms["total"]``.

    Raises:
        ImageConversionError: the label image is not a readable 32SC1 image.
        ValueError: negative instance ids (outside the label image's id space).
    """
    from .image_codec import ImageConversionError, image_to_array
    from .pipeline import FrameResult

    labels = image_to_array(msg.labels)
    if msg.labels.encoding != "32SC1" or labels.ndim != 2:
        raise ImageConversionError("encoding", f"label image must be 32SC1, got {msg.labels.encoding!r}")
    inst = list(msg.instances)
    dim = int(msg.embedding_dim)
    embeddings = np.zeros((len(inst), dim), np.float32)
    for i, x in enumerate(inst):                                      # one entry per segment, not per pixel
        e = np.asarray(x.embedding, np.float32)
        if e.size == dim:
            embeddings[i] = e
    ids = np.array([x.id for x in inst], np.int64)
    if ids.size and ids.min() < 0:
        raise ValueError(f"negative instance ids {ids[ids < 0][:5].tolist()}")
    boxes = np.array([(x.bbox.x_offset, x.bbox.y_offset, x.bbox.x_offset + x.bbox.width - 1,
                       x.bbox.y_offset + x.bbox.height - 1) for x in inst], np.int64).reshape(-1, 4)
    return FrameResult(
        panoptic=labels.astype(np.int32), ids=ids,
        category_ids=np.array([x.class_id for x in inst], np.int64),
        is_thing=np.array([x.is_thing for x in inst], bool),
        scores=np.array([x.score for x in inst], np.float32),
        areas=np.array([x.area for x in inst], np.int64),
        boxes=boxes, embeddings=embeddings,
        track_ids=np.array([x.track_id for x in inst], np.int64),
        timings_ms={"total": float(msg.processing_time_ms)},
    )
