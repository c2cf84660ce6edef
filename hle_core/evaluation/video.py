"""Video panoptic metrics for the tracking of §4.5: STQ, VPQ and CLEAR-MOT identity switches.

* **STQ** (Weber et al., "STEP: Segmenting and Tracking Every Pixel"; definition as in deeplab2's
  ``segmentation_and_tracking_quality``): ``STQ = sqrt(AQ × SQ)``, accumulated per sequence over all frames.
  ``SQ`` is the mean IoU of the semantic classes. ``AQ = 1/|G| Σ_g 1/|g| Σ_p TPA(p, g) · IoU(p, g)`` over
  ground-truth tubes ``g`` of thing classes (crowd left out) and predicted tubes ``p``, where ``TPA`` is the
  number of pixels the two tubes share over the whole sequence and the IoU is the tubes' sequence-level IoU;
  no IoU threshold.
* **VPQ** (Kim et al., "Video Panoptic Segmentation", VPSNet's ``eval_vpq.py``): panoptic quality of tubes
  over windows of ``k`` consecutive (annotated) frames, the frames of a window concatenated into one image; the
  windows slide by one frame; per window size the per-category statistics are summed over all windows of all
  sequences, PQ is averaged over categories, and VPQ is the mean of that PQ over the window sizes (1–4 frames;
  on Cityscapes-VPS the annotated frames are 5 raw frames apart, so windows span 0, 5, 10, 15 raw frames).
* **ID switches** (CLEAR MOT, Bernardin & Stiefelhagen): per frame, predicted segments are matched to
  ground-truth instances of the same category with mask IoU > 0.5; a switch is counted whenever a
  ground-truth track is matched to a predicted track id other than the one it was last matched to.

Maps follow the Cityscapes convention of ``docs/ARCHITECTURE.md``: void = 0, stuff = category id, thing =
category id × ``label_divisor`` + k. In ground truth a thing-category pixel with id < ``label_divisor`` is a
crowd region. In predictions, k is the *track id* (see :func:`relabel_with_tracks`); a thing pixel with id <
``label_divisor`` is a segment without a track. Inputs may be NumPy arrays or torch tensors; all counting is
vectorised (``np.unique`` / ``np.bincount``), Python loops run over frames, windows or matched segments only.
"""
from __future__ import annotations

from collections import deque
from typing import Any, Sequence

import numpy as np

from hle_core.config import LABEL_DIVISOR, VOID_ID, ClassTable

from .pq import Categories, PQStats, SegmentTable, image_stats

__all__ = [
    "relabel_with_tracks",
    "STQAccumulator",
    "VPQAccumulator",
    "video_panoptic_quality",
    "count_id_switches",
]


# ----------------------------------------------------------------------------------------------------
# helpers
def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _as_panoptic(x: Any, name: str, label_divisor: int) -> np.ndarray:
    """int64 panoptic map; raises on floats, negatives and ids beyond ``label_divisor²``."""
    a = _to_numpy(x)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer panoptic map, got dtype {a.dtype}")
    a = a.astype(np.int64)
    if a.size and (a.min() < 0 or a.max() >= label_divisor * label_divisor):
        raise ValueError(f"{name} ids must lie in [0, {label_divisor}²), got range [{a.min()}, {a.max()}]")
    return a


def _category(ids: np.ndarray, label_divisor: int) -> np.ndarray:
    """Category id of panoptic ids (Cityscapes convention: ids below the divisor are category ids)."""
    return np.where(ids >= label_divisor, ids // label_divisor, ids)


class _Categories:
    """Category id ↔ contiguous index lookup; index ``K`` stands for void."""

    def __init__(self, category_ids: Sequence[int], is_thing: Sequence[bool], label_divisor: int, void_id: int):
        ids = np.asarray(_to_numpy(category_ids), dtype=np.int64).reshape(-1)
        thing = np.asarray(_to_numpy(is_thing), dtype=bool).reshape(-1)
        if ids.size == 0 or ids.shape != thing.shape:
            raise ValueError(f"category_ids and is_thing must be non-empty and of equal length, got "
                             f"{ids.shape} and {thing.shape}")
        if len(set(ids.tolist())) != ids.size or ids.min() < 0 or ids.max() >= label_divisor or void_id in ids:
            raise ValueError(f"category ids must be unique, in [0, {label_divisor}) and differ from void "
                             f"{void_id}; got {ids.tolist()}")
        self.ids, self.is_thing, self.divisor, self.void = ids, thing, int(label_divisor), int(void_id)
        self.k = ids.size
        self._lut = np.full(label_divisor, -1, dtype=np.int64)
        self._lut[ids] = np.arange(self.k)
        self._lut[void_id] = self.k

    def index(self, panoptic_ids: np.ndarray, name: str) -> np.ndarray:
        """Contiguous index (``K`` for void) of each panoptic id; unknown categories raise ``ValueError``."""
        idx = self._lut[_category(panoptic_ids, self.divisor)]
        if np.any(idx < 0):
            bad = np.unique(_category(panoptic_ids[idx < 0], self.divisor))
            raise ValueError(f"{name} holds category ids {bad.tolist()} that are not in {self.ids.tolist()}")
        return idx


def _check_pair(gt: np.ndarray, pred: np.ndarray) -> None:
    if gt.shape != pred.shape:
        raise ValueError(f"ground truth and prediction shapes differ: {gt.shape} vs {pred.shape}")


# ----------------------------------------------------------------------------------------------------
def relabel_with_tracks(panoptic: Any, segment_ids: Any, track_ids: Any, category_ids: Any = None, *,
                        label_divisor: int = LABEL_DIVISOR) -> np.ndarray:
    """Replace the per-frame instance part of a predicted panoptic map by track ids.

    Segment ``j`` (pixels equal to ``segment_ids[j]``) becomes ``category × label_divisor + track_ids[j]`` when
    ``track_ids[j] >= 0`` and the bare ``category`` (stuff, or a thing without a confirmed track) when it is
    ``-1``. Pixels whose value is not listed and is below ``label_divisor`` (void, stuff, crowd-like) are kept.

    Args:
        panoptic: ``(H, W)`` int predicted panoptic map.
        segment_ids: ``(S,)`` the segment ids used in ``panoptic``.
        track_ids: ``(S,)`` int track id per segment, ``-1`` for none (as :class:`EmbeddingTracker` returns).
        category_ids: optional ``(S,)`` category per segment; default: derived from ``segment_ids`` in the
            Cityscapes convention.
        label_divisor: ``category × label_divisor + track``; track ids must stay below it.
    Returns:
        ``(H, W)`` int64 map for :class:`STQAccumulator` / :class:`VPQAccumulator` / :func:`count_id_switches`.
    Raises:
        ValueError: mismatched lengths, duplicate segment ids, a track id outside ``[-1, label_divisor)``, or a
            thing id (``>= label_divisor``) in ``panoptic`` missing from ``segment_ids``.
    """
    pan = _to_numpy(panoptic)
    if pan.dtype.kind not in "iu":
        raise TypeError(f"panoptic must be an integer map, got dtype {pan.dtype}")
    pan = pan.astype(np.int64)
    seg = _to_numpy(segment_ids).astype(np.int64).reshape(-1)
    trk = _to_numpy(track_ids).astype(np.int64).reshape(-1)
    cat = _category(seg, label_divisor) if category_ids is None else \
        _to_numpy(category_ids).astype(np.int64).reshape(-1)
    if not seg.shape == trk.shape == cat.shape:
        raise ValueError(f"segment_ids, track_ids and category_ids must have equal lengths, got "
                         f"{seg.shape}, {trk.shape}, {cat.shape}")
    if np.unique(seg).size != seg.size:
        raise ValueError(f"segment_ids must be unique, got {seg.tolist()}")
    if trk.size and (trk.min() < -1 or trk.max() >= label_divisor):
        raise ValueError(f"track ids must lie in [-1, {label_divisor}) to fit the panoptic encoding, got range "
                         f"[{trk.min()}, {trk.max()}]; pass a larger label_divisor to every metric")
    new = np.where(trk >= 0, cat * label_divisor + trk, cat)               # S

    values, inverse = np.unique(pan, return_inverse=True)
    order = np.argsort(seg)
    pos = np.clip(np.searchsorted(seg, values, sorter=order), 0, max(seg.size - 1, 0))
    listed = (seg[order[pos]] == values) if seg.size else np.zeros(values.shape, bool)
    unlisted_things = values[~listed & (values >= label_divisor)]
    if unlisted_things.size:
        raise ValueError(f"panoptic holds thing ids {unlisted_things.tolist()} that are not in segment_ids")
    mapped = np.where(listed, new[order[pos]] if seg.size else values, values)
    return mapped[inverse].reshape(pan.shape)


# ----------------------------------------------------------------------------------------------------
class STQAccumulator:
    """Segmentation and Tracking Quality (STEP), accumulated frame by frame per sequence.

    Semantics follow deeplab2's reference implementation:
      * SQ: confusion matrix of categories over all frames; ground-truth void pixels are ignored; a prediction
        of void on a labelled pixel is a miss (FN) of the true category; SQ = mean IoU over the categories whose
        union is non-empty. (deeplab2, with an ignore label beyond the class range, would also count the void
        *column* as one more class of IoU 0 whenever void is predicted on labelled pixels; the STEP definition
        is the mean over dataset classes, which is what is computed here.)
      * AQ: ground-truth tubes are the thing ids ``>= label_divisor`` (crowd — a thing category with id below
        the divisor — is left out, and predictions on crowd pixels are not counted); predicted tubes are all
        predicted thing-category ids, an untracked thing prediction (id below the divisor) being one tube of
        its category; predicted thing pixels on ground-truth void or stuff count in the tube size (false
        positive association). AQ of a sequence = Σ_g 1/|g| Σ_p TPA²/(|p| + |g| - TPA) / #tubes; the overall AQ
        sums over sequences and divides by the total number of ground-truth tubes (0 when there is none).
      * STQ = sqrt(AQ × SQ), overall and per sequence.
    """

    def __init__(self, category_ids: Sequence[int], is_thing: Sequence[bool], *,
                 label_divisor: int = LABEL_DIVISOR, void_id: int = VOID_ID) -> None:
        """
        Args:
            category_ids: ``(K,)`` evaluated category ids (``ClassTable.ids``).
            is_thing: ``(K,)`` bool, True for thing categories (``ClassTable.thing_mask``).
            label_divisor: Cityscapes encoding divisor.
            void_id: panoptic id of void / unlabelled pixels.
        """
        self._cats = _Categories(category_ids, is_thing, label_divisor, void_id)
        self.reset()

    @classmethod
    def from_class_table(cls, table: ClassTable, **kwargs: Any) -> "STQAccumulator":
        return cls(table.ids, table.thing_mask, **kwargs)

    def reset(self) -> None:
        self._seq: dict[Any, dict[str, Any]] = {}

    def update(self, gt: Any, pred: Any, sequence_id: Any = 0) -> None:
        """Add one frame of sequence ``sequence_id``.

        Args:
            gt: ``(H, W)`` int ground-truth panoptic map (instance part = ground-truth track id).
            pred: ``(H, W)`` int predicted panoptic map (instance part = predicted track id).
            sequence_id: hashable sequence key; frames of one key form one sequence.
        """
        c = self._cats
        gt = _as_panoptic(gt, "gt", c.divisor).reshape(-1)
        pred = _as_panoptic(pred, "pred", c.divisor).reshape(-1)
        _check_pair(gt, pred)
        st = self._seq.setdefault(sequence_id, {
            "confusion": np.zeros((c.k + 1, c.k + 1), np.int64), "length": 0,
            "gt": (np.zeros(0, np.int64), np.zeros(0, np.int64)),
            "pred": (np.zeros(0, np.int64), np.zeros(0, np.int64)),
            "inter": (np.zeros(0, np.int64), np.zeros(0, np.int64)),
        })
        gi, pi = c.index(gt, "gt"), c.index(pred, "pred")                  # N, contiguous (K = void)
        st["confusion"] += np.bincount(gi * (c.k + 1) + pi, minlength=(c.k + 1) ** 2).reshape(c.k + 1, c.k + 1)
        st["length"] += 1

        thing = np.append(c.is_thing, False)                               # K+1, void is no thing
        crowd = thing[gi] & (gt < c.divisor)
        gt_mask = thing[gi] & ~crowd                                       # pixels of ground-truth tubes
        pred_mask = thing[pi] & ~crowd                                     # pixels of predicted tubes
        both = gt_mask & pred_mask
        offset = c.divisor * c.divisor
        st["gt"] = _merge_counts(st["gt"], gt[gt_mask])
        st["pred"] = _merge_counts(st["pred"], pred[pred_mask])
        st["inter"] = _merge_counts(st["inter"], gt[both] * offset + pred[both])

    def result(self) -> dict[str, Any]:
        """``{"STQ", "AQ", "SQ", "IoU_per_class": {category id: IoU}, "per_sequence": {id: {"STQ", "AQ", "SQ",
        "length", "num_tubes"}}}``; SQ is NaN when no category has pixels."""
        if not self._seq:
            raise ValueError("STQAccumulator.result() called before any update()")
        c = self._cats
        offset = c.divisor * c.divisor
        per_seq = {}
        aq_sum, tubes = 0.0, 0
        total = np.zeros((c.k + 1, c.k + 1), np.int64)
        for key, st in self._seq.items():
            (g_ids, g_area), (p_ids, p_area), (pair, tpa) = st["gt"], st["pred"], st["inter"]
            g_sz = g_area[np.searchsorted(g_ids, pair // offset)].astype(np.float64)
            p_sz = p_area[np.searchsorted(p_ids, pair % offset)].astype(np.float64)
            tpa = tpa.astype(np.float64)
            # Σ_g 1/|g| Σ_p TPA(p,g) · IoU(p,g), IoU over the whole sequence
            seq_sum = float(np.sum(tpa * tpa / (g_sz + p_sz - tpa) / g_sz))
            n = int(g_ids.size)
            iou = _class_iou(st["confusion"], c.k)
            aq = seq_sum / n if n else 0.0
            sq = float(np.nanmean(iou)) if np.any(~np.isnan(iou)) else float("nan")
            per_seq[key] = {"STQ": float(np.sqrt(aq * sq)), "AQ": aq, "SQ": sq, "length": st["length"],
                            "num_tubes": n}
            aq_sum += seq_sum
            tubes += n
            total += st["confusion"]
        iou = _class_iou(total, c.k)
        aq = aq_sum / tubes if tubes else 0.0
        sq = float(np.nanmean(iou)) if np.any(~np.isnan(iou)) else float("nan")
        return {"STQ": float(np.sqrt(aq * sq)), "AQ": aq, "SQ": sq,
                "IoU_per_class": {int(i): float(v) for i, v in zip(c.ids, iou)}, "per_sequence": per_seq}

    def sums(self) -> dict[str, Any]:
        """The summable statistics (strict JSON): ``{"aq_sum", "tubes", "confusion"}``.

        ``aq_sum`` = Σ over sequences of AQ·#tubes (the numerator of the overall AQ), ``tubes`` the number of
        ground-truth tubes, ``confusion`` the ``(K+1, K+1)`` semantic confusion of SQ summed over sequences.
        Sums of disjoint sets of sequences add up (fieldwise); :meth:`result_from_sums` turns a sum into STQ.
        """
        confusion = np.zeros((self._cats.k + 1, self._cats.k + 1), np.int64)
        aq_sum, tubes = 0.0, 0
        if self._seq:
            for key, seq in self.result()["per_sequence"].items():
                aq_sum += seq["AQ"] * seq["num_tubes"]
                tubes += seq["num_tubes"]
                confusion += self._seq[key]["confusion"]
        return {"aq_sum": aq_sum, "tubes": tubes, "confusion": confusion.tolist()}

    def result_from_sums(self, sums: dict[str, Any]) -> dict[str, Any]:
        """``{"STQ", "AQ", "SQ", "tubes"}`` over all the sequences of ``sums`` (:meth:`sums`, or a sum of several
        accumulators' of these categories): the formulas of :meth:`result` over the summed terms."""
        iou = _class_iou(np.asarray(sums["confusion"], np.int64), self._cats.k)
        aq = sums["aq_sum"] / sums["tubes"] if sums["tubes"] else 0.0
        sq = float(np.nanmean(iou)) if np.any(~np.isnan(iou)) else float("nan")
        return {"STQ": float(np.sqrt(aq * sq)), "AQ": aq, "SQ": sq, "tubes": sums["tubes"]}


def _merge_counts(acc: tuple[np.ndarray, np.ndarray], ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Add the occurrences of ``ids`` to sorted (unique ids, counts)."""
    u, inv = np.unique(np.concatenate([acc[0], ids]), return_inverse=True)
    weights = np.concatenate([acc[1], np.ones(ids.size, np.int64)])
    return u, np.bincount(inv, weights=weights, minlength=u.size).astype(np.int64)


def _class_iou(confusion: np.ndarray, k: int) -> np.ndarray:
    """Per-category IoU from a ``(K+1, K+1)`` confusion (rows gt, columns pred, index K void); NaN if empty."""
    conf = confusion[:k]                                                   # ground-truth void ignored
    tp = np.diag(conf[:, :k]).astype(np.float64)
    fn = conf.sum(1) - tp                                                  # includes predicted void
    fp = conf[:, :k].sum(0) - tp
    union = tp + fp + fn
    return np.divide(tp, union, out=np.full(k, np.nan), where=union > 0)


# ----------------------------------------------------------------------------------------------------
def _overlaps(gt: np.ndarray, pred: np.ndarray, label_divisor: int) -> tuple[np.ndarray, np.ndarray]:
    """Overlap table of a ground-truth / prediction pair: every (gt id, pred id) that shares pixels.

    Returns:
        ``(keys, counts)``: ``(P,)`` int64 keys ``gt_id · label_divisor² + pred_id`` (sorted) and ``(P,)`` int64
        pixel counts. Tables of several frames concatenate (and re-reduce) into the table of their side-by-side
        concatenation, which is how VPQ windows are evaluated without re-reading pixels.
    """
    return np.unique(gt.reshape(-1) * (label_divisor * label_divisor) + pred.reshape(-1), return_counts=True)


def _window_stats(keys: np.ndarray, counts: np.ndarray, cats: _Categories, stats: PQStats) -> None:
    """Add the PQ statistics of one window to ``stats``.

    ``keys`` / ``counts`` are the concatenated overlap tables (:func:`_overlaps`) of the window's frames, i.e.
    the overlap table of the frames side by side. The matching is the image matcher of panoptic quality,
    :func:`hle_core.evaluation.pq.image_stats` (as panopticapi / VPSNet: same category, ground truth not crowd,
    IoU > 0.5 with the prediction's void pixels left out of the union; unmatched non-crowd ground truth → FN;
    an unmatched prediction → FP unless more than half of it lies on void plus same-category crowd), fed with
    the window's joint histogram: row / column 0 = void, then one row per ground-truth tube and one column
    per predicted tube.
    """
    void, div = cats.void, cats.divisor
    keys, key_inv = np.unique(keys, return_inverse=True)                   # merge frames of a window
    inter = np.bincount(key_inv, weights=counts, minlength=keys.size).astype(np.int64)      # P pairs
    g_ids, gi = np.unique(keys // (div * div), return_inverse=True)        # segment index of each overlap
    p_ids, pi = np.unique(keys % (div * div), return_inverse=True)
    g_seg, p_seg = g_ids != void, p_ids != void
    g_row = np.where(g_seg, np.cumsum(g_seg), 0)                           # void -> 0, tubes -> 1..G
    p_col = np.where(p_seg, np.cumsum(p_seg), 0)
    hist = np.zeros((int(g_seg.sum()) + 1, int(p_seg.sum()) + 1), np.int64)              # (G+1) x (P+1)
    hist[g_row[gi], p_col[pi]] = inter                                     # (gt, pred) pairs are unique
    g_cat, p_cat = cats.index(g_ids[g_seg], "gt"), cats.index(p_ids[p_seg], "pred")
    gt = SegmentTable(g_ids[g_seg], g_cat, cats.is_thing[g_cat] & (g_ids[g_seg] < div))   # crowd: thing id < div
    pred = SegmentTable(p_ids[p_seg], p_cat, np.zeros(p_cat.size, bool))
    image_stats(hist, gt, pred, stats.categories, stats)


def _pq_summary(stats: PQStats, cats: _Categories) -> dict[str, Any]:
    """PQ / SQ / RQ from accumulated statistics; categories without TP, FP and FN are left out of the means."""
    tp, fp, fn = stats.tp.astype(np.float64), stats.fp.astype(np.float64), stats.fn.astype(np.float64)
    iou = stats.iou
    denom = tp + 0.5 * fp + 0.5 * fn
    present = denom > 0
    pq = np.divide(iou, denom, out=np.zeros_like(iou), where=present)
    sq = np.divide(iou, tp, out=np.zeros_like(iou), where=tp > 0)
    rq = np.divide(tp, denom, out=np.zeros_like(iou), where=present)

    def mean(v: np.ndarray, sel: np.ndarray) -> float:
        sel = sel & present
        return float(v[sel].mean()) if sel.any() else float("nan")

    everything = np.ones(cats.k, bool)
    out: dict[str, Any] = {}
    for name, sel in (("", everything), ("_things", cats.is_thing), ("_stuff", ~cats.is_thing)):
        out["PQ" + name], out["SQ" + name], out["RQ" + name] = mean(pq, sel), mean(sq, sel), mean(rq, sel)
    out["per_class"] = {int(c): {"pq": float(pq[i]), "sq": float(sq[i]), "rq": float(rq[i]), "tp": int(tp[i]),
                                 "fp": int(fp[i]), "fn": int(fn[i])}
                        for i, c in enumerate(cats.ids) if present[i]}
    return out


class VPQAccumulator:
    """Video Panoptic Quality (VPSNet), streamed frame by frame per sequence.

    Each update evaluates every window size ``n`` whose last ``n`` frames are now available (the window ending
    at this frame), so after a sequence of ``L`` frames each size has seen its ``L - n + 1`` sliding windows.
    A window's ground-truth and predicted frames are concatenated side by side; tubes are panoptic ids that
    recur across the window's frames (track ids for things, category ids for stuff). Only each frame's small
    (gt id, pred id) overlap table is kept, the concatenation is evaluated by merging those tables.
    """

    def __init__(self, category_ids: Sequence[int], is_thing: Sequence[bool], *,
                 window_sizes: Sequence[int] = (1, 2, 3, 4), label_divisor: int = LABEL_DIVISOR,
                 void_id: int = VOID_ID) -> None:
        """
        Args:
            category_ids, is_thing: as for :class:`STQAccumulator`.
            window_sizes: numbers of consecutive frames per tube (VPSNet: 1, 2, 3, 4).
        """
        self._cats = _Categories(category_ids, is_thing, label_divisor, void_id)
        sizes = tuple(int(n) for n in window_sizes)
        if not sizes or min(sizes) < 1 or len(set(sizes)) != len(sizes):
            raise ValueError(f"window_sizes must be distinct integers >= 1, got {window_sizes!r}")
        self.window_sizes = sizes
        self.reset()

    @classmethod
    def from_class_table(cls, table: ClassTable, **kwargs: Any) -> "VPQAccumulator":
        return cls(table.ids, table.thing_mask, **kwargs)

    def reset(self) -> None:
        self._buffers: dict[Any, deque] = {}
        c = self._cats
        categories = Categories(tuple(c.ids.tolist()), tuple(c.is_thing.tolist()), tuple(str(i) for i in c.ids))
        self._stats = {n: PQStats(categories) for n in self.window_sizes}
        self._windows = {n: 0 for n in self.window_sizes}

    def update(self, gt: Any, pred: Any, sequence_id: Any = 0) -> None:
        """Add one frame (``(H, W)`` int panoptic maps, prediction instance part = track id)."""
        gt = _as_panoptic(gt, "gt", self._cats.divisor)
        pred = _as_panoptic(pred, "pred", self._cats.divisor)
        _check_pair(gt, pred)
        buf = self._buffers.setdefault(sequence_id, deque(maxlen=max(self.window_sizes)))
        if buf and buf[-1][0] != gt.shape:
            raise ValueError(f"frame shape {gt.shape} differs from the sequence's {buf[-1][0]}")
        self._cats.index(gt, "gt")                                         # reject unknown categories early
        self._cats.index(pred, "pred")
        buf.append((gt.shape, *_overlaps(gt, pred, self._cats.divisor)))
        for n in self.window_sizes:
            if len(buf) >= n:                                              # the window of the last n frames
                window = list(buf)[-n:]
                keys = np.concatenate([w[1] for w in window])
                counts = np.concatenate([w[2] for w in window])
                _window_stats(keys, counts, self._cats, self._stats[n])
                self._windows[n] += 1

    def result(self) -> dict[str, Any]:
        """``{"VPQ", "VPQ_things", "VPQ_stuff", "per_window": {n: {"PQ", "SQ", "RQ", "PQ_things", …,
        "num_windows", "per_class"}}}``. VPQ averages PQ over the window sizes that saw at least one window;
        NaN where nothing was evaluated."""
        per_window = {}
        for n in self.window_sizes:
            summary = _pq_summary(self._stats[n], self._cats) if self._windows[n] else {}
            per_window[n] = {**summary, "num_windows": self._windows[n]}
        out: dict[str, Any] = {}
        for name in ("", "_things", "_stuff"):
            vals = [w["PQ" + name] for w in per_window.values() if w["num_windows"] and not np.isnan(w["PQ" + name])]
            out["VPQ" + name] = float(np.mean(vals)) if vals else float("nan")
        out["per_window"] = per_window
        return out

    def sums(self) -> dict[str, Any]:
        """The summable statistics (strict JSON): ``{window size (str): {"tp", "fp", "fn", "iou", "num_windows"}}``,
        the per-category PQ sums of each window size. Sums of disjoint sets of sequences add up (fieldwise);
        :meth:`from_sums` rebuilds an accumulator from them."""
        return {str(n): {"tp": s.tp.tolist(), "fp": s.fp.tolist(), "fn": s.fn.tolist(), "iou": s.iou.tolist(),
                         "num_windows": int(self._windows[n])} for n, s in self._stats.items()}

    @classmethod
    def from_sums(cls, category_ids: Sequence[int], is_thing: Sequence[bool], sums: dict[str, Any],
                  **kwargs: Any) -> "VPQAccumulator":
        """An accumulator whose :meth:`result` is that of the frames behind ``sums`` (:meth:`sums`, or a sum of
        several); its window sizes are those of ``sums``. ``kwargs``: ``label_divisor``, ``void_id``."""
        acc = cls(category_ids, is_thing, window_sizes=[int(n) for n in sums], **kwargs)
        for n, w in sums.items():
            stats = acc._stats[int(n)]
            stats.tp, stats.fp, stats.fn = (np.asarray(w[f], np.int64) for f in ("tp", "fp", "fn"))
            stats.iou = np.asarray(w["iou"], np.float64)
            acc._windows[int(n)] = int(w["num_windows"])
        return acc


def video_panoptic_quality(gt_frames: Sequence[Any], pred_frames: Sequence[Any], category_ids: Sequence[int],
                           is_thing: Sequence[bool], **kwargs: Any) -> dict[str, Any]:
    """VPQ of one sequence; ``kwargs`` as for :class:`VPQAccumulator`. See :meth:`VPQAccumulator.result`."""
    if len(gt_frames) != len(pred_frames):
        raise ValueError(f"got {len(gt_frames)} ground-truth frames but {len(pred_frames)} predicted frames")
    acc = VPQAccumulator(category_ids, is_thing, **kwargs)
    for g, p in zip(gt_frames, pred_frames):
        acc.update(g, p)
    return acc.result()


# ----------------------------------------------------------------------------------------------------
def count_id_switches(gt_frames: Sequence[Any], pred_frames: Sequence[Any], *, iou_threshold: float = 0.5,
                      label_divisor: int = LABEL_DIVISOR) -> int:
    """CLEAR-MOT identity switches of predicted track ids against ground-truth tracks.

    Per frame, each ground-truth instance (thing id ``>= label_divisor``; crowd, stuff and void are not tracks)
    is matched to the predicted tracked segment (id ``>= label_divisor``) of the same category with mask IoU
    above ``iou_threshold`` (plain IoU over the frame; above 0.5 the match is unique). A switch is counted when
    a ground-truth track is matched to a predicted id different from the one it was matched to last (frames
    without a match in between do not reset that memory, as in CLEAR MOT). Predicted thing segments without a
    track (id below the divisor) match nothing.

    Args:
        gt_frames: ``T`` int ``(H, W)`` ground-truth panoptic maps (instance part = ground-truth track id).
        pred_frames: ``T`` int ``(H, W)`` predicted maps (instance part = predicted track id).
        iou_threshold: in [0.5, 1).
    Returns:
        the number of identity switches.
    """
    if not 0.5 <= iou_threshold < 1.0:
        raise ValueError(f"iou_threshold must lie in [0.5, 1) for a unique matching, got {iou_threshold}")
    if len(gt_frames) != len(pred_frames):
        raise ValueError(f"got {len(gt_frames)} ground-truth frames but {len(pred_frames)} predicted frames")
    last: dict[int, int] = {}
    switches = 0
    for t, (g, p) in enumerate(zip(gt_frames, pred_frames)):
        g = _as_panoptic(g, f"gt_frames[{t}]", label_divisor).reshape(-1)
        p = _as_panoptic(p, f"pred_frames[{t}]", label_divisor).reshape(-1)
        _check_pair(g, p)
        g_ids, g_inv, g_area = np.unique(g, return_inverse=True, return_counts=True)
        p_ids, p_inv, p_area = np.unique(p, return_inverse=True, return_counts=True)
        pair, inter = np.unique(g_inv * p_ids.size + p_inv, return_counts=True)
        gi, pi = pair // p_ids.size, pair % p_ids.size
        gid, pid = g_ids[gi], p_ids[pi]
        iou = inter / (g_area[gi] + p_area[pi] - inter)
        ok = (gid >= label_divisor) & (pid >= label_divisor) & (gid // label_divisor == pid // label_divisor) \
            & (iou > iou_threshold)
        for gt_track, pred_track in zip(gid[ok].tolist(), pid[ok].tolist()):  # matched pairs only
            if gt_track in last and last[gt_track] != pred_track:
                switches += 1
            last[gt_track] = pred_track
    return switches
