"""Evaluate a checkpoint on a panoptic data set on disk in one go (paper §4.2): predict (optionally with flip
test-time augmentation), write the predictions as COCO panoptic files, score them with :func:`.pq_files.pq_compute`.

The ground truth scored against is the data set's own COCO panoptic files when it has them (COCO layout;
``cityscapesPanopticParser`` output for Cityscapes) and they cover the checkpoint's classes, exactly as
panopticapi would be run on a release; otherwise (Cityscapes ``gtFine`` instanceIds only, or other
categories) the ground truth the data set reader produces is written beside the predictions first.

Prediction is the pipeline's two stages (:meth:`hle_core.pipeline.Pipeline.infer` then
:meth:`~hle_core.pipeline.Pipeline.finish`, decoding where the network ran), as in the node and ``hle bag-eval``.
Used by ``hle evaluate --checkpoint C --data DIR``; ``hle tune-decoder`` shares :func:`load_eval_inputs`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

from ..config import ConfigError, HLEConfig, resolve_device
from .coco_export import CocoPanopticFiles, GroundTruthFiles, dataset_ground_truth, subset_ground_truth
from .pq import PQStats
from .pq_files import pq_compute
from .predict import evaluation_pipeline

__all__ = ["CheckpointEvaluation", "decoder_section", "load_eval_inputs", "sample_names", "evaluate_checkpoint"]


@dataclass
class CheckpointEvaluation:
    """What :func:`evaluate_checkpoint` produced: panopticapi-shaped ``results`` (plus PQ†, PC, mIoU), the
    summed ``stats``, the files written and read, and ``info`` (settings, timings) for ``results.json``."""

    results: dict[str, Any]
    stats: PQStats
    predictions_json: Path
    predictions_folder: Path
    ground_truth: GroundTruthFiles
    info: dict[str, Any] = field(default_factory=dict)


def decoder_section(path: str | Path) -> dict[str, Any]:
    """The ``hle: decoder:`` (or top-level ``decoder:``) mapping of a YAML file, e.g. ``hle tune-decoder``'s
    output; apply it with ``cfg.override({"decoder": section})``."""
    from ..config import read_yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"decoder config not found: {path}")
    data = read_yaml(path) or {}
    section = data.get("hle", data) if isinstance(data, dict) else None
    section = section.get("decoder") if isinstance(section, dict) else None
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: no 'hle: decoder:' mapping (expected e.g. the output of hle tune-decoder)")
    return section


def load_eval_inputs(checkpoint: str | Path, device: torch.device, decoder_yaml: str | Path | None = None,
                     decoder: Mapping[str, Any] | None = None,
                     test_scale: float | None = None) -> tuple[torch.nn.Module, HLEConfig]:
    """Network (eval mode, on ``device``) and its embedded config, with decoder thresholds overridden by the
    ``hle: decoder:`` section of ``decoder_yaml`` and then by ``decoder``, and ``model.test_scale`` by
    ``test_scale`` (None: the checkpoint's own).

    Raises:
        CheckpointError: missing, corrupt or incompatible checkpoint (the message names the file).
        ConfigError: a bad decoder override.
    """
    from ..model import load_model

    model = load_model(checkpoint, map_location=device)
    cfg = model.cfg.copy()
    if decoder_yaml is not None:
        cfg = cfg.override({"decoder": decoder_section(decoder_yaml)})
    if decoder:
        cfg = cfg.override({"decoder": dict(decoder)})
    if test_scale is not None:
        cfg = cfg.override({"model": {"test_scale": float(test_scale)}})
    return model, cfg


def sample_names(dataset) -> list[tuple[int | str, str]]:
    """(image id, PNG file name) of every sample of a :class:`hle_core.data.PanopticDataset`, in order: the
    ground truth's own ``file_name`` for COCO-style readers, ``<image id>.png`` otherwise."""
    reader = dataset.reader
    if hasattr(reader, "annotations"):
        return [(a["image_id"], a["file_name"]) for a in reader.annotations]
    return [(i, f"{i}.png") for i in reader.image_ids]


def evaluate_checkpoint(checkpoint: str | Path, data: str | Path, out_dir: str | Path, *, format: str = "coco",
                        split: str = "val", flip: bool = False, decoder_yaml: str | Path | None = None,
                        device: str = "auto", limit: int | None = None, workers: int | None = None,
                        progress: bool = True, test_scale: float | None = None) -> CheckpointEvaluation:
    """Predict every image of the data set ``data`` (``format``, ``split``) with the checkpoint, write
    ``<out_dir>/predictions.json`` + ``predictions/`` (COCO panoptic) and score them with ``pq_compute``.

    Args:
        flip: flip test-time augmentation (``Pipeline(flip=True)``, :func:`hle_core.pipeline.flip_average`).
        device: :data:`hle_core.config.DEVICE_SYNTAX` (:func:`hle_core.config.resolve_device`).
        decoder_yaml: YAML whose ``hle: decoder:`` section overrides the checkpoint's thresholds.
        limit: evaluate only the first ``limit`` images (the ground truth is restricted to them).
        workers: processes of the scoring (``pq_compute``; None: all cores).
        test_scale: resize factor of the images before the network (``model.test_scale``; None: the checkpoint's).
    Raises:
        CheckpointError, FileNotFoundError (missing data set files), PanopticFormatError, ConfigError.
    """
    from ..data import PanopticDataset

    t_start = time.perf_counter()
    data, out_dir = Path(data), Path(out_dir)
    if not data.is_dir():
        raise FileNotFoundError(f"data set folder not found: {data}")
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit must be >= 1, got {limit}")
    dev = resolve_device(device)
    model, cfg = load_eval_inputs(checkpoint, dev, decoder_yaml, test_scale=test_scale)
    dataset = PanopticDataset(data, format, cfg.classes, split=split, mean=cfg.model.mean, std=cfg.model.std)
    names = sample_names(dataset)
    if limit is not None and limit < len(dataset):
        dataset = torch.utils.data.Subset(dataset, range(limit))
        names = names[:limit]

    out_dir.mkdir(parents=True, exist_ok=True)
    gt = dataset_ground_truth(data, format, split, cfg.classes)
    gt_writer = None
    if gt is None:                       # no usable COCO panoptic GT on disk: write the reader's ground truth
        gt_writer = CocoPanopticFiles(out_dir / "ground_truth.json", cfg.classes, ground_truth=True)
    elif limit is not None and len(names) < len(gt.image_ids):
        gt = subset_ground_truth(gt, [i for i, _ in names], out_dir / "ground_truth.json")
    pred_writer = CocoPanopticFiles(out_dir / "predictions.json", cfg.classes)

    pipe = evaluation_pipeline(model, cfg, flip=flip, device=dev)
    t_predict = time.perf_counter()
    items = range(len(dataset))
    if progress:
        from tqdm import tqdm

        items = tqdm(items, desc="predict", unit="img", dynamic_ncols=True)
    for i in items:
        sample = dataset[i]
        image_id, file_name = names[i]
        (frame,), _ = pipe.infer([sample["image"]])
        result = pipe.finish(frame)                                        # decoded where the network ran
        scores = dict(zip(result.ids.tolist(), result.scores.tolist()))
        pred_writer.add(image_id, file_name, result.panoptic, scores)
        if gt_writer is not None:
            gt_writer.add(image_id, file_name, sample["panoptic"].numpy())
    pred_json = pred_writer.close()
    if gt_writer is not None:
        gt = GroundTruthFiles(gt_writer.close(), gt_writer.png_dir, tuple(i for i, _ in names))
    t_score = time.perf_counter()
    results, stats = pq_compute(gt.json, pred_json, gt.folder, pred_writer.png_dir, workers=workers,
                                return_stats=True)
    t_end = time.perf_counter()
    info = {
        "checkpoint": str(checkpoint), "data": str(data), "format": format, "split": split, "flip": bool(flip),
        "images": len(names), "device": str(dev), "decoder": cfg.to_dict()["decoder"],
        "test_scale": cfg.model.test_scale,
        "ground_truth_json": str(gt.json), "ground_truth_folder": str(gt.folder),
        "ground_truth_written": gt_writer is not None,
        "predictions_json": str(pred_json), "predictions_folder": str(pred_writer.png_dir),
        "seconds": {"load": round(t_predict - t_start, 3), "predict_and_write": round(t_score - t_predict, 3),
                    "score": round(t_end - t_score, 3)},
    }
    return CheckpointEvaluation(results, stats, pred_json, pred_writer.png_dir, gt, info)
