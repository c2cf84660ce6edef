"""Panoptic maps written as COCO panoptic files, the format ``pq_compute`` (and panopticapi) evaluates (§4.2).

A file set is a JSON (``annotations`` with ``image_id``, ``file_name``, ``segments_info``; ``categories``) and a
folder of RGB PNGs holding ids R + 256·G + 256²·B. In-memory maps follow the Cityscapes convention of
``docs/ARCHITECTURE.md`` and are written with their ids unchanged (stuff = category id, thing = category id ·
1000 + k), so the PNG of a prediction reads back as the same map.

* :class:`CocoPanopticFiles` writes predictions (``iscrowd`` always 0) or ground truth (a thing id below 1000
  is a crowd region, as in the readers of :mod:`hle_core.data.coco_panoptic`).
* :func:`dataset_ground_truth` finds the COCO panoptic ground truth a data set on disk already has (COCO
  layout, or ``cityscapesPanopticParser`` output for Cityscapes), so predictions are scored against the
  original files when possible.

Ids, PNGs and JSON go through :mod:`hle_core.panoptic_io`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..config import ClassTable
from ..data.cityscapes import cityscapes_panoptic_paths
from ..data.coco_panoptic import coco_paths
from ..data.sample import segments_from_panoptic
from ..panoptic_io import load_panoptic_json, write_panoptic_json, write_panoptic_png

__all__ = ["CocoPanopticFiles", "GroundTruthFiles", "dataset_ground_truth", "subset_ground_truth"]


@dataclass(frozen=True)
class GroundTruthFiles:
    """A COCO panoptic ground truth: ``json`` path, PNG ``folder`` and the ``image_ids`` it annotates (in order)."""

    json: Path
    folder: Path
    image_ids: tuple


class CocoPanopticFiles:
    """Writes Cityscapes-convention panoptic maps as a COCO panoptic JSON + PNG folder.

    Args:
        json_path: the JSON written by :meth:`close`; the PNGs go to ``png_dir`` (default: ``json_path``
            without ``.json``, the folder ``pq_compute`` / panopticapi look in by default).
        classes: the categories (``ClassTable``) the maps' ids refer to; written as the JSON ``categories``.
        ground_truth: True: thing ids below 1000 are crowd regions (``iscrowd`` 1); False (predictions):
            every segment has ``iscrowd`` 0.
    """

    def __init__(self, json_path: str | Path, classes: ClassTable, png_dir: str | Path | None = None, *,
                 ground_truth: bool = False) -> None:
        self.json_path = Path(json_path)
        self.png_dir = Path(png_dir) if png_dir is not None else self.json_path.with_suffix("")
        self.classes, self.ground_truth = classes, ground_truth
        self.annotations: list[dict[str, Any]] = []
        self.images: list[dict[str, Any]] = []
        self.png_dir.mkdir(parents=True, exist_ok=True)

    def add(self, image_id: int | str, file_name: str, panoptic: np.ndarray,
            scores: Mapping[int, float] | None = None) -> dict[str, Any]:
        """Write one (H, W) integer panoptic map as ``<png_dir>/<file_name>``; returns its annotation.

        ``scores``: optional panoptic id -> confidence, stored as each segment's ``score`` (ignored by PQ).
        """
        pan = np.asarray(panoptic)
        if pan.ndim != 2 or pan.dtype.kind not in "iu":
            raise ValueError(f"panoptic map of image {image_id!r} must be an (H, W) integer array, got shape "
                             f"{pan.shape} dtype {pan.dtype}")
        segments_info = []
        for s in segments_from_panoptic(pan, self.classes):                # sorted by id, void excluded
            info = s.to_coco()
            if not self.ground_truth:
                info["iscrowd"] = 0
                if scores is not None and s.id in scores:
                    info["score"] = float(scores[s.id])
            segments_info.append(info)
        write_panoptic_png(self.png_dir / file_name, pan)
        ann = {"image_id": image_id, "file_name": file_name, "segments_info": segments_info}
        self.annotations.append(ann)
        self.images.append({"id": image_id, "file_name": file_name, "height": int(pan.shape[0]),
                            "width": int(pan.shape[1])})
        return ann

    def close(self) -> Path:
        """Write the JSON (``images``, ``annotations``, ``categories``); returns its path."""
        cats = [{"id": c.id, "name": c.name, "isthing": int(c.isthing), "color": list(c.color)}
                for c in self.classes.classes]
        return write_panoptic_json(self.json_path, self.images, self.annotations, cats)


def _read_json(path: Path) -> dict[str, Any]:
    return load_panoptic_json(path, "ground-truth", require=("annotations", "categories"))


def dataset_ground_truth(root: str | Path, format: str, split: str,
                         classes: ClassTable | None = None) -> GroundTruthFiles | None:
    """The data set's own COCO panoptic ground truth, or None when it has none usable.

    COCO layout: ``annotations/panoptic_<split>.json`` + folder; Cityscapes: the ``cityscapesPanopticParser``
    files ``gtFine/cityscapes_panoptic_<split>.json`` + folder (absent when only ``gtFine`` instanceIds exist).
    With ``classes``, None is also returned when a class is not a ground-truth category with the same thing
    flag (predictions of it could not be scored against these files).
    """
    if format == "coco":
        json_path, folder, _ = coco_paths(root, split)
    elif format == "cityscapes":
        json_path, folder, _ = cityscapes_panoptic_paths(root, split)
    else:
        raise ValueError(f"format must be 'coco' or 'cityscapes', got {format!r}")
    if not json_path.is_file() or not folder.is_dir():
        return None
    data = _read_json(json_path)
    if classes is not None:
        gt_thing = {int(c["id"]): c.get("isthing", 0) == 1 for c in data["categories"]}
        if any(gt_thing.get(c.id) != c.isthing for c in classes.classes):
            return None
    return GroundTruthFiles(json_path, folder, tuple(a["image_id"] for a in data["annotations"]))


def subset_ground_truth(gt: GroundTruthFiles, image_ids: Sequence, out_json: str | Path) -> GroundTruthFiles:
    """A copy of ``gt``'s JSON restricted to ``image_ids`` (same PNG folder), e.g. to score the first N images."""
    data = _read_json(gt.json)
    keep = set(image_ids)
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in keep]
    if "images" in data:
        data["images"] = [im for im in data["images"] if im.get("id") in keep]
    out_json = Path(out_json)
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(data))
    return GroundTruthFiles(out_json, gt.folder, tuple(a["image_id"] for a in data["annotations"]))
