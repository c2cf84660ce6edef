"""Evaluate a model on a rosbag2 bag: the node's pipeline on every image, in header-stamp order.

Data flow, as in the node: image message → pixels (:mod:`hle_core.image_codec`) →
:class:`~hle_core.pipeline.Pipeline` (preprocess → backend → decode → track) → metrics, optionally an output
bag of the node's ``PanopticSegmentation`` messages. The pipeline is built from the model file by
:func:`hle_core.runtime.build_pipeline`, exactly as the node builds it.

Frame accounting (every image message of the topic is counted once; ``frames_evaluated + frames_rejected ==
frames_total`` always holds):

* ``frames_total``: image messages the bag declares for the topic (its index / metadata.yaml), or the number
  found when the index is lost (a truncated MCAP file, :mod:`hle_core.bags.mcap_scan`).
* ``frames_rejected`` by reason: ``unreadable`` (declared but not readable: the bag is damaged, see
  ``read_error``), ``deserialize`` (the message bytes do not decode), ``msgtype`` (not a sensor_msgs Image /
  CompressedImage), the pixel-conversion reasons of :data:`hle_core.image_codec.REJECT_REASONS` (``encoding``,
  ``empty``, ``step``, ``size``, ``too_large``, ``aspect``, ``decode``) and ``pipeline_error`` (the pipeline raised).
* ``frames_evaluated``: frames the pipeline processed. They all count for latency and feed the tracker. Only
  those with valid ground truth (``frames_scored``) count for PQ / STQ / VPQ / ID switches / stability; the
  others are counted by ``gt_status``: ``no_gt_topic`` (no --gt-topic), ``no_gt`` (no ground-truth message
  with the image's header stamp), ``gt_deserialize``, ``gt_encoding`` (not a readable 32SC1 image),
  ``gt_shape`` (size differs from the image), ``gt_labels`` (ids of categories the model does not know, or
  out of range).

Ground truth is matched to an image by equal header stamp (ns). Sequences: a new one starts when the stamp gap
to the previous image exceeds ``sequence_gap_s`` or the ``frame_id`` changes; the tracker is reset there (as
for a new clip) and STQ / VPQ / ID switches are per sequence. Memory: the messages of the two topics are held
in memory to process them in stamp order, and per sequence the label maps for the ID-switch count.

The frame loop is a :class:`~hle_core.bags.scoring.BagScorer` (shared with recorded scoring,
:mod:`hle_core.bags.score`); the reasons are explained by :data:`hle_core.bags.reasons.REASON_TEXT`.
"""
from __future__ import annotations

import logging
import time
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..config import DEFAULT_MAX_PIXELS
from ..image_codec import ImageConversionError, compressed_to_rgb, image_to_rgb
from .reasons import REASON_TEXT
from .scoring import VIDEO_DIVISOR, BagScorer, VideoScorer, finish_metrics, read_camera_bag, video_metrics_from_sums
from .types import COMPRESSED_TYPE, PANOPTIC_TYPE, stamp_ns

__all__ = ["evaluate_bag", "VideoScorer", "DEFAULT_MAX_PIXELS", "VIDEO_DIVISOR", "REASON_TEXT", "default_output_bag",
           "finish_metrics", "video_metrics_from_sums"]


def default_output_bag(out_dir: str | Path) -> Path:
    """Where ``--output-bag`` writes by default: ``<out_dir>_panoptic.mcap`` beside the output folder."""
    out_dir = Path(out_dir)
    return out_dir.parent / f"{out_dir.name}_panoptic.mcap"


def evaluate_bag(bag: str | Path, image_topic: str, *, gt_topic: str | None = None, model: str | Path | None = None,
                 pipeline: Any = None, backend: str = "auto", device: str = "auto",
                 input_size: tuple[int, int] | None = None, resize: str = "letterbox", tracking: bool = True,
                 tracker: Any = None, decoder: Any = None, out_dir: str | Path | None = None,
                 output_bag: str | Path | None = None, output_topic: str | None = None, overwrite: bool = False,
                 sequence_gap_s: float = 2.0, max_pixels: int | None = DEFAULT_MAX_PIXELS, warmup: int = 1,
                 num_overlays: int = 6, plots: bool = True, progress: bool = True,
                 logger: Any = None, on_frame: Callable[[int, Any, np.ndarray | None], None] | None = None,
                 sums: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run the pipeline over the images of ``image_topic`` and score it against ``gt_topic``.

    Args:
        bag: rosbag2 directory or ``.mcap`` / ``.db3`` file.
        image_topic: ``sensor_msgs/msg/Image`` (or ``CompressedImage``) topic.
        gt_topic: ``sensor_msgs/msg/Image`` 32SC1 ground truth in the Cityscapes convention; None: no scoring.
        model: model file for :func:`hle_core.runtime.build_pipeline` (``.pt`` → torch, ``.onnx`` → onnxruntime,
            as ``backend`` / ``device`` pick); or pass a ready ``pipeline`` (its tracker is used as is and it is
            not closed here).
        input_size, resize: network input ``(H, W)`` (None: each image's own size, padded) and how images are
            fitted to it (``letterbox`` | ``stretch``), as the node's ``input_height`` / ``input_width`` /
            ``resize_mode``.
        tracking, tracker: track things (a :class:`~hle_core.tracking.TrackerConfig`; None = the node's default,
            ``TrackerConfig()``); ``tracking=False`` runs without a tracker (no track ids: STQ's AQ drops).
        decoder: a DecoderConfig (or a callable on the model's), None for the model's own.
        out_dir: write ``metrics.json``, ``report.md``, plots and overlays here (None: only return the dict).
        output_bag, output_topic: write the node's ``PanopticSegmentation`` messages to this bag, on this topic
            (required with ``output_bag``; ``hle bag-eval --output-topic`` defaults to where the node publishes).
        overwrite: replace an existing bag at ``output_bag`` (only a bag, never ``bag`` itself; checked before the
            bag is read, see :func:`hle_core.bags.writer.check_target`); else FileExistsError.
        sequence_gap_s: a larger header-stamp gap starts a new sequence (tracker reset).
        max_pixels: larger images are rejected (``too_large``), as in the node.
        warmup: the first ``warmup`` processed frames are left out of the latency percentiles.
        num_overlays: overlay images kept for the report (evenly spaced over the sequence).
        plots: draw matplotlib plots when matplotlib is installed.
        on_frame: called after each evaluated frame (in processing order) with ``(sequence, result, gt)``: the
            sequence index, the pipeline's ``FrameResult`` and the ``(H, W)`` int64 ground truth when the frame
            was scored, else None. ``hle tune-tracker`` caches the frames through it.
        sums: a dict to fill with the bag's summable statistics
            (:meth:`~hle_core.bags.scoring.FrameScorer.sums`: PQ TP / FP / FN / IoU sums, STQ's association and
            segmentation terms, VPQ's window sums, ID switches) plus ``latency``: the per-frame ``timings_ms``
            after the warm-up frames. ``hle bag-eval --bags`` adds these over bags (:mod:`hle_core.bags.fleet`);
            None: not collected. The returned metrics are the same either way.
    Returns:
        The metrics dict (also written as ``metrics.json``), see the module docstring for the counts.
    Raises:
        FileNotFoundError: no bag / model file. BagError: a topic is missing from an intact bag, or the image
        topic is not an image type. ValueError: neither ``model`` nor ``pipeline``, or
        ``output_bag`` without ``output_topic``.
    """
    from tqdm import tqdm

    log = logger if logger is not None else logging.getLogger("hle_core.bags")
    if pipeline is None and model is None:
        raise ValueError("evaluate_bag needs a model file or a pipeline")
    if output_bag is not None and not output_topic:
        raise ValueError("evaluate_bag: output_bag needs output_topic (the topic of the written messages)")
    if model is not None and not Path(model).is_file():
        raise FileNotFoundError(f"model file not found: {model}")
    started = time.time()
    if output_bag is not None:                  # refuse before any work: never replace the input or a non-bag
        from .writer import check_target

        check_target(output_bag, overwrite=overwrite, protect=(bag,))
    camera = read_camera_bag(bag, image_topic, gt_topic, log)
    images = camera.images
    with ExitStack() as stack:
        out_writer = None
        if output_bag is not None:
            from .types import hle_typestore
            from .writer import BagWriter, panoptic_message

            out_writer = BagWriter(output_bag, typestore=hle_typestore(), overwrite=overwrite, protect=(bag,))
            stack.callback(out_writer.close)
            out_writer.add_topic(output_topic, PANOPTIC_TYPE)
        if pipeline is None:
            from ..runtime import build_pipeline
            from ..tracking import TrackerConfig

            tracker_cfg = (tracker if tracker is not None else TrackerConfig()) if tracking else None
            pipeline = build_pipeline(model, backend, device=device, input_size=input_size, resize=resize,
                                      decoder=decoder, tracker=tracker_cfg, logger=log)
            stack.callback(pipeline.close)
        classes = pipeline.classes
        scorer = BagScorer(camera, classes, gt_topic, sequence_gap_s, num_overlays)
        # max_pixels bounds the network input made from an image too
        fit = getattr(pipeline, "fit", getattr(pipeline, "input_size", None))

        # header-stamp order; a stamp gap or a new frame_id starts a sequence (tracker reset)
        order = sorted(range(len(images)), key=lambda i: (stamp_ns(images[i].msg.header), images[i].log_time, i))
        scorer.plan_overlays(len(order))
        for n, i in enumerate(tqdm(order, desc=f"bag-eval {Path(bag).name}", unit="frame", disable=not progress)):
            rec = images[i]
            msg = rec.msg
            row, new_sequence = scorer.start_frame(n, msg.header)
            if new_sequence:
                pipeline.reset_tracks()
            try:
                image = compressed_to_rgb(msg, max_pixels, fit) if rec.msgtype == COMPRESSED_TYPE \
                    else image_to_rgb(msg, max_pixels, fit)
                result = pipeline.process(image)
            except Exception as exc:                   # counted by reason, as the node counts its rejections
                reason = exc.reason if isinstance(exc, ImageConversionError) else "pipeline_error"
                scorer.reject(row, reason, f"{type(exc).__name__}: {exc}")
                continue
            scorer.evaluated(row, dict(result.timings_ms), result.num_segments, result.track_ids)
            if out_writer is not None:
                out_writer.write(output_topic, row["stamp_ns"], panoptic_message(
                    out_writer.typestore, msg.header, result, classes, pipeline.embedding_dim,
                    pipeline.backend.name, result.timings_ms.get("total", 0.0)))
            scorer.overlay(n, image, result.panoptic)
            status, gt = scorer.score(row, result, image.shape[:2])
            if on_frame is not None:
                on_frame(scorer.sequence, result, gt if status == "scored" else None)
        tracker_used = pipeline.tracker.cfg if pipeline.tracker is not None else None
        backend_info = {"name": pipeline.backend.name, "device": str(pipeline.device),
                        "selection_reason": getattr(pipeline.backend, "selection_reason", "")}

    reader = camera.reader
    metrics: dict[str, Any] = {
        "bag": str(bag), "image_topic": image_topic, "gt_topic": gt_topic,
        "model": str(model) if model is not None else None, "backend": backend_info,
        "storage": reader.storage, "salvaged": reader.salvaged, "read_error": reader.error,
        "open_error": reader.open_error,
        "gt_messages": len(camera.gts),
        "gt_unmatched": len(set(camera.gts) - {stamp_ns(r.msg.header) for r in images}),
        "gt_duplicate_stamps": camera.gt_duplicates, "gt_undecodable_messages": camera.gt_undecodable,
        "tracker": asdict(tracker_used) if tracker_used is not None else None,
        **scorer.metrics(warmup),
    }
    lat = scorer.latency(warmup)
    metrics["latency_warmup_frames_excluded"] = len(scorer.timings) - len(lat)
    if sums is not None:
        sums.update(scorer.scores.sums(), latency=[{k: float(v) for k, v in t.items()} for t in lat])
    metrics["per_frame"] = scorer.per_frame
    metrics["elapsed_s"] = time.time() - started
    if out_writer is not None:
        metrics["output_bag"] = {"path": str(out_writer.path), "topic": output_topic,
                                 "messages": out_writer.counts[output_topic]}
    return finish_metrics(metrics, out_dir, scorer.overlays, classes, plots)
