"""Score recorded node output against a bag's ground truth, without running any model.

``hle bag-eval --bag camera.mcap --gt-topic G --pred-bag node_output.mcap`` (and the demo's live step): the
``hle_ros/msg/PanopticSegmentation`` messages a node published (recorded into a bag, e.g. by the demo or
``ros2 bag record``) are matched to the camera bag's images and ground truth by header stamp and scored with the
same metrics as :func:`~hle_core.bags.evaluate.evaluate_bag`: PQ, STQ, VPQ, ID switches (with the node's own
track ids), embedding stability (the instances' published mean embeddings) and latency (the node's
``processing_time_ms``).

Frame accounting: ``frames_total`` = image messages in the camera bag; each is ``evaluated`` (a prediction
with its stamp arrived) or ``rejected``: for a reason of the camera bag itself (``unreadable``,
``deserialize``, ``msgtype`` and the pixel-conversion reasons, as in :func:`~hle_core.bags.evaluate.evaluate_bag`),
as ``not_received`` (the node dropped it, newest-frame-only, or rejected it) or as ``bad_prediction`` (the
recorded message is unreadable or its label image differs in size from the camera image). Predictions whose stamp
matches no image are counted in ``predictions_unmatched``; further predictions with an already seen stamp in
``predictions_duplicate_stamps`` (the first one is scored).
"""
from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import ClassTable
from ..image_codec import ImageConversionError, as_rgb, compressed_to_rgb, image_to_array, image_to_rgb
from .evaluate import _example, _ground_truth, _read_bag, _Scorer, finish_metrics
from .metrics import latency_percentiles
from .reader import BagError, BagReader
from .types import COMPRESSED_TYPE, PANOPTIC_TYPE, stamp_ns

__all__ = ["RecordedFrame", "recorded_frame", "score_recorded_bag"]


@dataclass
class RecordedFrame:
    """One ``PanopticSegmentation`` message as the scorer reads it (the fields of a pipeline FrameResult)."""

    panoptic: np.ndarray          # (H, W) int32
    ids: np.ndarray               # (S,) int64
    category_ids: np.ndarray      # (S,) int64
    is_thing: np.ndarray          # (S,) bool
    track_ids: np.ndarray         # (S,) int64, -1 untracked
    embeddings: np.ndarray        # (S, D) float32
    processing_time_ms: float


def recorded_frame(msg: Any) -> RecordedFrame:
    """A deserialised ``PanopticSegmentation`` message → :class:`RecordedFrame`.

    Raises:
        ImageConversionError: the label image is not a readable 32SC1 image.
        ValueError: instances whose ids do not appear in the label image's id space (negative ids).
    """
    labels = image_to_array(msg.labels)
    if msg.labels.encoding != "32SC1" or labels.ndim != 2:
        raise ImageConversionError("encoding", f"label image must be 32SC1, got {msg.labels.encoding!r}")
    inst = list(msg.instances)
    dim = int(msg.embedding_dim)
    emb = np.zeros((len(inst), dim), np.float32)
    for i, x in enumerate(inst):
        e = np.asarray(x.embedding, np.float32)
        if e.size == dim:
            emb[i] = e
    ids = np.array([x.id for x in inst], np.int64)
    if ids.size and ids.min() < 0:
        raise ValueError(f"negative instance ids {ids[ids < 0][:5].tolist()}")
    return RecordedFrame(panoptic=labels.astype(np.int32), ids=ids,
                         category_ids=np.array([x.class_id for x in inst], np.int64),
                         is_thing=np.array([x.is_thing for x in inst], bool),
                         track_ids=np.array([x.track_id for x in inst], np.int64), embeddings=emb,
                         processing_time_ms=float(msg.processing_time_ms))


def score_recorded_bag(bag: str | Path, gt_topic: str, pred_bag: str | Path, pred_topic: str, *,
                       image_topic: str, classes: ClassTable | None = None, out_dir: str | Path | None = None,
                       sequence_gap_s: float = 2.0, num_overlays: int = 6, plots: bool = True,
                       logger: Any = None) -> dict[str, Any]:
    """Metrics of the recorded predictions in ``pred_bag`` against the ground truth of ``bag``.

    Args:
        bag: the camera bag (images on ``image_topic`` and 32SC1 ground truth on ``gt_topic``).
        pred_bag, pred_topic: the recorded ``hle_ros/msg/PanopticSegmentation`` messages.
        classes: the model's class table (the categories of the ground truth); None: the table the recorded
            messages carry (``class_names`` / ``class_ids`` / ``class_is_thing``).
        out_dir: write ``metrics.json``, ``report.md``, plots and overlays here.
    Returns:
        the metrics dict (keys as :func:`~hle_core.bags.evaluate.evaluate_bag`'s, plus ``predictions_*``).
    Raises:
        FileNotFoundError: a bag is missing. BagError: a topic is missing or of the wrong type.
    """
    log = logger if logger is not None else logging.getLogger("hle_core.bags")
    started = time.time()
    camera = _read_bag(bag, image_topic, gt_topic, log)
    rejected, examples = camera.rejected, camera.examples

    predictions: dict[int, Any] = {}
    bad_predictions: Counter = Counter()
    duplicates = 0
    with BagReader(pred_bag) as reader:
        reader.require_topics([pred_topic])
        info = reader.topics.get(pred_topic)
        if info is not None and info.msgtype and info.msgtype != PANOPTIC_TYPE:
            raise BagError(f"topic {pred_topic} of {pred_bag} carries {info.msgtype}, expected {PANOPTIC_TYPE}")
        for rec in reader.messages([pred_topic]):
            if rec.msg is None or rec.msgtype != PANOPTIC_TYPE:
                bad_predictions["deserialize" if rec.msg is None else "msgtype"] += 1
                continue
            stamp = stamp_ns(rec.msg.header)
            if stamp in predictions:
                duplicates += 1
            else:
                predictions[stamp] = rec.msg
        pred_error = reader.error
    if pred_error:
        log.warning(f"prediction bag {pred_bag}: {pred_error}")

    if classes is None:
        if not predictions:
            raise BagError(f"no readable {PANOPTIC_TYPE} message on {pred_topic} in {pred_bag}")
        from ..message_fields import class_table_from_fields

        classes = class_table_from_fields(next(iter(predictions.values())))
    scorer = _Scorer(classes)
    gt_status: Counter = Counter()
    per_frame: list[dict[str, Any]] = []
    timings: list[dict[str, float]] = []
    overlays: list[tuple[int, np.ndarray, np.ndarray]] = []
    images = sorted(camera.images, key=lambda r: (stamp_ns(r.msg.header), r.log_time))
    overlay_at = set(np.linspace(0, len(images) - 1, num_overlays).round().astype(int).tolist()) \
        if images and num_overlays > 0 else set()
    sequence, prev_stamp, prev_frame_id, matched = -1, None, None, set()
    for n, rec in enumerate(images):
        stamp, frame_id = stamp_ns(rec.msg.header), rec.msg.header.frame_id
        if prev_stamp is None or stamp - prev_stamp > sequence_gap_s * 1e9 or frame_id != prev_frame_id:
            sequence += 1
            scorer.stability.gap()
        prev_stamp, prev_frame_id = stamp, frame_id
        row: dict[str, Any] = {"index": n, "stamp_ns": stamp, "sequence": sequence}
        per_frame.append(row)
        try:                                   # the camera image as the node would convert it (its size, overlays)
            image = compressed_to_rgb(rec.msg) if rec.msgtype == COMPRESSED_TYPE else image_to_rgb(rec.msg)
        except ImageConversionError as exc:    # the node refuses such an image: counted by reason, as evaluate_bag
            rejected[exc.reason] += 1
            _example(examples, exc.reason, f"stamp {stamp}: {exc}")
            row["status"] = f"rejected:{exc.reason}"
            scorer.stability.gap()
            matched.add(stamp)
            continue
        msg = predictions.get(stamp)
        if msg is None:
            rejected["not_received"] += 1
            row["status"] = "rejected:not_received"
            scorer.stability.gap()
            continue
        matched.add(stamp)
        try:
            result = recorded_frame(msg)
            shape = tuple(image.shape[:2])
            if result.panoptic.shape != shape:
                raise ValueError(f"label image {result.panoptic.shape} vs camera image {shape}")
        except (ImageConversionError, ValueError) as exc:
            rejected["bad_prediction"] += 1
            _example(examples, "bad_prediction", f"stamp {stamp}: {exc}")
            row["status"] = "rejected:bad_prediction"
            scorer.stability.gap()
            continue
        timings.append({"total": result.processing_time_ms})
        row.update(latency_ms=result.processing_time_ms, segments=int(result.ids.size),
                   tracks=[int(t) for t in result.track_ids if t >= 0])
        if n in overlay_at:
            overlays.append((n, as_rgb(image).copy(), result.panoptic.copy()))
        status, gt = _ground_truth(camera.gts, gt_topic, stamp, shape, examples)
        gt_status[scorer.score_frame(gt, status, result, row, sequence, examples)] += 1

    frames_rejected = int(sum(rejected.values()))
    if len(timings) + frames_rejected != camera.total:               # an invariant, not input validation
        raise AssertionError(f"frame accounting broken: {len(timings)} + {frames_rejected} != {camera.total}")
    metrics: dict[str, Any] = {
        "bag": str(bag), "image_topic": image_topic, "gt_topic": gt_topic, "pred_bag": str(pred_bag),
        "pred_topic": pred_topic, "backend": {"name": "recorded node output"},
        "storage": camera.reader.storage, "salvaged": camera.reader.salvaged,
        "tracker": "the node's own (track_id of the recorded instances)",
        "frames_total": camera.total, "frames_declared": camera.declared, "frames_read": camera.read,
        "frames_evaluated": len(timings), "frames_rejected": frames_rejected,
        "rejected_by_reason": dict(sorted(rejected.items())),
        "frames_scored": gt_status.get("scored", 0), "gt_status": dict(sorted(gt_status.items())),
        "predictions_total": len(predictions) + duplicates + int(sum(bad_predictions.values())),
        "predictions_unmatched": len(set(predictions) - matched), "predictions_duplicate_stamps": duplicates,
        "predictions_unreadable": dict(bad_predictions), "pred_read_error": pred_error,
        "read_error": camera.reader.error, "open_error": camera.reader.open_error,
        "examples": examples, "sequences": sequence + 1,
        "sequence_gap_s": sequence_gap_s, **scorer.result(),
        "latency_ms": latency_percentiles(timings), "latency_source": "node processing_time_ms",
        "per_frame": per_frame, "elapsed_s": time.time() - started,
    }
    return finish_metrics(metrics, out_dir, overlays, classes, plots)
