"""Panoptic decoding of Hierarchical Lovász Embeddings (paper §3.5): full and fast, pure torch, any device."""
from .fast import downsample_outputs, upsample_labels, window_pixel_counts
from .instances import instance_masks, kernel_features, kernel_weights
from .panoptic import (EXACT_MAX_PIXELS, EXACT_MAX_SEEDS, DecoderInputError, SegmentLabels, decode_batch,
                       decode_panoptic, decoder_inputs, label_segments)
from .refine import COARSE_FACTOR, border_cells, cell_pixels, label_segments_refined, neighbourhood_masks
from .result import PanopticResult
from .seeds import find_seeds, greedy_suppression, merge_seeds, window_max
from .segments import filter_small_segments, number_instances, segment_statistics
from .semantic import assign_semantics, stuff_pixels

__all__ = [
    "PanopticResult", "DecoderInputError", "decode_panoptic", "decode_batch", "decoder_inputs", "label_segments",
    "SegmentLabels",
    "assign_semantics", "find_seeds", "merge_seeds", "greedy_suppression", "instance_masks", "stuff_pixels",
    "filter_small_segments", "number_instances", "segment_statistics", "downsample_outputs", "upsample_labels",
    "window_pixel_counts", "kernel_features", "kernel_weights", "window_max", "COARSE_FACTOR", "EXACT_MAX_PIXELS",
    "EXACT_MAX_SEEDS", "border_cells", "cell_pixels", "label_segments_refined", "neighbourhood_masks",
]
