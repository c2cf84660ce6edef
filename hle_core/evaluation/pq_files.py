"""Panoptic quality of COCO panoptic files, exactly as panopticapi's ``pq_compute`` (paper §4.2).

:func:`pq_compute` reads the two JSON files, pairs predictions with ground-truth annotations by ``image_id`` and
evaluates every pair with :func:`evaluate_coco_pair`: decode both PNGs (:func:`hle_core.panoptic_io.
read_panoptic_png`), check them against their ``segments_info``, build the joint histogram and match
(:func:`hle_core.evaluation.pq.image_stats`). With several workers the pairs run on a thread pool: PNG decoding
(OpenCV), the id lookup and the histogram release the GIL, so threads decode in parallel and overlap the
matching of other images, without the start-up of worker processes. Each image's statistics are added in image
order, so the numbers do not depend on the number of workers (bit for bit).

Only NumPy and OpenCV are imported here (``hle evaluate pq`` starts without torch).
"""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..config import VOID_ID
from ..panoptic_io import (MAX_SEGMENT_ID, MissingPredictionError, PanopticFileNotFoundError, PanopticFormatError,
                           SegmentMismatchError, UnknownCategoryError, load_panoptic_json, read_panoptic_png)
from .pq import Categories, PQStats, SegmentTable, _joint_histogram, image_stats

__all__ = ["segment_table", "evaluate_coco_pair", "pq_compute"]


def segment_table(ann: Mapping[str, Any], categories: Categories, cat_index: Mapping[int, int], what: str,
                  use_json_area: bool) -> SegmentTable:
    """Segments of one COCO annotation's ``segments_info``, validated (ids distinct, > 0, < 2^24; known
    categories). ``use_json_area``: take the JSON ``area`` when every segment has one (ground truth)."""
    try:
        infos = ann["segments_info"]
        ids = np.array([int(s["id"]) for s in infos], np.int64)
        cat_ids = [int(s["category_id"]) for s in infos]
        crowd = np.array([int(s.get("iscrowd", 0)) == 1 for s in infos], bool)
        area = np.array([int(s["area"]) for s in infos], np.int64) if use_json_area and all(
            "area" in s for s in infos) else None
    except (KeyError, TypeError, ValueError) as exc:
        raise PanopticFormatError(f"{what}: malformed segments_info (need 'id' and 'category_id'): {exc!r}") from exc
    if len(np.unique(ids)) != len(ids):
        raise PanopticFormatError(f"{what}: duplicate segment ids in segments_info: {sorted(ids.tolist())}")
    if len(ids) and (ids.min() <= VOID_ID or ids.max() >= MAX_SEGMENT_ID):
        raise PanopticFormatError(f"{what}: segment ids must lie in [1, 2^24), got {ids.tolist()}")
    cat = np.empty(len(ids), np.int64)
    for s, cid in enumerate(cat_ids):
        if cid not in cat_index:
            raise UnknownCategoryError(f"{what}: segment with ID {int(ids[s])} has unknown category_id {cid} "
                                       f"(categories of the ground-truth JSON: {list(categories.ids)})")
        cat[s] = cat_index[cid]
    return SegmentTable(ids, cat, crowd, area)


class _Buffers(threading.local):
    """Per-thread RGBA decode buffers, one per role, reused from image to image (a fresh 2 MB array per image
    costs page faults)."""

    def __init__(self) -> None:
        self.rgba: dict[str, np.ndarray] = {}


_BUFFERS = _Buffers()


def evaluate_coco_pair(gt_ann: Mapping[str, Any], pred_ann: Mapping[str, Any], gt_folder: str | Path,
                       pred_folder: str | Path, categories: Categories, stats: PQStats | None = None) -> PQStats:
    """Add one COCO panoptic ground-truth / prediction annotation pair (PNGs under the folders) to ``stats``.

    Ground-truth areas come from the JSON ``area`` when every segment has one (as panopticapi does); predicted
    areas are counted in the PNG.

    Raises:
        PanopticFileNotFoundError: a PNG is missing.
        SegmentMismatchError: a PNG holds an id its ``segments_info`` lacks, or the other way round.
        UnknownCategoryError: a segment's ``category_id`` is not among ``categories``.
        PanopticFormatError: undecodable PNG, GT and prediction PNG sizes differ, malformed ``segments_info``.
    """
    image_id = gt_ann.get("image_id")
    cat_index = categories.index
    paths = {}
    tables = {}
    for role, ann, folder in (("ground truth", gt_ann, gt_folder), ("prediction", pred_ann, pred_folder)):
        if "file_name" not in ann:
            raise PanopticFormatError(f"{role} annotation of image {image_id!r} has no 'file_name'")
        paths[role] = Path(folder) / ann["file_name"]
        tables[role] = segment_table(ann, categories, cat_index,
                                     f"{role} of the image with ID {image_id!r} ({paths[role]})",
                                     use_json_area=role == "ground truth")
    ids = {}
    for role in ("ground truth", "prediction"):    # decoded into this thread's reusable RGBA buffers
        ids[role] = read_panoptic_png(paths[role], out=_BUFFERS.rgba.get(role))
        base = ids[role].base
        _BUFFERS.rgba[role] = base if base is not None else ids[role]
    gt_ids, pred_ids = ids["ground truth"], ids["prediction"]
    if gt_ids.shape != pred_ids.shape:
        raise PanopticFormatError(f"image {image_id!r}: ground truth {paths['ground truth']} is "
                                  f"{gt_ids.shape[1]}x{gt_ids.shape[0]} but prediction {paths['prediction']} is "
                                  f"{pred_ids.shape[1]}x{pred_ids.shape[0]} (WxH)")
    gt, pred = tables["ground truth"], tables["prediction"]
    inter, gt_unknown, pred_unknown = _joint_histogram(gt_ids, pred_ids, gt.ids, pred.ids)
    for role, unknown, absent in (("prediction", pred_unknown, pred.ids[inter[:, 1:].sum(0) == 0]),
                                  ("ground truth", gt_unknown, gt.ids[inter[1:, :].sum(1) == 0])):
        if len(unknown):
            raise SegmentMismatchError(
                f"In the image with ID {image_id!r} segment(s) with ID {unknown.tolist()} are presented in the "
                f"{role} PNG {paths[role]} and not presented in its JSON segments_info.")
        if len(absent):
            raise SegmentMismatchError(
                f"In the image with ID {image_id!r} the following segment IDs {absent.tolist()} are presented in "
                f"the {role} JSON segments_info and not presented in the PNG {paths[role]}.")
    return image_stats(inter, gt, pred, categories, stats)


def _available_cpus() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # pragma: no cover - macOS / Windows
        return os.cpu_count() or 1


def pq_compute(gt_json_file: str | Path, pred_json_file: str | Path, gt_folder: str | Path | None = None,
               pred_folder: str | Path | None = None, *, workers: int | None = None,
               return_stats: bool = False) -> dict[str, Any] | tuple[dict[str, Any], PQStats]:
    """panopticapi's ``pq_compute`` on COCO panoptic files: same arguments, same result keys (plus extras).

    Folders default to the JSON path without ``.json``. Predictions are matched to ground-truth annotations by
    ``image_id`` (int or str, compared as given; a later duplicate wins, as in panopticapi); predictions of
    images not in the ground truth are ignored.

    Args:
        workers: threads over images (None: the CPU cores available; 1: this thread only). The statistics of
            each image are added in image order, so every ``workers`` gives the same numbers.
        return_stats: also return the accumulated :class:`PQStats`.
    Raises:
        MissingPredictionError: a ground-truth image has no prediction. See :func:`evaluate_coco_pair` for more.
    """
    gt_json = load_panoptic_json(gt_json_file, "ground-truth")
    pred_json = load_panoptic_json(pred_json_file, "prediction")
    gt_folder = Path(str(gt_json_file).replace(".json", "") if gt_folder is None else gt_folder)
    pred_folder = Path(str(pred_json_file).replace(".json", "") if pred_folder is None else pred_folder)
    for what, folder in (("ground-truth", gt_folder), ("prediction", pred_folder)):
        if not folder.is_dir():
            raise PanopticFileNotFoundError(f"folder with {what} segmentations does not exist: {folder}")
    if "categories" not in gt_json:
        raise PanopticFormatError(f"ground-truth JSON {gt_json_file} has no 'categories' list")
    categories = Categories.from_coco(gt_json["categories"])

    pred_by_image = {ann.get("image_id"): ann for ann in pred_json["annotations"]}
    pairs = []
    for gt_ann in gt_json["annotations"]:
        image_id = gt_ann.get("image_id")
        if image_id not in pred_by_image:
            raise MissingPredictionError(f"no prediction for the image with id: {image_id!r} (in "
                                         f"{pred_json_file}; ids are compared as given, {type(image_id).__name__})")
        pairs.append((gt_ann, pred_by_image[image_id]))

    workers = _available_cpus() if workers is None else int(workers)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    workers = min(workers, max(len(pairs), 1))
    stats = PQStats(categories)
    if workers == 1:
        for gt_ann, pred_ann in pairs:
            evaluate_coco_pair(gt_ann, pred_ann, gt_folder, pred_folder, categories, stats)
    else:
        from concurrent.futures import ThreadPoolExecutor

        def one(pair: tuple) -> PQStats:
            return evaluate_coco_pair(pair[0], pair[1], gt_folder, pred_folder, categories, PQStats(categories))

        # image order: 0 + x == x, so the sums are those of one thread, whatever order the threads finish in
        pool = ThreadPoolExecutor(workers, thread_name_prefix="pq")
        try:
            for part in pool.map(one, pairs):
                stats += part
        finally:                                    # on an error, the images not started yet are dropped
            pool.shutdown(wait=True, cancel_futures=True)
    results = stats.results()
    return (results, stats) if return_stats else results
