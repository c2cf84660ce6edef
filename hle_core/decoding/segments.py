"""§3.5, segment bookkeeping: per-segment statistics over a label map, the minimum-area filter, instance numbers.

Everything here reduces over the label map with ``bincount`` / ``index_add_`` (one pass over the pixels for
all segments together), never a Python loop over segments or pixels.

Per-segment sums go through :func:`lane_keys`: neighbouring pixels mostly belong to the same segment, and a
scatter into one accumulator per segment makes every addition wait for the previous one into the same
memory word (a dependency chain the length of the run). Giving pixel ``i`` the accumulator
``segment · LANES + i mod LANES`` spreads each run over ``LANES`` independent partial sums, which are added up
afterwards (docs/RESULTS.md, "Real time on CPU", for the measured effect).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["LANES", "lane_keys", "lane_bincount", "lane_index_add", "segment_statistics", "filter_small_segments",
           "number_instances"]

#: Independent partial sums per segment (a power of two); see the module docstring.
LANES = 16


def lane_keys(segment: torch.Tensor) -> torch.Tensor:
    """Accumulator index ``segment · LANES + position mod LANES`` of every pixel of a ``(h, w)`` label map
    (position = column) or of a flat ``(N,)`` one (position = index); returned flat, ``(N,)`` int64."""
    if segment.dim() == 2:
        lane = torch.arange(segment.shape[1], device=segment.device) & (LANES - 1)          # w, broadcast on rows
    else:
        lane = torch.arange(segment.numel(), device=segment.device) & (LANES - 1)
    return (segment * LANES + lane).flatten()


def lane_bincount(keys: torch.Tensor, num_segments: int, weights: torch.Tensor | None = None) -> torch.Tensor:
    """``torch.bincount(segment, weights, minlength=num_segments)`` from :func:`lane_keys` ``keys``: ``(M,)``
    (int64 without weights, float64 with them)."""
    return torch.bincount(keys, weights, minlength=num_segments * LANES).view(num_segments, LANES).sum(1)


def lane_index_add(keys: torch.Tensor, values: torch.Tensor, num_segments: int) -> torch.Tensor:
    """Per-segment sums of ``values`` ``(C, N)`` from :func:`lane_keys` ``keys``: ``(C, M)``, i.e.
    ``zeros(C, M).index_add_(1, segment, values)`` summed in another order."""
    c = values.shape[0]
    sums = values.new_zeros(c, num_segments * LANES)
    sums.index_add_(1, keys, values)
    return sums.view(c, num_segments, LANES).sum(2)


def segment_statistics(segment_map: torch.Tensor, embedding: torch.Tensor, num_segments: int, *,
                       pixel_count: torch.Tensor | None = None, factor: int = 1,
                       size: tuple[int, int] | None = None,
                       keys: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Area, bounding box and normalised mean embedding of every segment of a label map.

    Boxes come from two histograms, pixels per (segment, row) and per (segment, column): the first and last
    non-empty row / column of a segment are its box. With ``factor`` > 1 the map is a fast-mode label map whose
    cell (y, x) stands for the window of ``pixel_count[y, x]`` pixels starting at (factor·y, factor·x) of an
    image of ``size``, and ``embedding`` holds each window's mean: the statistics are those of the
    nearest-upsampled map at full resolution, exactly.

    Args:
        segment_map: ``(h, w)`` int64 segment index in ``0..num_segments-1``.
        embedding: ``(D, h, w)`` pixel embeddings (window means when ``factor`` > 1).
        num_segments: M, the number of segment slots.
        pixel_count: ``(h, w)`` int64 pixels per cell (:func:`~.fast.window_pixel_counts`); None: all 1.
        factor: pixels per cell side; size: ``(H, W)`` of the full image (default ``(h, w)``).
        keys: :func:`lane_keys` of ``segment_map`` when the caller has them already.
    Returns:
        ``areas`` ``(M,)`` int64, ``boxes`` ``(M, 4)`` int64 ``x0, y0, x1, y1`` inclusive full-resolution pixel
        coordinates (zeros for empty segments), ``embeddings`` ``(M, D)`` unit rows of the mean embedding
        (zeros for empty segments).
    """
    h, w = segment_map.shape
    full_h, full_w = size if size is not None else (h, w)
    dev = segment_map.device
    ys = torch.arange(h, device=dev)
    xs = torch.arange(w, device=dev)
    weights = None if pixel_count is None else pixel_count.flatten().double()
    per_row = torch.bincount((segment_map * h + ys[:, None]).flatten(), weights, minlength=num_segments * h)
    per_col = torch.bincount((segment_map * w + xs[None, :]).flatten(), minlength=num_segments * w)
    in_row = (per_row.view(num_segments, h) > 0).to(torch.uint8)                 # M x h
    in_col = (per_col.view(num_segments, w) > 0).to(torch.uint8)                 # M x w
    areas = per_row.view(num_segments, h).sum(dim=1)
    areas = areas if weights is None else areas.round().long()                   # counts are exact in float64
    y0 = in_row.argmax(dim=1) * factor                                           # first occupied row
    y1 = ((h - in_row.flip(1).argmax(dim=1)) * factor).clamp(max=full_h) - 1     # last occupied row
    x0 = in_col.argmax(dim=1) * factor
    x1 = ((w - in_col.flip(1).argmax(dim=1)) * factor).clamp(max=full_w) - 1
    boxes = torch.stack((x0, y0, x1, y1), dim=1) * (areas > 0)[:, None]
    d = embedding.shape[0]
    values = embedding.reshape(d, -1)                                            # D x (h w)
    if pixel_count is not None:
        values = values * pixel_count.flatten().to(values.dtype)                 # window sums
    sums = lane_index_add(lane_keys(segment_map) if keys is None else keys, values, num_segments)     # D x M
    return areas, boxes, F.normalize(sums.T, dim=1, eps=1e-12)


def filter_small_segments(areas: torch.Tensor, is_thing: torch.Tensor, min_instance_area: int,
                          min_stuff_area: int) -> torch.Tensor:
    """§3.5 step 6 (minimum-area filter, as in Panoptic-DeepLab's post-processing): segments smaller than
    ``min_instance_area`` (things) or ``min_stuff_area`` (stuff) pixels become void; empty segments too.

    Args:
        areas: ``(M,)`` pixel counts.
        is_thing: ``(M,)`` bool.
    Returns:
        ``(M,)`` bool: segments that stay.
    """
    min_area = torch.where(is_thing, torch.full_like(areas, min_instance_area), torch.full_like(areas, min_stuff_area))
    return (areas > 0) & (areas >= min_area)


def number_instances(category: torch.Tensor, score: torch.Tensor, valid: torch.Tensor,
                     num_classes: int) -> torch.Tensor:
    """Instance number k of the Cityscapes id ``category · 1000 + k``: 0, 1, ... per class, by descending score.

    Args:
        category: ``(M,)`` int64 class index of each segment.
        score: ``(M,)`` segment scores.
        valid: ``(M,)`` bool, the instances to number (others get -1).
        num_classes: K.
    Returns:
        ``(M,)`` int64 rank of each valid instance within its class (ties: lower row first), -1 elsewhere.
    """
    m = category.shape[0]
    key = torch.where(valid, category, torch.full_like(category, num_classes))   # invalid rows: class K
    order = torch.argsort(score, descending=True, stable=True)
    order = order[torch.argsort(key[order], stable=True)]                        # by class, then score desc
    counts = torch.bincount(key, minlength=num_classes + 1)
    starts = torch.cumsum(counts, 0) - counts                                    # first row of each class
    rank = torch.empty_like(category)
    rank[order] = torch.arange(m, device=category.device) - starts[key[order]]
    return torch.where(valid, rank, torch.full_like(rank, -1))
