"""Pairwise costs and gated assignment for tracking by mean embeddings (paper §4.5).

§4.5 observes that HLE's low-dimensional embeddings are temporally stable and proposes them "as a feature for
cross-frame data association". This module holds the pure, vectorised pieces of that association: the
track × detection matrices of box IoU, normalised centre distance and cosine distance, and a Hungarian
assignment that copes with gated (infinite-cost) pairs, in one pass or as a matching cascade.
:mod:`hle_core.tracking.tracker` keeps the state.

All functions take NumPy arrays (the tracker is CPU bookkeeping on a few dozen segments per frame) and are
free of Python loops over pairs.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = [
    "box_iou_matrix",
    "box_coverage_matrix",
    "center_distance_matrix",
    "cosine_distance_matrix",
    "assign",
    "cascade_assign",
]


def box_iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box in ``a`` with every box in ``b``.

    Args:
        a: ``(T, 4)`` boxes ``x0, y0, x1, y1`` (``x1 >= x0``, ``y1 >= y0``; continuous coordinates, area
            ``(x1 - x0) (y1 - y0)``).
        b: ``(S, 4)`` boxes, same convention.
    Returns:
        ``(T, S)`` float64 IoU in [0, 1]; 0 where the union is empty (two degenerate boxes).
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lo = np.maximum(a[:, None, :2], b[None, :, :2])                       # T x S x 2
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])                       # T x S x 2
    inter = np.clip(hi - lo, 0.0, None).prod(-1)                          # T x S
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])                    # T
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])                    # S
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def box_coverage_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Fraction of each box of ``a`` covered by each box of ``b``: ``|a ∩ b| / |a|`` (0 for an empty ``a``).

    Args:
        a: ``(T, 4)`` boxes ``x0, y0, x1, y1``; b: ``(S, 4)`` boxes, same convention (as :func:`box_iou_matrix`).
    Returns:
        ``(T, S)`` float64 in [0, 1].
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(hi - lo, 0.0, None).prod(-1)                          # T x S
    area_a = np.broadcast_to(((a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]))[:, None], inter.shape)
    return np.divide(inter, area_a, out=np.zeros_like(inter), where=area_a > 0)


def center_distance_matrix(a: np.ndarray, b: np.ndarray, min_size: float = 1.0) -> np.ndarray:
    """Distance between the box centres of every pair, in units of the pair's mean box size, per axis.

    ``δ(a, b) = ||((cx_b - cx_a) / w̄, (cy_b - cy_a) / h̄)||`` with ``w̄ = (w_a + w_b) / 2`` and
    ``h̄ = (h_a + h_b) / 2`` (each at least ``min_size`` pixels, so degenerate boxes do not divide by zero).
    δ ≤ 1 roughly means "moved by less than one box": a scale-free spatial gate that, unlike IoU, does not
    saturate once the boxes stop overlapping.

    Args:
        a: ``(T, 4)`` boxes ``x0, y0, x1, y1``.
        b: ``(S, 4)`` boxes, same convention.
        min_size: floor of ``w̄`` and ``h̄`` in pixels (> 0).
    Returns:
        ``(T, S)`` float64 distances >= 0.
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    centre_a, centre_b = 0.5 * (a[:, :2] + a[:, 2:]), 0.5 * (b[:, :2] + b[:, 2:])      # T x 2, S x 2
    size_a, size_b = a[:, 2:] - a[:, :2], b[:, 2:] - b[:, :2]                            # (w, h)
    mean_size = np.maximum(0.5 * (size_a[:, None, :] + size_b[None, :, :]), min_size)   # T x S x 2
    return np.linalg.norm((centre_b[None, :, :] - centre_a[:, None, :]) / mean_size, axis=-1)


def cosine_distance_matrix(track_means: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
    """``d_cos(μ_t, e_s) = 1 - μ_t·e_s`` (eq. 7's distance) between track means and detection embeddings.

    Args:
        track_means: ``(T, D)`` unit-norm mean embeddings of the tracks.
        embeddings: ``(S, D)`` unit-norm detection embeddings.
    Returns:
        ``(T, S)`` float64 distances in [0, 2].
    """
    d = 1.0 - np.asarray(track_means, np.float64) @ np.asarray(embeddings, np.float64).T
    return np.clip(d, 0.0, 2.0)


def assign(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hungarian assignment on a cost matrix whose gated pairs are ``+inf``.

    The returned matching has the largest number of finite-cost pairs and, among those, the smallest total
    cost: rows and columns without any finite entry are dropped, the remaining infinite entries are replaced by
    a constant larger than any sum of finite costs (so avoiding one always pays), and pairs that still land on
    that constant are discarded. ``scipy.optimize.linear_sum_assignment`` alone refuses infeasible matrices.

    Args:
        cost: ``(T, S)`` float costs, ``+inf`` for forbidden pairs; no NaN.
    Returns:
        ``(rows, cols)``: two int64 arrays of equal length ``M <= min(T, S)``, matched pairs with finite cost,
        sorted by row.
    Raises:
        ValueError: ``cost`` is not 2-D or holds NaN / ``-inf``.
    """
    cost = np.asarray(cost, dtype=np.float64)
    if cost.ndim != 2:
        raise ValueError(f"cost must be a 2-D (tracks x detections) matrix, got shape {cost.shape}")
    if np.isnan(cost).any() or np.isneginf(cost).any():
        raise ValueError("cost must not contain NaN or -inf (use +inf for gated pairs)")
    empty = np.zeros(0, dtype=np.int64)
    finite = np.isfinite(cost)
    rows_ok = np.flatnonzero(finite.any(1))
    cols_ok = np.flatnonzero(finite.any(0))
    if rows_ok.size == 0 or cols_ok.size == 0:
        return empty, empty
    sub = cost[np.ix_(rows_ok, cols_ok)]                                  # T' x S'
    sub_finite = finite[np.ix_(rows_ok, cols_ok)]
    # a matching has at most min(T', S') pairs: one forbidden pair must cost more than all finite ones together
    big = (np.abs(sub[sub_finite]).max() + 1.0) * (min(sub.shape) + 1)
    r, c = linear_sum_assignment(np.where(sub_finite, sub, big))
    keep = sub_finite[r, c]
    return rows_ok[r[keep]].astype(np.int64), cols_ok[c[keep]].astype(np.int64)


def cascade_assign(cost: np.ndarray, priority: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Matching cascade (DeepSORT): :func:`assign` stage by stage, rows of lower ``priority`` first, each stage on
    the columns the earlier stages left free.

    A row of a later stage never takes a column an earlier row could have had: e.g. a confirmed track matched in
    the previous frame (priority 0) keeps its detection against a fresh tentative track whose single embedding
    happens to be closer.

    Args:
        cost: ``(T, S)`` costs, ``+inf`` for gated pairs (as for :func:`assign`).
        priority: ``(T,)`` int stage of each row.
    Returns:
        ``(rows, cols)`` matched pairs with finite cost, sorted by row.
    """
    cost = np.asarray(cost, dtype=np.float64)
    priority = np.asarray(priority).reshape(-1)
    if cost.ndim != 2 or priority.shape != (cost.shape[0],):
        raise ValueError(f"priority must have shape ({cost.shape[0] if cost.ndim == 2 else '?'},) for a cost matrix "
                         f"of shape {cost.shape}, got {priority.shape}")
    free = np.ones(cost.shape[1], dtype=bool)
    rows, cols = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for level in np.unique(priority):
        stage_rows = np.flatnonzero(priority == level)
        stage_cols = np.flatnonzero(free)
        r, c = assign(cost[np.ix_(stage_rows, stage_cols)])
        rows.append(stage_rows[r])
        cols.append(stage_cols[c])
        free[stage_cols[c]] = False
    rows_all, cols_all = np.concatenate(rows).astype(np.int64), np.concatenate(cols).astype(np.int64)
    order = np.argsort(rows_all, kind="stable")
    return rows_all[order], cols_all[order]
