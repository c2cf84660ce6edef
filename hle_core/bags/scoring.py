"""Scoring a bag frame by frame: what :func:`~hle_core.bags.evaluate.evaluate_bag` (a model run) and
:func:`~hle_core.bags.score.score_recorded_bag` (recorded node output) share.

Both are short loops over a :class:`BagScorer`: for every image of the camera bag, in header-stamp order,
:meth:`BagScorer.start_frame` (sequence split), then :meth:`~BagScorer.reject` (a reason) or
:meth:`~BagScorer.evaluated` (latency, segments, tracks) and :meth:`~BagScorer.score` (against the ground truth
of :meth:`CameraBag.ground_truth`); :meth:`BagScorer.metrics` gives the bag's frame accounting and scores.

* :class:`CameraBag` / :func:`read_camera_bag`: the image and ground-truth messages of a bag (what cannot be used
  already counted by reason).
* :class:`FrameScorer`: PQ over all scored frames, STQ / VPQ / ID switches per sequence (:class:`VideoScorer`),
  embedding stability; :meth:`FrameScorer.sums` for fleet evaluation (:mod:`hle_core.bags.fleet`).
* :class:`VideoScorer` / :func:`video_metrics_from_sums`: the tracking half, shared with ``hle tune-tracker``.
* :func:`finish_metrics`: strict JSON, ``metrics.json`` and the report.
"""
from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import LABEL_DIVISOR
from ..image_codec import ImageConversionError, as_rgb, image_to_array
from .metrics import EmbeddingStability, stage_latency_percentiles
from .reader import BagError, BagReader
from .types import COMPRESSED_TYPE, IMAGE_TYPE, stamp_ns

__all__ = ["BagScorer", "CameraBag", "FrameScorer", "VideoScorer", "VIDEO_DIVISOR", "add_example", "finish_metrics",
           "json_safe", "read_camera_bag", "video_metrics_from_sums"]

#: Label divisor of the video metrics: predicted thing ids become category × VIDEO_DIVISOR + track id, so track
#: ids up to 65535 fit (the 1000 of the Cityscapes encoding would overflow on long sequences).
VIDEO_DIVISOR = 1 << 16


def json_safe(x: Any) -> Any:
    """NaN / inf → None, numpy scalars → Python, dict keys → str (strict JSON)."""
    if isinstance(x, dict):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def add_example(store: dict[str, list], reason: str, text: str, limit: int = 3) -> None:
    """Keep up to ``limit`` example lines per reason (the report's "examples")."""
    store.setdefault(reason, [])
    if len(store[reason]) < limit:
        store[reason].append(text)


def to_video_ids(gt: np.ndarray) -> np.ndarray:
    """Cityscapes ids (divisor 1000) → the :data:`VIDEO_DIVISOR` encoding (things only; stuff / crowd / void kept)."""
    g = gt.astype(np.int64)
    return np.where(g >= LABEL_DIVISOR, (g // LABEL_DIVISOR) * VIDEO_DIVISOR + g % LABEL_DIVISOR, g)


# --- the camera bag ---------------------------------------------------------------------------------------------
@dataclass
class CameraBag:
    """The image and ground-truth messages of a bag, and what could not be used."""

    images: list[Any]                       # BagRecords of deserialised image messages, recording order
    gts: dict[int, Any]                     # header stamp (ns) -> first ground-truth BagRecord with it
    rejected: Counter                       # reason -> image messages refused before the pipeline
    examples: dict[str, list[str]]
    total: int                              # image messages declared (or found)
    declared: int | None
    read: int
    gt_duplicates: int
    gt_undecodable: int
    reader: BagReader

    def ground_truth(self, gt_topic: str | None, stamp: int, shape: tuple[int, int],
                     examples: dict[str, list[str]]) -> tuple[str, np.ndarray | None]:
        """(status, (H, W) int64 ground truth or None) for the image stamped ``stamp`` of size ``shape``."""
        if not gt_topic:
            return "no_gt_topic", None
        rec = self.gts.get(stamp)
        if rec is None:
            return "no_gt", None
        msg = rec.msg
        if getattr(msg, "encoding", None) != "32SC1":
            add_example(examples, "gt_encoding", f"stamp {stamp}: encoding {getattr(msg, 'encoding', rec.msgtype)!r}")
            return "gt_encoding", None
        try:
            gt = image_to_array(msg)
        except ImageConversionError as exc:
            add_example(examples, "gt_encoding", f"stamp {stamp}: {exc}")
            return "gt_encoding", None
        if gt.shape != tuple(shape):
            add_example(examples, "gt_shape", f"stamp {stamp}: ground truth {gt.shape} vs image {tuple(shape)}")
            return "gt_shape", None
        gt = gt.astype(np.int64)
        if gt.size and gt.min() < 0:
            add_example(examples, "gt_labels", f"stamp {stamp}: negative ids")
            return "gt_labels", None
        return "scored", gt


def read_camera_bag(bag: str | Path, image_topic: str, gt_topic: str | None, log: Any) -> CameraBag:
    """Every message of the two topics, with the image messages that cannot be used already counted."""
    reader = BagReader(bag).open()
    try:
        reader.require_topics([image_topic] + ([gt_topic] if gt_topic else []))
        info = reader.topics.get(image_topic)
        if info is not None and info.msgtype and info.msgtype not in (IMAGE_TYPE, COMPRESSED_TYPE):
            raise BagError(f"topic {image_topic} of {bag} carries {info.msgtype}, expected {IMAGE_TYPE} or "
                           f"{COMPRESSED_TYPE}")
        out = CameraBag([], {}, Counter(), {}, 0, None, 0, 0, 0, reader)
        for rec in reader.messages([image_topic] + ([gt_topic] if gt_topic else [])):
            if rec.topic == image_topic:
                if rec.msg is None:
                    out.rejected["deserialize"] += 1
                    add_example(out.examples, "deserialize", f"log time {rec.log_time}: {rec.error}")
                elif rec.msgtype not in (IMAGE_TYPE, COMPRESSED_TYPE):
                    out.rejected["msgtype"] += 1
                    add_example(out.examples, "msgtype", f"log time {rec.log_time}: {rec.msgtype}")
                else:
                    out.images.append(rec)
            elif rec.msg is None:
                out.gt_undecodable += 1
            elif stamp_ns(rec.msg.header) in out.gts:
                out.gt_duplicates += 1
            else:
                out.gts[stamp_ns(rec.msg.header)] = rec
    finally:
        reader.close()
    info = reader.topics.get(image_topic)
    out.read = info.read if info else 0
    out.declared = info.declared if info else None
    out.total = max(out.read, out.declared or 0)
    if out.total > out.read:                                       # declared by the index, lost to damage
        out.rejected["unreadable"] += out.total - out.read
        add_example(out.examples, "unreadable", f"{out.total - out.read} of {out.total} declared messages not "
                                                f"readable: {reader.error or reader.open_error}")
    if reader.error:
        log.warning(f"bag {bag}: {reader.error}")
    return out


# --- scores -----------------------------------------------------------------------------------------------------
class VideoScorer:
    """STQ / VPQ / ID switches per sequence of tracked predictions: the tracking half of bag-eval's scores.

    Shared by :class:`FrameScorer` (``hle bag-eval``) and :mod:`hle_core.tracking.tune` (``hle tune-tracker``), so
    a tracker configuration gets identical numbers from both. Predicted segments are relabelled with their track
    ids (:func:`~hle_core.evaluation.video.relabel_with_tracks`, divisor :data:`VIDEO_DIVISOR`); the ground truth
    is converted to the same encoding. ``vpq=False`` skips VPQ (the slowest of the three).
    """

    def __init__(self, classes: Any, vpq: bool = True) -> None:
        from ..evaluation.video import STQAccumulator, VPQAccumulator

        self.stq = STQAccumulator.from_class_table(classes, label_divisor=VIDEO_DIVISOR)
        self.vpq = VPQAccumulator.from_class_table(classes, label_divisor=VIDEO_DIVISOR) if vpq else None
        self.maps: dict[int, tuple[list, list]] = {}              # sequence -> (gt maps, tracked pred maps)

    def add(self, gt: np.ndarray, panoptic: np.ndarray, segment_ids: np.ndarray, track_ids: np.ndarray,
            category_ids: np.ndarray, sequence: int) -> None:
        """One scored frame: ``gt`` in the Cityscapes encoding, the prediction as a panoptic map with its
        segments' ids, track ids (-1: none) and categories."""
        from ..evaluation.video import relabel_with_tracks

        gt_video = to_video_ids(gt).astype(np.int32)                   # category < 1000: fits int32
        pred_video = relabel_with_tracks(panoptic, segment_ids, track_ids, category_ids, label_divisor=VIDEO_DIVISOR)
        self.stq.update(gt_video, pred_video, sequence)
        if self.vpq is not None:
            self.vpq.update(gt_video, pred_video, sequence)
        g_list, p_list = self.maps.setdefault(sequence, ([], []))
        g_list.append(gt_video)
        p_list.append(pred_video.astype(np.int32))

    def id_switches(self) -> int:
        """CLEAR-MOT identity switches summed over the sequences."""
        from ..evaluation.video import count_id_switches

        return int(sum(count_id_switches(g, p, label_divisor=VIDEO_DIVISOR) for g, p in self.maps.values()))

    def sums(self) -> dict[str, Any]:
        """The summable statistics of STQ / VPQ / ID switches (strict JSON): ``{"stq": {"aq_sum", "tubes",
        "confusion"}, "vpq": {window size: {"tp", "fp", "fn", "iou", "num_windows"}}, "id_switches"}``
        (:meth:`STQAccumulator.sums <hle_core.evaluation.video.STQAccumulator.sums>`, ``VPQAccumulator.sums``).

        Statistics of disjoint sets of sequences (e.g. different bags) add up; :func:`video_metrics_from_sums`
        turns a sum back into STQ / VPQ. Used by ``hle bag-eval --bags`` (:mod:`hle_core.bags.fleet`).
        """
        out: dict[str, Any] = {"stq": self.stq.sums(), "id_switches": self.id_switches()}
        if self.vpq is not None:
            out["vpq"] = self.vpq.sums()
        return out

    def result(self) -> dict[str, Any]:
        """``{"stq": {...}, "vpq": {...}, "id_switches": n}`` as in bag-eval's metrics (no ``vpq`` without VPQ);
        raises ValueError before any :meth:`add`."""
        s = self.stq.result()
        out: dict[str, Any] = {
            "stq": {"STQ": s["STQ"], "AQ": s["AQ"], "SQ_sem": s["SQ"], "IoU_per_class": s["IoU_per_class"],
                    "per_sequence": {k: {"STQ": q["STQ"], "AQ": q["AQ"], "SQ_sem": q["SQ"], "length": q["length"],
                                         "num_tubes": q["num_tubes"]} for k, q in s["per_sequence"].items()}}}
        if self.vpq is not None:
            v = self.vpq.result()
            out["vpq"] = {"VPQ": v["VPQ"], "VPQ_things": v["VPQ_things"], "VPQ_stuff": v["VPQ_stuff"],
                          "per_window": {n: {k: w[k] for k in ("PQ", "PQ_things", "PQ_stuff", "num_windows") if k in w}
                                         for n, w in v["per_window"].items()}}
        out["id_switches"] = self.id_switches()
        return out


def video_metrics_from_sums(sums: dict[str, Any], category_ids: Any, is_thing: Any) -> dict[str, Any]:
    """STQ / AQ / SQ and VPQ / VPQ_things / VPQ_stuff from :meth:`VideoScorer.sums` (or a sum of several):
    the same formulas as :class:`~hle_core.evaluation.video.STQAccumulator` and ``VPQAccumulator`` over all the
    sequences at once (``category_ids`` / ``is_thing``: the model's categories, as in ``sums["categories"]``)."""
    from ..evaluation.video import STQAccumulator, VPQAccumulator

    stq = STQAccumulator(list(category_ids), list(is_thing), label_divisor=VIDEO_DIVISOR).result_from_sums(sums["stq"])
    out: dict[str, Any] = {"stq": {"STQ": stq["STQ"], "AQ": stq["AQ"], "SQ_sem": stq["SQ"], "tubes": stq["tubes"]},
                           "id_switches": int(sums["id_switches"])}
    if "vpq" in sums:
        v = VPQAccumulator.from_sums(list(category_ids), list(is_thing), sums["vpq"],
                                     label_divisor=VIDEO_DIVISOR).result()
        out["vpq"] = {"VPQ": v["VPQ"], "VPQ_things": v["VPQ_things"], "VPQ_stuff": v["VPQ_stuff"],
                      "windows": {n: w["num_windows"] for n, w in v["per_window"].items()}}
    return out


class FrameScorer:
    """PQ over all scored frames, STQ / VPQ / ID switches per sequence (:class:`VideoScorer`), embedding
    stability."""

    def __init__(self, classes: Any) -> None:
        from ..evaluation.pq import Categories, PQStats

        self.cats = Categories.from_class_table(classes)
        self.pq = PQStats(self.cats)
        self.video = VideoScorer(classes)
        self.stability = EmbeddingStability()
        self.frames = 0

    def frame_pq(self, gt: np.ndarray, panoptic: np.ndarray) -> Any:
        """This frame's PQ statistics (raises ValueError / KeyError on labels of unknown categories)."""
        from ..evaluation.pq import PQStats, accumulate_maps

        return accumulate_maps(PQStats(self.cats), gt, panoptic)

    def score_frame(self, gt: np.ndarray | None, status: str, result: Any, row: dict[str, Any], sequence: int,
                    examples: dict[str, list[str]]) -> str:
        """Score one evaluated frame against its ground truth (``gt`` None: not scored, ``status`` says why);
        fills the per-frame ``row`` and returns the frame's final ground-truth status."""
        frame_stats = None
        if gt is not None:
            try:
                frame_stats = self.frame_pq(gt, result.panoptic)
            except (ValueError, TypeError, KeyError) as exc:
                status = "gt_labels"
                add_example(examples, "gt_labels", f"stamp {row.get('stamp_ns')}: {exc}")
        row["status"] = status
        if frame_stats is None:
            self.stability.gap()
            return status
        frame_pq = frame_stats.pq_average(None)[0]
        row["pq"] = frame_pq["pq"] if frame_pq["n"] else None
        row["gt_objects"] = sorted(int(v) for v in np.unique(gt) if v >= LABEL_DIVISOR)
        self.add(gt, result, frame_stats, sequence)
        return status

    def add(self, gt: np.ndarray, result: Any, frame_stats: Any, sequence: int) -> None:
        self.frames += 1
        self.pq += frame_stats
        self.video.add(gt, result.panoptic, result.ids, result.track_ids, result.category_ids, sequence)
        self.stability.update(gt, result.panoptic, result.ids, result.embeddings, sequence)

    def sums(self) -> dict[str, Any]:
        """Summable statistics of the scored frames (strict JSON): the categories, PQ's per-category sums
        (``PQStats`` fields), :meth:`VideoScorer.sums` and ``frames_scored``."""
        c = self.cats
        return {"categories": {"ids": list(c.ids), "isthing": list(c.isthing), "names": list(c.names)},
                "pq": {name: (v.tolist() if isinstance(v, np.ndarray) else int(v))
                       for name, v in ((f, getattr(self.pq, f)) for f in self.pq._FIELDS)},
                **self.video.sums(), "frames_scored": self.frames}

    def result(self) -> dict[str, Any]:
        if not self.frames:
            return {"not_scored": "no frame had valid ground truth: PQ, STQ, VPQ, ID switches and stability "
                                  "skipped"}
        pq = self.pq.results()
        return {
            "PQ": pq["All"]["pq"], "SQ": pq["All"]["sq"], "RQ": pq["All"]["rq"],
            "pq": {k: pq[k] for k in ("All", "Things", "Stuff", "per_class", "miou", "images")},
            **self.video.result(),
            "embedding_stability": self.stability.result(),
        }


# --- the frame loop ---------------------------------------------------------------------------------------------
@dataclass
class BagScorer:
    """Accumulates a bag's frames in header-stamp order: sequences, rejections by reason, latency, ground-truth
    status, scores (:class:`FrameScorer`) and overlay images; :meth:`metrics` is the bag's accounting and scores.

    ``camera``: the bag's contents (its pre-pipeline rejections and examples are counted on, in place);
    ``sequence_gap_s``: a larger header-stamp gap (or a ``frame_id`` change) starts a new sequence.
    """

    camera: CameraBag
    classes: Any
    gt_topic: str | None
    sequence_gap_s: float = 2.0
    num_overlays: int = 6
    scores: FrameScorer = field(init=False)
    per_frame: list[dict[str, Any]] = field(init=False, default_factory=list)
    timings: list[dict[str, float]] = field(init=False, default_factory=list)
    overlays: list[tuple[int, np.ndarray, np.ndarray]] = field(init=False, default_factory=list)
    gt_status: Counter = field(init=False, default_factory=Counter)
    sequence: int = field(init=False, default=-1)

    def __post_init__(self) -> None:
        self.scores = FrameScorer(self.classes)
        self.rejected, self.examples = self.camera.rejected, self.camera.examples
        self._prev: tuple[int, str] | None = None
        self._overlay_at: set[int] = set()

    def plan_overlays(self, frames: int) -> None:
        """``num_overlays`` frame indices evenly spaced over ``frames`` frames keep an overlay image."""
        self._overlay_at = set(np.linspace(0, frames - 1, self.num_overlays).round().astype(int).tolist()) \
            if frames and self.num_overlays > 0 else set()

    def start_frame(self, n: int, header: Any) -> tuple[dict[str, Any], bool]:
        """Frame ``n`` (processing order) with this message header: its per-frame row, and whether it starts a
        new sequence (then the embedding stability has a gap; the caller resets its tracker)."""
        stamp, frame_id = stamp_ns(header), header.frame_id
        new = self._prev is None or stamp - self._prev[0] > self.sequence_gap_s * 1e9 or frame_id != self._prev[1]
        if new:
            self.sequence += 1
            self.scores.stability.gap()
        self._prev = (stamp, frame_id)
        row: dict[str, Any] = {"index": n, "stamp_ns": stamp, "sequence": self.sequence}
        self.per_frame.append(row)
        return row, new

    def reject(self, row: dict[str, Any], reason: str, example: str | None = None) -> None:
        """The frame of ``row`` is not evaluated, for ``reason`` (an ``example`` line is kept for the report)."""
        self.rejected[reason] += 1
        if example is not None:
            add_example(self.examples, reason, f"stamp {row['stamp_ns']}: {example}")
        row["status"] = f"rejected:{reason}"
        self.scores.stability.gap()

    def evaluated(self, row: dict[str, Any], timings_ms: dict[str, float], segments: int, track_ids: Any) -> None:
        """The frame of ``row`` was evaluated: its latency figures, number of segments and track ids."""
        self.timings.append(timings_ms)
        row.update(latency_ms=timings_ms.get("total"), segments=segments, tracks=[int(t) for t in track_ids if t >= 0])

    def overlay(self, n: int, image: np.ndarray, panoptic: np.ndarray) -> None:
        """Keep frame ``n``'s image and prediction for the report when it is one of the planned overlays."""
        if n in self._overlay_at:
            self.overlays.append((n, as_rgb(image).copy(), panoptic.copy()))

    def score(self, row: dict[str, Any], result: Any, shape: tuple[int, int]) -> tuple[str, np.ndarray | None]:
        """Score the evaluated frame of ``row`` (image size ``shape``) against its ground truth; returns its
        ground-truth status and the ground truth when scored."""
        status, gt = self.camera.ground_truth(self.gt_topic, row["stamp_ns"], shape, self.examples)
        status = self.scores.score_frame(gt, status, result, row, self.sequence, self.examples)
        self.gt_status[status] += 1
        return status, gt

    def latency(self, warmup: int = 0) -> list[dict[str, float]]:
        """The evaluated frames' timings without the first ``warmup`` (all when there are no more)."""
        return self.timings[warmup:] if len(self.timings) > warmup else self.timings

    def metrics(self, warmup: int = 0) -> dict[str, Any]:
        """The frame accounting (``frames_*``, ``rejected_by_reason``, ``gt_status``, ...), ``examples``,
        ``sequences``, the scores (:meth:`FrameScorer.result`) and ``latency_ms``: percentiles of
        :meth:`latency` (``warmup`` first frames left out)."""
        camera = self.camera
        frames_rejected = int(sum(self.rejected.values()))
        if len(self.timings) + frames_rejected != camera.total:            # an invariant, not input validation
            raise AssertionError(f"frame accounting broken: {len(self.timings)} evaluated + {frames_rejected} "
                                 f"rejected != {camera.total} total")
        return {"frames_total": camera.total, "frames_declared": camera.declared, "frames_read": camera.read,
                "frames_evaluated": len(self.timings), "frames_rejected": frames_rejected,
                "rejected_by_reason": dict(sorted(self.rejected.items())),
                "frames_scored": self.gt_status.get("scored", 0), "gt_status": dict(sorted(self.gt_status.items())),
                "examples": self.examples, "sequences": self.sequence + 1, "sequence_gap_s": self.sequence_gap_s,
                **self.scores.result(), "latency_ms": stage_latency_percentiles(self.latency(warmup))}


def finish_metrics(metrics: dict[str, Any], out_dir: str | Path | None, overlays: list, classes: Any,
                   plots: bool) -> dict[str, Any]:
    """Make ``metrics`` strict JSON; with ``out_dir`` also write ``report.md``, plots, overlays and ``metrics.json``
    there. Returns the metrics (with ``files`` when written)."""
    metrics = json_safe(metrics)
    if out_dir is not None:
        from .report import write_report

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        metrics["files"] = write_report(metrics, out, overlays=overlays, classes=classes, plots=plots)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    return metrics
