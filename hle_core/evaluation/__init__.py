"""Evaluation (paper §4.2, §4.5): panoptic quality exactly as panopticapi, PQ†, parsing covering, mIoU
(:mod:`.pq`: matching and statistics per image; :mod:`.pq_files`: COCO panoptic files; :mod:`.pq_tables`: the
printed tables), and the video metrics STQ, VPQ and ID switches (:mod:`.video`). The exceptions are those of
:mod:`hle_core.panoptic_io`, re-exported here.

Importing this package loads NumPy only (no torch, no OpenCV), so ``hle evaluate pq`` starts fast; the video
metrics are imported on first use.
"""
from __future__ import annotations

from typing import Any

from ..panoptic_io import (MissingPredictionError, PanopticFileNotFoundError, PanopticFormatError,
                           SegmentMismatchError, UnknownCategoryError)
from .pq import (Categories, PQStats, SegmentTable, accumulate_maps, image_stats, joint_histogram, pq_from_maps,
                 segments_from_map)
from .pq_files import evaluate_coco_pair, pq_compute
from .pq_tables import format_extra_table, format_pq_table

_VIDEO = ("relabel_with_tracks", "STQAccumulator", "VPQAccumulator", "video_panoptic_quality", "count_id_switches")

__all__ = [
    "Categories", "PQStats", "SegmentTable", "accumulate_maps", "evaluate_coco_pair", "format_extra_table",
    "format_pq_table", "image_stats", "joint_histogram", "pq_compute", "pq_from_maps", "segments_from_map",
    "PanopticFileNotFoundError", "PanopticFormatError", "SegmentMismatchError",
    "UnknownCategoryError", "MissingPredictionError", *_VIDEO,
]


def __getattr__(name: str) -> Any:  # PEP 562: video metrics on first use
    if name in _VIDEO:
        from . import video

        return getattr(video, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
