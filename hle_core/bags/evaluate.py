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
"""
from __future__ import annotations

import json
import logging
import math
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..config import LABEL_DIVISOR
from ..image_codec import ImageConversionError, as_rgb, compressed_to_rgb, image_to_array, image_to_rgb
from .metrics import EmbeddingStability, latency_percentiles
from .reader import BagError, BagReader
from .types import COMPRESSED_TYPE, IMAGE_TYPE, PANOPTIC_TYPE, stamp_ns

__all__ = ["evaluate_bag", "VideoScorer", "DEFAULT_MAX_PIXELS", "OUTPUT_TOPIC", "VIDEO_DIVISOR", "default_output_bag",
           "video_metrics_from_sums"]

#: Larger images are rejected (``too_large``); the node's ``max_pixels`` default (config/panoptic.yaml).
DEFAULT_MAX_PIXELS = 4096 * 4096
#: Topic of the output bag: the node's ``~/panoptic`` under its default name.
OUTPUT_TOPIC = "/hle_panoptic/panoptic"
#: Label divisor of the video metrics: predicted thing ids become category × VIDEO_DIVISOR + track id, so track
#: ids up to 65535 fit (the 1000 of the Cityscapes encoding would overflow on long sequences).
VIDEO_DIVISOR = 1 << 16
#: Shown in the report, one line per frame status / reason.
REASON_TEXT = {
    "unreadable": "declared in the bag's index but not readable (damaged bag, see read_error)",
    "deserialize": "message bytes do not deserialise",
    "msgtype": "not a sensor_msgs/msg/Image or CompressedImage",
    "encoding": "image encoding not accepted (rgb8, bgr8, rgba8, bgra8, mono8)",
    "empty": "image has no pixels",
    "step": "row step shorter than a row",
    "size": "data length differs from step x height",
    "too_large": "more pixels than max_pixels (the image, or the padded / resized network input made from it)",
    "aspect": "long side more than 16 times the short side (network input mostly padding)",
    "decode": "compressed image does not decode",
    "pipeline_error": "the pipeline raised",
    "no_gt_topic": "no ground-truth topic given",
    "no_gt": "no ground-truth message with the image's header stamp",
    "gt_deserialize": "ground-truth message bytes do not deserialise",
    "gt_encoding": "ground truth is not a readable 32SC1 image",
    "gt_shape": "ground truth size differs from the image",
    "gt_labels": "ground truth holds unknown categories or out-of-range ids",
    "not_received": "no node output with the image's header stamp (dropped or rejected by the node)",
    "bad_prediction": "the recorded node output is unreadable or its label image has the wrong size",
}


def default_output_bag(out_dir: str | Path) -> Path:
    """Where ``--output-bag`` writes by default: ``<out_dir>_panoptic.mcap`` beside the output folder."""
    out_dir = Path(out_dir)
    return out_dir.parent / f"{out_dir.name}_panoptic.mcap"


def _json_safe(x: Any) -> Any:
    """NaN / inf → None, numpy scalars → Python, dict keys → str (strict JSON)."""
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _example(store: dict[str, list], reason: str, text: str, limit: int = 3) -> None:
    store.setdefault(reason, [])
    if len(store[reason]) < limit:
        store[reason].append(text)


def _to_video_ids(gt: np.ndarray) -> np.ndarray:
    """Cityscapes ids (divisor 1000) → the :data:`VIDEO_DIVISOR` encoding (things only; stuff / crowd / void kept)."""
    g = gt.astype(np.int64)
    return np.where(g >= LABEL_DIVISOR, (g // LABEL_DIVISOR) * VIDEO_DIVISOR + g % LABEL_DIVISOR, g)


@dataclass
class _BagContents:
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


def _read_bag(bag: str | Path, image_topic: str, gt_topic: str | None, log: Any) -> _BagContents:
    """Every message of the two topics, with the image messages that cannot be used already counted."""
    reader = BagReader(bag).open()
    try:
        reader.require_topics([image_topic] + ([gt_topic] if gt_topic else []))
        info = reader.topics.get(image_topic)
        if info is not None and info.msgtype and info.msgtype not in (IMAGE_TYPE, COMPRESSED_TYPE):
            raise BagError(f"topic {image_topic} of {bag} carries {info.msgtype}, expected {IMAGE_TYPE} or "
                           f"{COMPRESSED_TYPE}")
        out = _BagContents([], {}, Counter(), {}, 0, None, 0, 0, 0, reader)
        for rec in reader.messages([image_topic] + ([gt_topic] if gt_topic else [])):
            if rec.topic == image_topic:
                if rec.msg is None:
                    out.rejected["deserialize"] += 1
                    _example(out.examples, "deserialize", f"log time {rec.log_time}: {rec.error}")
                elif rec.msgtype not in (IMAGE_TYPE, COMPRESSED_TYPE):
                    out.rejected["msgtype"] += 1
                    _example(out.examples, "msgtype", f"log time {rec.log_time}: {rec.msgtype}")
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
        _example(out.examples, "unreadable", f"{out.total - out.read} of {out.total} declared messages not "
                                             f"readable: {reader.error or reader.open_error}")
    if reader.error:
        log.warning(f"bag {bag}: {reader.error}")
    return out


class VideoScorer:
    """STQ / VPQ / ID switches per sequence of tracked predictions: the tracking half of bag-eval's scores.

    Shared by :class:`_Scorer` (``hle bag-eval``) and :mod:`hle_core.tracking.tune` (``hle tune-tracker``), so a
    tracker configuration gets identical numbers from both. Predicted segments are relabelled with their track
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

        gt_video = _to_video_ids(gt).astype(np.int32)                  # category < 1000: fits int32
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
        "confusion"}, "vpq": {window size: {"tp", "fp", "fn", "iou", "num_windows"}}, "id_switches"}``.

        ``aq_sum`` = Σ over sequences of AQ·#tubes (the numerator of the overall AQ), ``confusion`` the
        ``(K+1, K+1)`` semantic confusion of STQ's SQ summed over sequences; VPQ's per-window-size category sums.
        Statistics of disjoint sets of sequences (e.g. different bags) add up; :func:`video_metrics_from_sums`
        turns a sum back into STQ / VPQ. Used by ``hle bag-eval --bags`` (:mod:`hle_core.bags.fleet`).
        """
        k = len(self.stq._cats.ids)
        confusion = np.zeros((k + 1, k + 1), np.int64)
        aq_sum, tubes = 0.0, 0
        if self.stq._seq:                       # per-sequence state of the accumulator (AQ numerator: AQ·#tubes)
            for key, seq in self.stq.result()["per_sequence"].items():
                aq_sum += seq["AQ"] * seq["num_tubes"]
                tubes += seq["num_tubes"]
                confusion += self.stq._seq[key]["confusion"]
        out: dict[str, Any] = {"stq": {"aq_sum": aq_sum, "tubes": tubes, "confusion": confusion.tolist()},
                               "id_switches": self.id_switches()}
        if self.vpq is not None:
            out["vpq"] = {str(n): {"tp": s.tp.tolist(), "fp": s.fp.tolist(), "fn": s.fn.tolist(),
                                   "iou": s.iou.tolist(), "num_windows": int(self.vpq._windows[n])}
                          for n, s in self.vpq._stats.items()}
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
    from ..evaluation.video import VPQAccumulator, _class_iou

    k = len(category_ids)
    stq = sums["stq"]
    iou = _class_iou(np.asarray(stq["confusion"], np.int64), k)
    aq = stq["aq_sum"] / stq["tubes"] if stq["tubes"] else 0.0
    sq = float(np.nanmean(iou)) if np.any(~np.isnan(iou)) else float("nan")
    out: dict[str, Any] = {"stq": {"STQ": float(np.sqrt(aq * sq)), "AQ": aq, "SQ_sem": sq, "tubes": stq["tubes"]},
                           "id_switches": int(sums["id_switches"])}
    if "vpq" in sums:
        acc = VPQAccumulator(list(category_ids), list(is_thing), window_sizes=[int(n) for n in sums["vpq"]],
                             label_divisor=VIDEO_DIVISOR)
        for n, w in sums["vpq"].items():                 # the accumulator's state, summed: its result() as is
            for f in ("tp", "fp", "fn"):
                setattr(acc._stats[int(n)], f, np.asarray(w[f], np.int64))
            acc._stats[int(n)].iou = np.asarray(w["iou"], np.float64)
            acc._windows[int(n)] = int(w["num_windows"])
        v = acc.result()
        out["vpq"] = {"VPQ": v["VPQ"], "VPQ_things": v["VPQ_things"], "VPQ_stuff": v["VPQ_stuff"],
                      "windows": {n: w["num_windows"] for n, w in v["per_window"].items()}}
    return out


class _Scorer:
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
                _example(examples, "gt_labels", f"stamp {row.get('stamp_ns')}: {exc}")
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


def evaluate_bag(bag: str | Path, image_topic: str, *, gt_topic: str | None = None, model: str | Path | None = None,
                 pipeline: Any = None, backend: str = "auto", device: str = "auto",
                 input_size: tuple[int, int] | None = None, resize: str = "letterbox", tracking: bool = True,
                 tracker: Any = None, decoder: Any = None, out_dir: str | Path | None = None,
                 output_bag: str | Path | None = None, overwrite: bool = False,
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
        output_bag: write the node's ``PanopticSegmentation`` messages (topic :data:`OUTPUT_TOPIC`) to this bag.
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
        sums: a dict to fill with the bag's summable statistics (``_Scorer.sums``: PQ TP / FP / FN / IoU sums,
            STQ's association and segmentation terms, VPQ's window sums, ID switches) plus ``latency``: the
            per-frame ``timings_ms`` after the warm-up frames. ``hle bag-eval --bags`` adds these over bags
            (:mod:`hle_core.bags.fleet`); None: not collected. The returned metrics are the same either way.
    Returns:
        The metrics dict (also written as ``metrics.json``), see the module docstring for the counts.
    Raises:
        FileNotFoundError: no bag / model file. BagError: a topic is missing from an intact bag, or the image
        topic is not an image type. ValueError: neither ``model`` nor ``pipeline``.
    """
    from tqdm import tqdm

    log = logger if logger is not None else logging.getLogger("hle_core.bags")
    if pipeline is None and model is None:
        raise ValueError("evaluate_bag needs a model file or a pipeline")
    if model is not None and not Path(model).is_file():
        raise FileNotFoundError(f"model file not found: {model}")
    started = time.time()
    if output_bag is not None:                  # refuse before any work: never replace the input or a non-bag
        from .writer import check_target

        check_target(output_bag, overwrite=overwrite, protect=(bag,))
    bag_data = _read_bag(bag, image_topic, gt_topic, log)
    images, rejected, examples = bag_data.images, bag_data.rejected, bag_data.examples

    gt_status: Counter = Counter()
    per_frame: list[dict[str, Any]] = []
    timings: list[dict[str, float]] = []
    overlays: list[tuple[int, np.ndarray, np.ndarray]] = []
    with ExitStack() as stack:
        out_writer = None
        if output_bag is not None:
            from .types import hle_typestore
            from .writer import BagWriter, panoptic_message

            out_writer = BagWriter(output_bag, typestore=hle_typestore(), overwrite=overwrite, protect=(bag,))
            stack.callback(out_writer.close)
            out_writer.add_topic(OUTPUT_TOPIC, PANOPTIC_TYPE)
        if pipeline is None:
            from ..runtime import build_pipeline
            from ..tracking import TrackerConfig

            tracker_cfg = (tracker if tracker is not None else TrackerConfig()) if tracking else None
            pipeline = build_pipeline(model, backend, device=device, input_size=input_size, resize=resize,
                                      decoder=decoder, tracker=tracker_cfg, logger=log)
            stack.callback(pipeline.close)
        classes = pipeline.classes
        scorer = _Scorer(classes)
        fit = getattr(pipeline, "input_size", None)     # max_pixels bounds the network input made from an image too

        # header-stamp order; a stamp gap or a new frame_id starts a sequence (tracker reset)
        order = sorted(range(len(images)), key=lambda i: (stamp_ns(images[i].msg.header), images[i].log_time, i))
        overlay_at = set(np.linspace(0, len(order) - 1, num_overlays).round().astype(int).tolist()) \
            if order and num_overlays > 0 else set()
        sequence, prev_stamp, prev_frame_id = -1, None, None
        for n, i in enumerate(tqdm(order, desc=f"bag-eval {Path(bag).name}", unit="frame", disable=not progress)):
            rec = images[i]
            msg = rec.msg
            stamp, frame_id = stamp_ns(msg.header), msg.header.frame_id
            if prev_stamp is None or stamp - prev_stamp > sequence_gap_s * 1e9 or frame_id != prev_frame_id:
                sequence += 1
                pipeline.reset_tracks()
                scorer.stability.gap()
            prev_stamp, prev_frame_id = stamp, frame_id
            row: dict[str, Any] = {"index": n, "stamp_ns": stamp, "sequence": sequence}
            per_frame.append(row)
            try:
                image = compressed_to_rgb(msg, max_pixels, fit) if rec.msgtype == COMPRESSED_TYPE \
                    else image_to_rgb(msg, max_pixels, fit)
                result = pipeline.process(image)
            except Exception as exc:                   # counted by reason, as the node counts its rejections
                reason = exc.reason if isinstance(exc, ImageConversionError) else "pipeline_error"
                rejected[reason] += 1
                _example(examples, reason, f"stamp {stamp}: {type(exc).__name__}: {exc}")
                row["status"] = f"rejected:{reason}"
                scorer.stability.gap()
                continue
            timings.append(dict(result.timings_ms))
            row.update(latency_ms=result.timings_ms.get("total"), segments=result.num_segments,
                       tracks=[int(t) for t in result.track_ids if t >= 0])
            if out_writer is not None:
                out_writer.write(OUTPUT_TOPIC, stamp, panoptic_message(
                    out_writer.typestore, msg.header, result, classes, pipeline.embedding_dim,
                    pipeline.backend.name, result.timings_ms.get("total", 0.0)))
            if n in overlay_at:
                overlays.append((n, as_rgb(image).copy(), result.panoptic.copy()))

            status, gt = _ground_truth(bag_data.gts, gt_topic, stamp, image.shape[:2], examples)
            status = scorer.score_frame(gt, status, result, row, sequence, examples)
            gt_status[status] += 1
            if on_frame is not None:
                on_frame(sequence, result, gt if status == "scored" else None)
        tracker_used = pipeline.tracker.cfg if pipeline.tracker is not None else None
        backend_info = {"name": pipeline.backend.name, "device": str(pipeline.device),
                        "selection_reason": getattr(pipeline.backend, "selection_reason", "")}

    frames_rejected = int(sum(rejected.values()))
    if len(timings) + frames_rejected != bag_data.total:                 # an invariant, not input validation
        raise AssertionError(f"frame accounting broken: {len(timings)} evaluated + {frames_rejected} rejected "
                             f"!= {bag_data.total} total")
    reader = bag_data.reader
    metrics: dict[str, Any] = {
        "bag": str(bag), "image_topic": image_topic, "gt_topic": gt_topic,
        "model": str(model) if model is not None else None, "backend": backend_info,
        "storage": reader.storage, "salvaged": reader.salvaged, "read_error": reader.error,
        "open_error": reader.open_error,
        "frames_total": bag_data.total, "frames_declared": bag_data.declared, "frames_read": bag_data.read,
        "frames_evaluated": len(timings), "frames_rejected": frames_rejected,
        "rejected_by_reason": dict(sorted(rejected.items())),
        "frames_scored": gt_status.get("scored", 0), "gt_status": dict(sorted(gt_status.items())),
        "gt_messages": len(bag_data.gts),
        "gt_unmatched": len(set(bag_data.gts) - {stamp_ns(r.msg.header) for r in images}),
        "gt_duplicate_stamps": bag_data.gt_duplicates, "gt_undecodable_messages": bag_data.gt_undecodable,
        "examples": examples,
        "sequences": sequence + 1, "sequence_gap_s": sequence_gap_s,
        "tracker": asdict(tracker_used) if tracker_used is not None else None,
        **scorer.result(),
    }
    lat = timings[warmup:] if len(timings) > warmup else timings
    metrics["latency_ms"] = latency_percentiles(lat)
    metrics["latency_warmup_frames_excluded"] = len(timings) - len(lat)
    if sums is not None:
        sums.update(scorer.sums(), latency=[{k: float(v) for k, v in t.items()} for t in lat])
    metrics["per_frame"] = per_frame
    metrics["elapsed_s"] = time.time() - started
    if out_writer is not None:
        metrics["output_bag"] = {"path": str(out_writer.path), "topic": OUTPUT_TOPIC,
                                 "messages": out_writer.counts[OUTPUT_TOPIC]}
    return finish_metrics(metrics, out_dir, overlays, classes, plots)


def finish_metrics(metrics: dict[str, Any], out_dir: str | Path | None, overlays: list, classes: Any,
                   plots: bool) -> dict[str, Any]:
    """Make ``metrics`` strict JSON; with ``out_dir`` also write ``report.md``, plots, overlays and ``metrics.json``
    there. Returns the metrics (with ``files`` when written)."""
    metrics = _json_safe(metrics)
    if out_dir is not None:
        from .report import write_report

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        metrics["files"] = write_report(metrics, out, overlays=overlays, classes=classes, plots=plots)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    return metrics


def _ground_truth(gts: dict[int, Any], gt_topic: str | None, stamp: int, shape: tuple[int, int],
                  examples: dict[str, list[str]]) -> tuple[str, np.ndarray | None]:
    """(status, (H, W) int64 ground truth or None) for the image stamped ``stamp`` of size ``shape``."""
    if not gt_topic:
        return "no_gt_topic", None
    rec = gts.get(stamp)
    if rec is None:
        return "no_gt", None
    msg = rec.msg
    if getattr(msg, "encoding", None) != "32SC1":
        _example(examples, "gt_encoding", f"stamp {stamp}: encoding {getattr(msg, 'encoding', rec.msgtype)!r}")
        return "gt_encoding", None
    try:
        gt = image_to_array(msg)
    except ImageConversionError as exc:
        _example(examples, "gt_encoding", f"stamp {stamp}: {exc}")
        return "gt_encoding", None
    if gt.shape != tuple(shape):
        _example(examples, "gt_shape", f"stamp {stamp}: ground truth {gt.shape} vs image {tuple(shape)}")
        return "gt_shape", None
    gt = gt.astype(np.int64)
    if gt.size and gt.min() < 0:
        _example(examples, "gt_labels", f"stamp {stamp}: negative ids")
        return "gt_labels", None
    return "scored", gt
