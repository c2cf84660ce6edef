"""Sequence figures of bag evaluation that :mod:`hle_core.evaluation` does not already provide.

* :class:`EmbeddingStability` — how stable a ground-truth object's predicted mean embedding (the tracker's
  association cue, paper §4.5) is from one frame to the next, against how far the nearest *other* object is.
* :func:`latency_percentiles` — p50 / p90 / p99 / max of one series of latencies (also the node's ``/diagnostics``);
  :func:`stage_latency_percentiles` — the same plus mean and count, per pipeline stage.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..config import LABEL_DIVISOR

__all__ = ["EmbeddingStability", "match_segments_to_objects", "PERCENTILES", "latency_percentiles",
           "stage_latency_percentiles"]

#: Latency percentiles reported.
PERCENTILES = (50, 90, 99)


def match_segments_to_objects(gt: np.ndarray, pred: np.ndarray, segment_ids: np.ndarray, *,
                              iou_threshold: float = 0.5, label_divisor: int = LABEL_DIVISOR) -> dict[int, int]:
    """Ground-truth object id → row of the predicted segment covering it with IoU > ``iou_threshold``.

    Args:
        gt: ``(H, W)`` int ground-truth panoptic map; objects are thing ids ``>= label_divisor`` (crowd, stuff
            and void are not objects).
        pred: ``(H, W)`` int predicted panoptic map whose non-void values are listed in ``segment_ids``.
        segment_ids: ``(S,)`` the predicted segment ids (row order of the FrameResult arrays).
        iou_threshold: in [0.5, 1): above 0.5 the matching is unique, so no assignment step is needed.
    Returns:
        ``{gt object id: segment row}``; the category is not required to agree (the figure is about objects).
    """
    if not 0.5 <= iou_threshold < 1.0:
        raise ValueError(f"iou_threshold must lie in [0.5, 1) for a unique matching, got {iou_threshold}")
    if gt.shape != pred.shape:
        raise ValueError(f"ground truth and prediction shapes differ: {gt.shape} vs {pred.shape}")
    g = gt.reshape(-1).astype(np.int64)
    p = pred.reshape(-1).astype(np.int64)
    g_ids, g_inv, g_area = np.unique(g, return_inverse=True, return_counts=True)
    p_ids, p_inv, p_area = np.unique(p, return_inverse=True, return_counts=True)
    pair, inter = np.unique(g_inv * p_ids.size + p_inv, return_counts=True)    # every (gt, pred) overlap
    gi, pi = pair // p_ids.size, pair % p_ids.size
    iou = inter / (g_area[gi] + p_area[pi] - inter)
    ok = (g_ids[gi] >= label_divisor) & (p_ids[pi] != 0) & (iou > iou_threshold)
    row = {int(s): i for i, s in enumerate(np.asarray(segment_ids).tolist())}
    return {int(g_ids[a]): row[int(p_ids[b])] for a, b in zip(gi[ok], pi[ok]) if int(p_ids[b]) in row}


class EmbeddingStability:
    """Mean cosine distance of one object's predicted mean embedding between consecutive frames, vs. the nearest
    other object.

    Per frame, each ground-truth object is matched to a predicted segment (:func:`match_segments_to_objects`);
    its embedding ``e_t(g)`` is that segment's unit mean embedding. For every object matched in two consecutive
    frames: ``d_same = 1 - cos(e_t(g), e_{t-1}(g))`` and ``d_other = min_{h != g} 1 - cos(e_t(g), e_{t-1}(h))``
    over the other objects matched in frame t-1 (any class) — what an embedding tracker must tell apart.
    :meth:`gap` breaks the chain (a new sequence, or a frame that was not scored).
    """

    def __init__(self, iou_threshold: float = 0.5, label_divisor: int = LABEL_DIVISOR) -> None:
        self.iou_threshold, self.label_divisor = iou_threshold, label_divisor
        self._prev: dict[int, np.ndarray] | None = None
        self.same: list[float] = []
        self.other: list[float] = []            # nearest other, for the pairs that have one
        self.same_with_other: list[float] = []  # d_same of those pairs
        self.objects: set[int] = set()

    def gap(self) -> None:
        self._prev = None

    def update(self, gt: np.ndarray, pred: np.ndarray, segment_ids: np.ndarray, embeddings: np.ndarray,
               sequence: Any = 0) -> None:
        """Add one scored frame. ``embeddings``: ``(S, D)`` unit rows in the order of ``segment_ids``."""
        match = match_segments_to_objects(gt, pred, segment_ids, iou_threshold=self.iou_threshold,
                                          label_divisor=self.label_divisor)
        s = len(segment_ids)
        emb = np.asarray(embeddings, np.float64)
        emb = emb.reshape(s, -1) if s else emb.reshape(0, 0)                          # S x D (no segment: empty)
        current = {(sequence, g): emb[r] / max(np.linalg.norm(emb[r]), 1e-12) for g, r in match.items()}
        self.objects.update(current)
        prev = self._prev
        if prev:
            keys = list(prev)
            bank = np.stack([prev[k] for k in keys])                                  # P x D
            for key, e in current.items():
                if key not in prev:
                    continue
                d = 1.0 - bank @ e                                                    # P cosine distances
                mine = keys.index(key)
                self.same.append(float(d[mine]))
                if len(keys) > 1:
                    self.other.append(float(np.delete(d, mine).min()))
                    self.same_with_other.append(float(d[mine]))
        self._prev = current

    def result(self) -> dict[str, Any]:
        same, other, paired = (np.asarray(v) for v in (self.same, self.other, self.same_with_other))
        return {
            "pairs": int(same.size),
            "objects": len(self.objects),
            "mean_same_object_distance": float(same.mean()) if same.size else None,
            "mean_nearest_other_distance": float(other.mean()) if other.size else None,
            "pairs_with_other_object": int(other.size),
            # share of pairs whose own previous embedding is nearer than every other object's
            "closer_to_self_fraction": float(np.mean(paired < other)) if other.size else None,
            "iou_threshold": self.iou_threshold,
        }


def latency_percentiles(values: Iterable[float], percentiles: Iterable[int] = PERCENTILES) -> dict[str, float]:
    """``{"p50": ..., "p90": ..., "p99": ..., "max": ...}`` of ``values`` (ms; NumPy's linear interpolation between
    ranks); NaN for an empty series."""
    v = np.asarray(list(values), np.float64)
    qs = list(percentiles)
    if v.size == 0:
        return {**{f"p{q}": float("nan") for q in qs}, "max": float("nan")}
    out = {f"p{q}": float(x) for q, x in zip(qs, np.percentile(v, qs))}
    out["max"] = float(v.max())
    return out


def stage_latency_percentiles(timings: Sequence[Mapping[str, float]], percentiles: Sequence[int] = PERCENTILES
                              ) -> dict[str, dict[str, float]]:
    """``{stage: {"p50", "p90", "p99", "max", "mean", "n"}}`` in ms over per-frame ``timings_ms`` dicts: the
    :func:`latency_percentiles` of each stage seen in at least one frame, plus its mean and frame count."""
    stages: dict[str, list[float]] = {}
    for t in timings:
        for stage, ms in t.items():
            stages.setdefault(stage, []).append(float(ms))
    out = {}
    for stage, values in stages.items():
        v = np.asarray(values, np.float64)
        out[stage] = {**latency_percentiles(v, percentiles), "mean": float(v.mean()), "n": int(v.size)}
    return out
