"""Panoptic quality (Kirillov et al., CVPR 2019) exactly as panopticapi's ``pq_compute``, plus PQ†, PC and mIoU.

Paper §4.2 reports PQ; its supplementary material adds PQ† (Porzi et al.), parsing covering (PC, Yang et al.,
DeeperLab) and mIoU. All four come from one joint histogram per image: the pixel count of every (ground-truth
segment, predicted segment) pair, row / column 0 being void. Per image (:func:`image_stats`, the single
implementation of the matching, used by the file API and the in-memory API alike):

* a ground-truth segment ``g`` and a prediction ``p`` of the same category match when ``g`` is not crowd and
  ``IoU > 0.5`` with ``IoU = |g∩p| / (|g| + |p| - |g∩p| - |p∩void|)`` (the union leaves out the prediction's
  pixels on ground-truth void); ``IoU > 0.5`` makes the matching unique;
* unmatched non-crowd ground truth -> FN; an unmatched prediction -> FP unless more than half of it lies on void
  plus the crowd region of its category (panopticapi keeps one crowd segment per category and image: the last
  one listed in ``segments_info``);
* per category ``PQ = ΣIoU / (TP + FP/2 + FN/2)``, ``SQ = ΣIoU / TP``, ``RQ = TP / (TP + FP/2 + FN/2)``; the means
  over All / Things / Stuff skip categories without any TP, FP or FN.

Beyond panopticapi:

* **mIoU**: semantic confusion of the category maps over pixels whose ground truth is not void (a prediction of
  void on such a pixel counts against the ground-truth class); mean over categories with a non-empty union.
* **PQ†** (Porzi et al., "Seamless Scene Segmentation"): PQ for thing classes, the dataset-level semantic IoU
  (no 0.5 threshold) for stuff classes; mean over the categories defined for each.
* **PC** (DeeperLab; deeplab's ``ParsingCovering``): per category ``Σ_R |R|·max_R' IoU(R, R') / Σ_R |R|`` over
  ground-truth regions ``R`` (crowd regions included) and predictions ``R'`` of the same category, region areas
  divided by the image size (deeplab's default ``normalize_by_image_size``), prediction areas counted off void;
  mean over categories with ground truth.

Conventions: COCO files use ids R + 256G + 256²B with ``segments_info``; in-memory maps follow the Cityscapes
convention of ``docs/ARCHITECTURE.md`` (void 0, stuff = category id, thing = category id × label_divisor + k,
a thing-category pixel < label_divisor in the ground truth is crowd). No Python loop runs over pixels.

This module is the pure, per-image part (categories, segment tables, joint histogram, matching, statistics, and
the in-memory API); COCO panoptic files are evaluated by :mod:`.pq_files` (``pq_compute``, over a thread pool),
tables printed by :mod:`.pq_tables`.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..config import LABEL_DIVISOR, VOID_ID
from ..panoptic_io import MAX_SEGMENT_ID, PanopticFormatError, UnknownCategoryError

__all__ = [
    "IOU_THRESHOLD",
    "Categories",
    "SegmentTable",
    "PQStats",
    "joint_histogram",
    "image_stats",
    "segments_from_map",
    "accumulate_maps",
    "pq_from_maps",
]

#: A ground-truth and a predicted segment match when their IoU is strictly above this (unique matching).
IOU_THRESHOLD = 0.5
#: An unmatched prediction is not a false positive when more than this fraction of it is void + crowd.
VOID_FRACTION = 0.5
#: OpenCV's calcHist counts in float32: exact below 2^24 pixels per bin, so only for images that small.
_CALCHIST_MAX_PIXELS = 1 << 24
#: Lookup-table rows: 0 = id unknown to the segment list, 1 = void, 2.. = segments (so uint8 fits 254 segments).
_UNKNOWN, _VOID, _FIRST = 0, 1, 2


# ----------------------------------------------------------------------------------------------------
# categories and per-image segment tables
@dataclass(frozen=True)
class Categories:
    """The evaluated categories: ``ids`` (C,) dataset category ids, ``isthing`` (C,), ``names`` (C,).

    Statistics are indexed by the position ``c`` in this list (panopticapi iterates categories in JSON order).
    """

    ids: tuple[int, ...]
    isthing: tuple[bool, ...]
    names: tuple[str, ...]

    def __post_init__(self) -> None:
        if not (len(self.ids) == len(self.isthing) == len(self.names)):
            raise PanopticFormatError(f"category ids, isthing and names differ in length: {len(self.ids)}, "
                                      f"{len(self.isthing)}, {len(self.names)}")
        if len(set(self.ids)) != len(self.ids):
            raise PanopticFormatError(f"duplicate category ids: {list(self.ids)}")

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def index(self) -> dict[int, int]:
        """Category id -> position ``c``."""
        return {cid: c for c, cid in enumerate(self.ids)}

    @classmethod
    def from_coco(cls, categories: Sequence[Mapping[str, Any]]) -> "Categories":
        """From a COCO panoptic JSON ``categories`` list (``isthing == 1`` marks thing classes)."""
        try:
            return cls(tuple(int(c["id"]) for c in categories), tuple(c.get("isthing", 0) == 1 for c in categories),
                       tuple(str(c.get("name", c["id"])) for c in categories))
        except (KeyError, TypeError, AttributeError) as exc:
            raise PanopticFormatError(f"bad COCO 'categories' entry (need 'id' and 'isthing'): {exc!r}") from exc

    @classmethod
    def from_class_table(cls, classes: Any) -> "Categories":
        """From a :class:`hle_core.config.ClassTable` (or anything with ``.classes`` of id/name/isthing)."""
        return cls(tuple(c.id for c in classes.classes), tuple(bool(c.isthing) for c in classes.classes),
                   tuple(c.name for c in classes.classes))


@dataclass
class SegmentTable:
    """Segments of one panoptic image, in listing order: ``ids`` (S,) int64 segment ids (> 0), ``category`` (S,)
    int64 positions in :class:`Categories`, ``iscrowd`` (S,) bool, ``area`` (S,) int64 or None (None: count
    the pixels of the map; COCO ground truth carries its JSON ``area``, which panopticapi uses)."""

    ids: np.ndarray
    category: np.ndarray
    iscrowd: np.ndarray
    area: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ids)


# ----------------------------------------------------------------------------------------------------
# accumulated statistics
class PQStats:
    """Per-category sums over images; ``+=`` merges two (e.g. from worker processes).

    Arrays, ``C = len(categories)``: ``tp``, ``fp``, ``fn`` (C,) int64; ``iou`` (C,) float64 ΣIoU of the TPs;
    ``confusion`` (C+1, C+1) int64 semantic pixel confusion, row = ground truth, column = prediction, index 0 =
    void, c + 1 = category c; ``pc_weighted`` / ``pc_area`` (C,) float64 PC numerator / denominator.
    """

    def __init__(self, categories: Categories):
        c = len(categories)
        self.categories = categories
        self.tp = np.zeros(c, np.int64)
        self.fp = np.zeros(c, np.int64)
        self.fn = np.zeros(c, np.int64)
        self.iou = np.zeros(c, np.float64)
        self.confusion = np.zeros((c + 1, c + 1), np.int64)
        self.pc_weighted = np.zeros(c, np.float64)
        self.pc_area = np.zeros(c, np.float64)
        self.images = 0

    _FIELDS = ("tp", "fp", "fn", "iou", "confusion", "pc_weighted", "pc_area", "images")

    def __iadd__(self, other: "PQStats") -> "PQStats":
        if other.categories.ids != self.categories.ids:
            raise ValueError(f"cannot add statistics of categories {list(other.categories.ids)} to "
                             f"{list(self.categories.ids)}")
        for name in self._FIELDS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        return self

    # -- panopticapi's PQStat.pq_average ---------------------------------------------------------------
    def pq_average(self, isthing: bool | None = None) -> tuple[dict[str, Any], dict[int, dict[str, Any]]]:
        """Mean PQ / SQ / RQ over the categories (``isthing`` None: all; True: things; False: stuff) that have
        any TP, FP or FN, and the per-category values. ``n == 0`` gives zeros (panopticapi divides by zero)."""
        keep = self._subset(isthing)
        tp, fp, fn, iou = self.tp, self.fp, self.fn, self.iou
        denom = tp + 0.5 * fp + 0.5 * fn                                   # C
        present = keep & (tp + fp + fn > 0)
        pq = np.divide(iou, denom, out=np.zeros_like(iou), where=present)
        sq = np.divide(iou, tp, out=np.zeros_like(iou), where=present & (tp > 0))
        rq = np.divide(tp, denom, out=np.zeros_like(iou), where=present)
        per_class = {}
        for c in np.flatnonzero(keep):
            per_class[self.categories.ids[c]] = {
                "pq": float(pq[c]), "sq": float(sq[c]), "rq": float(rq[c]),
                "tp": int(tp[c]), "fp": int(fp[c]), "fn": int(fn[c]), "iou": float(iou[c])}
        n = int(present.sum())
        if n == 0:
            return {"pq": 0.0, "sq": 0.0, "rq": 0.0, "n": 0}, per_class
        # summed in category order, like panopticapi, so the means agree to the last bits
        return ({"pq": sum(map(float, pq[present])) / n, "sq": sum(map(float, sq[present])) / n,
                 "rq": sum(map(float, rq[present])) / n, "n": n}, per_class)

    # -- mIoU, PQ†, PC ------------------------------------------------------------------------------------
    def semantic_iou(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-category semantic IoU (C,) over pixels with non-void ground truth, and its validity (union > 0)."""
        conf = self.confusion[1:]                                           # C x (C+1): drop GT-void row
        inter = np.diagonal(conf[:, 1:]).astype(np.float64)                 # C
        union = conf.sum(1) + conf[:, 1:].sum(0) - inter                    # GT pixels + predicted pixels - ∩
        valid = union > 0
        return np.divide(inter, union, out=np.zeros_like(inter), where=valid), valid

    def parsing_covering(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-category covering (C,) and its validity (ground truth present)."""
        valid = self.pc_area > 0
        return np.divide(self.pc_weighted, self.pc_area, out=np.zeros_like(self.pc_area), where=valid), valid

    def _subset(self, isthing: bool | None) -> np.ndarray:
        thing = np.asarray(self.categories.isthing, bool)
        return np.ones_like(thing) if isthing is None else thing == isthing

    def results(self) -> dict[str, Any]:
        """panopticapi's result dict (``All``, ``Things``, ``Stuff`` -> pq/sq/rq/n; ``per_class`` keyed by category
        id -> pq/sq/rq, here with tp/fp/fn/iou and the extras too) plus ``pq_dagger``, ``pc`` and ``miou``."""
        out: dict[str, Any] = {}
        for name, isthing in (("All", None), ("Things", True), ("Stuff", False)):
            out[name], per_class = self.pq_average(isthing)
            if isthing is None:
                out["per_class"] = per_class
        sem, sem_valid = self.semantic_iou()
        cov, cov_valid = self.parsing_covering()
        thing = np.asarray(self.categories.isthing, bool)
        pq_present = self.tp + self.fp + self.fn > 0
        pq_c = np.array([out["per_class"][cid]["pq"] for cid in self.categories.ids])
        dagger = np.where(thing, pq_c, sem)                                 # PQ† per category
        dagger_valid = np.where(thing, pq_present, sem_valid)
        out["pq_dagger"], out["pc"] = {}, {}
        for name, isthing in (("All", None), ("Things", True), ("Stuff", False)):
            keep = self._subset(isthing)
            out["pq_dagger"][name] = _masked_mean(dagger, dagger_valid & keep, "pq_dagger")
            out["pc"][name] = _masked_mean(cov, cov_valid & keep, "pc")
        out["miou"] = _masked_mean(sem, sem_valid, "miou")
        for c, cid in enumerate(self.categories.ids):
            out["per_class"][cid].update({
                "semantic_iou": float(sem[c]) if sem_valid[c] else None,
                "pq_dagger": float(dagger[c]) if dagger_valid[c] else None,
                "pc": float(cov[c]) if cov_valid[c] else None})
        out["images"] = int(self.images)
        return out


def _masked_mean(values: np.ndarray, mask: np.ndarray, key: str) -> dict[str, Any]:
    n = int(mask.sum())
    return {key: float(values[mask].mean()) if n else 0.0, "n": n}


# ----------------------------------------------------------------------------------------------------
# joint histogram
class _Scratch(threading.local):
    """Per-thread reusable arrays: id -> histogram-row tables over all 2^24 COCO ids (zero pages until written,
    reset after use; ``MAX_SEGMENT_ID`` entries) and image-sized buffers (fresh multi-MB arrays per image cost
    page faults)."""

    def __init__(self) -> None:
        self.arrays: dict[tuple, np.ndarray] = {}

    def lut(self, role: str, dtype: str) -> np.ndarray:
        key = ("lut", role, dtype)
        if key not in self.arrays:
            self.arrays[key] = np.zeros(MAX_SEGMENT_ID, dtype)             # calloc: lazily zeroed pages
        return self.arrays[key]

    def buffer(self, role: str, shape: tuple[int, ...], dtype: str) -> np.ndarray:
        key = ("buffer", role, dtype)
        buf = self.arrays.get(key)
        if buf is None or buf.shape != shape:
            buf = self.arrays[key] = np.empty(shape, dtype)
        return buf


_SCRATCH = _Scratch()


def _rows(ids: np.ndarray, segment_ids: np.ndarray, role: str, dtype: str) -> np.ndarray:
    """(H, W) ids -> (H, W) histogram rows: ``_VOID`` for 0, ``_FIRST + s`` for ``segment_ids[s]``, ``_UNKNOWN``
    for anything else, by one gather from a 2^24-entry lookup table (ids must lie in [0, 2^24))."""
    lut = _SCRATCH.lut(role, dtype)
    lut[segment_ids] = np.arange(_FIRST, _FIRST + len(segment_ids), dtype=dtype)
    lut[VOID_ID] = _VOID
    try:   # mode="clip": unbuffered into ``out`` (ids are in range, checked by the callers)
        return np.take(lut, ids, out=_SCRATCH.buffer(role, ids.shape, dtype), mode="clip")
    finally:
        lut[segment_ids] = _UNKNOWN
        lut[VOID_ID] = _UNKNOWN


def joint_histogram(gt_ids: np.ndarray, pred_ids: np.ndarray, gt_segment_ids: np.ndarray,
                    pred_segment_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel counts of all (ground-truth segment, predicted segment) pairs of one image.

    Args:
        gt_ids, pred_ids: (H, W) integer segment-id maps in ``[0, 2^24)``, 0 = void.
        gt_segment_ids: (G,) distinct ids > 0 listed for the ground truth; pred_segment_ids: (P,) likewise.
    Returns:
        ``inter`` (G+1, P+1) int64: ``inter[1+g, 1+p]`` = pixels of segment g and prediction p, row 0 = GT
        void, column 0 = predicted void; ``gt_unknown`` / ``pred_unknown``: sorted ids present in the map but
        not in the list (empty when consistent).
    """
    for name, ids in (("gt_ids", gt_ids), ("pred_ids", pred_ids)):
        ids = np.asarray(ids)
        if ids.ndim != 2 or ids.dtype.kind not in "iu":
            raise TypeError(f"{name} must be an (H, W) integer map, got shape {ids.shape} dtype {ids.dtype}")
        if ids.size and (ids.min() < 0 or ids.max() >= MAX_SEGMENT_ID):
            raise ValueError(f"{name} must lie in [0, 2^24), got range [{ids.min()}, {ids.max()}]")
    if np.shape(gt_ids) != np.shape(pred_ids):
        raise ValueError(f"gt_ids and pred_ids differ in shape: {np.shape(gt_ids)} vs {np.shape(pred_ids)}")
    for name, seg in (("gt_segment_ids", gt_segment_ids), ("pred_segment_ids", pred_segment_ids)):
        seg = np.asarray(seg)
        if len(np.unique(seg)) != len(seg) or (len(seg) and (seg.min() <= VOID_ID or seg.max() >= MAX_SEGMENT_ID)):
            raise ValueError(f"{name} must be distinct ids in [1, 2^24), got {seg.tolist()}")
    return _joint_histogram(np.asarray(gt_ids), np.asarray(pred_ids), np.asarray(gt_segment_ids, np.int64),
                            np.asarray(pred_segment_ids, np.int64))


def _joint_histogram(gt_ids: np.ndarray, pred_ids: np.ndarray, gt_segment_ids: np.ndarray,
                     pred_segment_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`joint_histogram` without input checks (callers guarantee ids in [0, 2^24), equal shapes)."""
    g_n, p_n = len(gt_segment_ids), len(pred_segment_ids)
    small = max(g_n, p_n) + _FIRST <= 256
    dtype = "uint8" if small else ("uint16" if max(g_n, p_n) + _FIRST <= 1 << 16 else "int32")
    g_rows = _rows(gt_ids, gt_segment_ids, "gt", dtype)                   # H x W
    p_rows = _rows(pred_ids, pred_segment_ids, "pred", dtype)             # H x W
    shape = (g_n + _FIRST, p_n + _FIRST)
    if small and g_rows.size < _CALCHIST_MAX_PIXELS:
        import cv2
        hist = cv2.calcHist([np.ascontiguousarray(g_rows), np.ascontiguousarray(p_rows)], [0, 1], None,
                            list(shape), [0, shape[0], 0, shape[1]]).astype(np.int64)
    else:
        key = g_rows.astype(np.intp) * shape[1] + p_rows                  # H x W pair index
        hist = np.bincount(key.ravel(), minlength=shape[0] * shape[1]).reshape(shape)
    gt_unknown = pred_unknown = np.zeros(0, np.int64)
    if hist[_UNKNOWN].any():                                              # error path only
        gt_unknown = np.unique(gt_ids[g_rows == _UNKNOWN]).astype(np.int64)
    if hist[:, _UNKNOWN].any():
        pred_unknown = np.unique(pred_ids[p_rows == _UNKNOWN]).astype(np.int64)
    return hist[_VOID:, _VOID:], gt_unknown, pred_unknown


# ----------------------------------------------------------------------------------------------------
# the matching: one image's statistics from its joint histogram
def image_stats(inter: np.ndarray, gt: SegmentTable, pred: SegmentTable, categories: Categories,
                stats: PQStats | None = None) -> PQStats:
    """Add one image's PQ / mIoU / PC statistics to ``stats`` (a new :class:`PQStats` when None).

    Args:
        inter: (G+1, P+1) int64 joint histogram from :func:`joint_histogram` (row / column 0 = void).
        gt: G ground-truth segments in listing order (``gt.area`` None: row sums of ``inter``).
        pred: P predicted segments; their areas are always the column sums (panopticapi counts the PNG).
    """
    stats = PQStats(categories) if stats is None else stats
    n_cat = len(categories)
    g_cat, p_cat, crowd = gt.category, pred.category, gt.iscrowd.astype(bool)
    overlap = inter[1:, 1:]                                               # G x P
    pred_void = inter[0, 1:]                                              # P: prediction pixels on GT void
    pred_area = inter[:, 1:].sum(0)                                       # P
    gt_png_area = inter[1:, :].sum(1)                                     # G
    gt_area = gt_png_area if gt.area is None else gt.area

    # PQ: IoU > 0.5 within a category, crowd excluded; union without the prediction's void pixels
    union = gt_area[:, None] + pred_area[None, :] - overlap - pred_void[None, :]       # G x P
    candidate = (g_cat[:, None] == p_cat[None, :]) & ~crowd[:, None] & (overlap > 0)
    iou = np.divide(overlap, union, out=np.zeros(overlap.shape), where=candidate)     # G x P
    g_tp, p_tp = np.nonzero(candidate & (iou > IOU_THRESHOLD))
    stats.tp += np.bincount(g_cat[g_tp], minlength=n_cat)
    stats.iou += np.bincount(g_cat[g_tp], weights=iou[g_tp, p_tp], minlength=n_cat)
    gt_unmatched = np.ones(len(gt), bool)
    gt_unmatched[g_tp] = False
    stats.fn += np.bincount(g_cat[gt_unmatched & ~crowd], minlength=n_cat)

    # FP unless > half of the prediction lies on void + the (last listed) crowd region of its category
    crowd_row = np.full(n_cat, -1)
    for g in np.flatnonzero(crowd):                                       # few crowd segments; last one wins
        crowd_row[g_cat[g]] = g
    ignored = pred_void.astype(np.int64)                                  # P
    p_crowd = crowd_row[p_cat]                                            # P
    has = np.flatnonzero(p_crowd >= 0)
    ignored[has] += overlap[p_crowd[has], has]
    pred_unmatched = np.ones(len(pred), bool)
    pred_unmatched[p_tp] = False
    is_fp = pred_unmatched & ~(ignored / np.maximum(pred_area, 1) > VOID_FRACTION)
    stats.fp += np.bincount(p_cat[is_fp], minlength=n_cat)

    # semantic confusion (mIoU, PQ† stuff): category c -> index c + 1, void -> 0
    g_sem = np.concatenate([[0], g_cat + 1])                              # G+1
    p_sem = np.concatenate([[0], p_cat + 1])                              # P+1
    pair = (g_sem[:, None] * (n_cat + 1) + p_sem[None, :]).ravel()
    stats.confusion += np.bincount(pair, weights=inter.ravel(), minlength=(n_cat + 1) ** 2).astype(
        np.int64).reshape(n_cat + 1, n_cat + 1)

    # parsing covering: best same-category IoU per GT region (crowd too), prediction area off void
    if len(gt):
        size = float(inter.sum())
        pc_union = gt_png_area[:, None] + (pred_area - pred_void)[None, :] - overlap     # G x P
        same = (g_cat[:, None] == p_cat[None, :]) & (overlap > 0)
        best = np.divide(overlap, pc_union, out=np.zeros(overlap.shape), where=same).max(1, initial=0.0)
        stats.pc_weighted += np.bincount(g_cat, weights=gt_png_area * best / size, minlength=n_cat)
        stats.pc_area += np.bincount(g_cat, weights=gt_png_area / size, minlength=n_cat)
    stats.images += 1
    return stats


# ----------------------------------------------------------------------------------------------------
# in-memory panoptic maps (Cityscapes convention)
def _as_map(x: Any, name: str) -> np.ndarray:
    if hasattr(x, "detach"):                                              # torch tensor, without importing torch
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer panoptic map, got dtype {a.dtype}")
    if a.ndim != 2:
        raise ValueError(f"{name} must be an (H, W) panoptic map, got shape {a.shape}")
    if a.size and (a.min() < 0 or a.max() >= MAX_SEGMENT_ID):
        raise ValueError(f"{name} ids must lie in [0, 2^24), got range [{a.min()}, {a.max()}]")
    return a


def segments_from_map(panoptic: Any, categories: Categories, *, label_divisor: int = LABEL_DIVISOR,
                      is_ground_truth: bool = True, name: str = "panoptic") -> SegmentTable:
    """Segments of an (H, W) Cityscapes-convention map: id < label_divisor -> category id (a crowd region when
    the category is a thing and ``is_ground_truth``), otherwise category = id // label_divisor.

    Raises:
        UnknownCategoryError: an id's category is not in ``categories``.
    """
    a = _as_map(panoptic, name)
    ids = np.unique(a)
    ids = ids[ids != VOID_ID].astype(np.int64)                            # S
    cat_ids = np.where(ids < label_divisor, ids, ids // label_divisor)    # S
    lut = categories.index
    unknown = sorted({int(c) for c in cat_ids} - set(lut))
    if unknown:
        raise UnknownCategoryError(f"{name} holds ids of categories {unknown} that are not evaluated "
                                   f"(categories {list(categories.ids)}, label_divisor {label_divisor})")
    cat = np.array([lut[int(c)] for c in cat_ids], np.int64)
    thing = np.asarray(categories.isthing, bool)
    crowd = (ids < label_divisor) & thing[cat] if is_ground_truth else np.zeros(len(ids), bool)
    return SegmentTable(ids, cat, crowd)


def accumulate_maps(stats: PQStats, gt: Any, pred: Any, *, label_divisor: int = LABEL_DIVISOR) -> PQStats:
    """Add one pair of (H, W) Cityscapes-convention panoptic maps (NumPy or CPU torch) to ``stats``."""
    gt_map, pred_map = _as_map(gt, "gt"), _as_map(pred, "pred")
    if gt_map.shape != pred_map.shape:
        raise ValueError(f"gt and pred maps differ in shape: {gt_map.shape} vs {pred_map.shape}")
    cats = stats.categories
    g = segments_from_map(gt_map, cats, label_divisor=label_divisor, is_ground_truth=True, name="gt")
    p = segments_from_map(pred_map, cats, label_divisor=label_divisor, is_ground_truth=False, name="pred")
    inter, _, _ = _joint_histogram(gt_map, pred_map, g.ids, p.ids)       # consistent by construction
    return image_stats(inter, g, p, cats, stats)


def pq_from_maps(gt_maps: Iterable[Any], pred_maps: Iterable[Any], categories: Categories | Any, *,
                 label_divisor: int = LABEL_DIVISOR, stats: PQStats | None = None) -> PQStats:
    """Accumulate PQ (and mIoU / PQ† / PC) statistics over pairs of in-memory panoptic maps.

    Args:
        gt_maps, pred_maps: equally long iterables of (H, W) integer maps, Cityscapes convention.
        categories: :class:`Categories` or a :class:`hle_core.config.ClassTable`.
        stats: statistics to add to (e.g. across validation batches); a new one when None.
    Returns:
        The :class:`PQStats`; ``.results()`` gives the panopticapi-shaped dict.
    """
    if not isinstance(categories, Categories):
        categories = Categories.from_class_table(categories)
    stats = PQStats(categories) if stats is None else stats
    gts, preds = list(gt_maps), list(pred_maps)
    if len(gts) != len(preds):
        raise ValueError(f"got {len(gts)} ground-truth maps but {len(preds)} predicted maps")
    for gt, pred in zip(gts, preds):
        accumulate_maps(stats, gt, pred, label_divisor=label_divisor)
    return stats
