"""Panoptic samples in memory (paper §4.1 data sets), shared by the data-set readers and writers.

Every sample uses the Cityscapes convention of ``docs/ARCHITECTURE.md``: an ``int32`` map with void = 0, stuff
pixel = category id, thing pixel = category id × 1000 + k (k ≥ 0) and, for thing classes, an id below 1000 marks
a *crowd* region. :class:`Segment` is one entry of a COCO ``segments_info``; :class:`CategoryResolver` maps a
data set's category ids to the model's class table. Files are read and written by
:mod:`hle_core.data.coco_panoptic` and :mod:`hle_core.data.cityscapes` through :mod:`hle_core.panoptic_io`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

import numpy as np

from ..config import LABEL_DIVISOR, VOID_ID, ClassInfo, ClassTable
from ..panoptic_io import UnknownCategoryError

__all__ = ["Segment", "PanopticSample", "CategoryResolver", "category_of", "segments_from_panoptic", "check_pair"]


@dataclass
class Segment:
    """One panoptic segment. ``bbox`` is COCO ``[x, y, w, h]`` in pixels; ``track_id`` is −1 unless a video
    generator knows the object's identity across frames."""

    id: int
    category_id: int
    iscrowd: bool
    area: int
    bbox: tuple[int, int, int, int]
    track_id: int = -1

    def to_coco(self) -> dict:
        return {"id": int(self.id), "category_id": int(self.category_id), "iscrowd": int(self.iscrowd),
                "area": int(self.area), "bbox": [int(v) for v in self.bbox]}


@dataclass
class PanopticSample:
    """What every reader returns.

    ``image``: (H, W, 3) uint8 RGB; ``panoptic``: (H, W) int32, Cityscapes convention; ``segments``: one
    entry per id present in ``panoptic`` (void excluded), sorted by id.
    """

    image: np.ndarray
    panoptic: np.ndarray
    segments: list[Segment]
    image_id: int | str
    file_name: str = ""
    meta: dict = field(default_factory=dict)


def category_of(panoptic: np.ndarray) -> np.ndarray:
    """Category id of every pixel of a Cityscapes-convention map (void stays 0). Same shape, int32."""
    pan = np.asarray(panoptic)
    return np.where(pan >= LABEL_DIVISOR, pan // LABEL_DIVISOR, pan).astype(np.int32)


def segments_from_panoptic(panoptic: np.ndarray, classes: ClassTable,
                           track_ids: Mapping[int, int] | None = None) -> list[Segment]:
    """Segments (area, bbox, crowd flag) of every non-void id of ``panoptic`` (H, W), sorted by id.

    Crowd = a thing category with an id below 1000 (Cityscapes convention). Raises
    :class:`UnknownCategoryError` for a category id not in ``classes``.
    """
    pan = np.asarray(panoptic)
    if pan.ndim != 2:
        raise ValueError(f"panoptic map must be (H, W), got shape {pan.shape}")
    ids, inverse, areas = np.unique(pan, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(pan.shape)
    h, w = pan.shape
    # presence tables (S, H) and (S, W): bbox = first / last row and column where the id occurs
    rows = np.zeros((len(ids), h), bool)
    cols = np.zeros((len(ids), w), bool)
    rows[inverse, np.arange(h)[:, None]] = True
    cols[inverse, np.arange(w)[None, :]] = True
    y0, y1 = rows.argmax(1), h - 1 - rows[:, ::-1].argmax(1)
    x0, x1 = cols.argmax(1), w - 1 - cols[:, ::-1].argmax(1)
    thing = {c.id: c.isthing for c in classes.classes}
    out = []
    for s, sid in enumerate(ids.tolist()):
        if sid == VOID_ID:
            continue
        cat = sid // LABEL_DIVISOR if sid >= LABEL_DIVISOR else sid
        if cat not in thing:
            raise UnknownCategoryError(f"panoptic id {sid}: category {cat} not in class table {classes.ids}")
        out.append(Segment(sid, cat, bool(thing[cat] and sid < LABEL_DIVISOR), int(areas[s]),
                           (int(x0[s]), int(y0[s]), int(x1[s] - x0[s] + 1), int(y1[s] - y0[s] + 1)),
                           -1 if track_ids is None else int(track_ids.get(sid, -1))))
    return out


def check_pair(image: np.ndarray, panoptic: np.ndarray) -> None:
    """Writers' input check: ``image`` (H, W, 3) uint8 and ``panoptic`` (H, W) of the same size."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8, got shape {image.shape} dtype {image.dtype}")
    if panoptic.shape != image.shape[:2]:
        raise ValueError(f"panoptic map shape {panoptic.shape} != image shape {image.shape[:2]}")


class CategoryResolver:
    """Maps data-set category ids to the model's class table.

    ``category_map`` renames data-set ids first (e.g. COCO person 1 -> 24); a category the table lacks
    raises :class:`UnknownCategoryError` (``unknown="error"``) or becomes void (``unknown="ignore"``).
    A category present in both with a different name or thing flag is always an error.
    """

    def __init__(self, classes: ClassTable, dataset_categories: Iterable[Mapping] = (),
                 category_map: Mapping[int, int] | None = None, unknown: str = "error", source: str = "") -> None:
        if unknown not in ("error", "ignore"):
            raise ValueError(f"unknown must be 'error' or 'ignore', got {unknown!r}")
        self.classes, self.unknown, self.source = classes, unknown, source
        self.map = {int(k): int(v) for k, v in (category_map or {}).items()}
        self.table = {c.id: c for c in classes.classes}
        for cat in dataset_categories:
            remapped = int(cat["id"]) in self.map
            ours = self.table.get(self.map.get(int(cat["id"]), int(cat["id"])))
            if ours is None:
                continue
            # a remapped id is the caller's statement that the classes agree; names may differ then
            name_ok = remapped or "name" not in cat or str(cat["name"]).lower() == ours.name.lower()
            thing_ok = "isthing" not in cat or bool(cat["isthing"]) == ours.isthing
            if not (name_ok and thing_ok):
                raise UnknownCategoryError(
                    f"{source}: category {cat['id']} ({cat.get('name')!r}, isthing={cat.get('isthing')}) "
                    f"disagrees with class table entry {ours.id} ({ours.name!r}, isthing={ours.isthing})")

    def resolve(self, category_id: int, where: str) -> ClassInfo | None:
        """Our :class:`ClassInfo` for a data-set category id, or None (void) when ignored."""
        info = self.table.get(self.map.get(category_id, category_id))
        if info is None and self.unknown == "error":
            raise UnknownCategoryError(
                f"{where}: category id {category_id} not in class table {self.classes.ids} "
                f"(pass unknown='ignore' to treat it as void, or a category_map)")
        return info
