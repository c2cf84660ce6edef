"""Association of thing segments across video frames by their mean embeddings (paper §4.5)."""
from hle_core.tracking.association import (
    assign,
    box_coverage_matrix,
    box_iou_matrix,
    cascade_assign,
    center_distance_matrix,
    cosine_distance_matrix,
)
from hle_core.tracking.tracker import (
    UNTRACKED,
    Detections,
    EmbeddingTracker,
    TrackerConfig,
    TrackState,
    detections_from_segments,
    load_tracker_config,
)

__all__ = [
    "UNTRACKED",
    "Detections",
    "EmbeddingTracker",
    "TrackerConfig",
    "TrackState",
    "detections_from_segments",
    "load_tracker_config",
    "assign",
    "cascade_assign",
    "box_iou_matrix",
    "box_coverage_matrix",
    "center_distance_matrix",
    "cosine_distance_matrix",
]
