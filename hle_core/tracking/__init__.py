"""Association of thing segments across video frames by their mean embeddings (paper §4.5)."""
from hle_core.tracking.association import assign, box_iou_matrix, cosine_distance_matrix
from hle_core.tracking.tracker import (
    UNTRACKED,
    Detections,
    EmbeddingTracker,
    TrackerConfig,
    TrackState,
    detections_from_segments,
)

__all__ = [
    "UNTRACKED",
    "Detections",
    "EmbeddingTracker",
    "TrackerConfig",
    "TrackState",
    "detections_from_segments",
    "assign",
    "box_iou_matrix",
    "cosine_distance_matrix",
]
