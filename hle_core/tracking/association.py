"""Pairwise costs and gated assignment for tracking by mean embeddings (paper §4.5).

§4.5 observes that HLE's low-dimensional embeddings are temporally stable and proposes them "as a feature for
cross-frame data association". This module holds the pure, vectorised pieces of that association: the
track × detection matrices of box IoU and cosine distance, the gated cost, and a Hungarian assignment that
copes with gated (infinite-cost) pairs. :mod:`hle_core.tracking.tracker` keeps the state.

All functions take NumPy arrays (the tracker is CPU bookkeeping on a few dozen segments per frame) and are
free of Python loops over pairs.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = [
    "box_iou_matrix",
    "cosine_distance_matrix",
    "assign",
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
