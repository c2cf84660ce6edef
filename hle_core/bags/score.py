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
from pathlib import Path
from typing import Any


from ..config import ClassTable
from ..image_codec import ImageConversionError, compressed_to_rgb, image_to_rgb
from ..message_fields import class_table_from_fields, frame_from_message
from .reader import BagError, BagReader
from .scoring import BagScorer, finish_metrics, read_camera_bag
from .types import COMPRESSED_TYPE, PANOPTIC_TYPE, stamp_ns

__all__ = ["score_recorded_bag"]


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
    camera = read_camera_bag(bag, image_topic, gt_topic, log)

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
        classes = class_table_from_fields(next(iter(predictions.values())))
    scorer = BagScorer(camera, classes, gt_topic, sequence_gap_s, num_overlays)
    images = sorted(camera.images, key=lambda r: (stamp_ns(r.msg.header), r.log_time))
    scorer.plan_overlays(len(images))
    matched: set[int] = set()
    for n, rec in enumerate(images):
        row, _ = scorer.start_frame(n, rec.msg.header)
        stamp = row["stamp_ns"]
        try:                                   # the camera image as the node would convert it (its size, overlays)
            image = compressed_to_rgb(rec.msg) if rec.msgtype == COMPRESSED_TYPE else image_to_rgb(rec.msg)
        except ImageConversionError as exc:    # the node refuses such an image: counted by reason, as evaluate_bag
            scorer.reject(row, exc.reason, str(exc))
            matched.add(stamp)
            continue
        msg = predictions.get(stamp)
        if msg is None:
            scorer.reject(row, "not_received")
            continue
        matched.add(stamp)
        try:
            result = frame_from_message(msg)
            shape = tuple(image.shape[:2])
            if result.panoptic.shape != shape:
                raise ValueError(f"label image {result.panoptic.shape} vs camera image {shape}")
        except (ImageConversionError, ValueError) as exc:
            scorer.reject(row, "bad_prediction", str(exc))
            continue
        scorer.evaluated(row, result.timings_ms, int(result.ids.size), result.track_ids)
        scorer.overlay(n, image, result.panoptic)
        scorer.score(row, result, shape)


    metrics: dict[str, Any] = {
        "bag": str(bag), "image_topic": image_topic, "gt_topic": gt_topic, "pred_bag": str(pred_bag),
        "pred_topic": pred_topic, "backend": {"name": "recorded node output"},
        "storage": camera.reader.storage, "salvaged": camera.reader.salvaged,
        "tracker": "the node's own (track_id of the recorded instances)",
        "predictions_total": len(predictions) + duplicates + int(sum(bad_predictions.values())),
        "predictions_unmatched": len(set(predictions) - matched), "predictions_duplicate_stamps": duplicates,
        "predictions_unreadable": dict(bad_predictions), "pred_read_error": pred_error,
        "read_error": camera.reader.error, "open_error": camera.reader.open_error,
        **scorer.metrics(), "latency_source": "node processing_time_ms",
        "per_frame": scorer.per_frame, "elapsed_s": time.time() - started,
    }
    return finish_metrics(metrics, out_dir, scorer.overlays, classes, plots)
