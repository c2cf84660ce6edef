"""Field values of the node's ``hle_ros/PanopticSegmentation`` message (msg/), computed without ROS.

One definition of how a :class:`hle_core.pipeline.FrameResult` maps onto the message, shared by the live node
(:func:`hle_ros.conversions.build_panoptic_msg`, rclpy message classes) and by bag evaluation
(:mod:`hle_core.bags.writer`, rosbags message classes), so the two can never disagree.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .config import LABEL_DIVISOR, ClassTable

__all__ = ["instance_fields", "class_table_fields", "class_table_from_fields"]


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
    colour = lambda cid: tuple(int(v) for v in np.random.default_rng(int(cid)).integers(40, 256, 3))  # noqa: E731
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
