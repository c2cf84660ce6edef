"""COCO panoptic data sets on disk (paper §4.1), read and written.

Layout: ``<json>`` with ``images``, ``annotations`` (``file_name``, ``image_id``, ``segments_info``: ``id``,
``category_id``, ``area``, ``bbox`` [x, y, w, h], ``iscrowd``) and ``categories`` (``id``, ``name``, ``isthing``,
``color``), plus a folder of RGB PNGs whose pixel id is R + 256·G + 256²·B (codec and file I/O:
:mod:`hle_core.panoptic_io`). Segment ids in the PNGs are arbitrary; the JSON maps them to categories.
``cityscapesPanopticParser`` output is this format too (:class:`hle_core.data.cityscapes.CityscapesPanopticReader`).

Readers return :class:`~hle_core.data.sample.PanopticSample` (Cityscapes convention in memory); writers take
``(image, panoptic, segments)``. Every error is a :class:`~hle_core.panoptic_io.PanopticFormatError` naming the
file it concerns.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..config import LABEL_DIVISOR, VOID_ID, ClassInfo, ClassTable
from ..panoptic_io import (PanopticFormatError, load_panoptic_json, read_image, read_panoptic_png,
                           write_panoptic_json, write_panoptic_png, write_rgb_png)
from .sample import CategoryResolver, PanopticSample, Segment, check_pair, segments_from_panoptic

__all__ = ["coco_paths", "assemble", "CocoPanopticWriter", "CocoPanopticReader"]


def coco_paths(root: str | Path, split: str) -> tuple[Path, Path, Path]:
    """COCO layout under ``root``: ``annotations/panoptic_<split>.json``, ``annotations/panoptic_<split>/``
    (PNGs) and ``<split>/`` (images); with ``split="train2017"`` this is the official download."""
    root = Path(root)
    return root / "annotations" / f"panoptic_{split}.json", root / "annotations" / f"panoptic_{split}", root / split


def assemble(ids: np.ndarray, seg_info: Sequence[Mapping], resolver: CategoryResolver, png: Path) -> np.ndarray:
    """COCO-style id map (H, W) + segments_info -> Cityscapes-convention panoptic map (H, W) int32.

    Ids are kept when the whole image already follows the Cityscapes convention (ids written by
    :class:`CocoPanopticWriter` or ``cityscapesPanopticParser``), so identities survive a round trip;
    otherwise thing instances are numbered k = 0, 1, ... per category in ``segments_info`` order.
    Crowd thing segments become the bare category id; unknown ignored categories become void.
    """
    present, inverse = np.unique(ids, return_inverse=True)
    present_set = set(present.tolist()) - {VOID_ID}
    info_ids = [int(s["id"]) for s in seg_info]
    if len(set(info_ids)) != len(info_ids):
        raise PanopticFormatError(f"{png}: duplicate segment ids in segments_info: {sorted(info_ids)}")
    if VOID_ID in info_ids:
        raise PanopticFormatError(f"{png}: segments_info lists id 0, which is void")
    stray = sorted(present_set - set(info_ids))
    if stray:
        raise PanopticFormatError(f"{png}: PNG contains segment ids {stray[:10]} that are not in its "
                                  f"segments_info (ids listed: {sorted(info_ids)[:10]})")
    absent = sorted(set(info_ids) - present_set)
    if absent:
        raise PanopticFormatError(f"{png}: segments_info lists segment ids {absent[:10]} that do not occur "
                                  f"in the PNG")

    resolved = []  # (source id, our ClassInfo or None, crowd)
    for s in seg_info:
        info = resolver.resolve(int(s["category_id"]), f"{png} segment {s['id']}")
        resolved.append((int(s["id"]), info, bool(s.get("iscrowd", 0))))

    def convention_id(sid: int, info: ClassInfo, crowd: bool) -> bool:
        if not info.isthing or crowd:
            return sid == info.id
        return sid // LABEL_DIVISOR == info.id

    keep = all(info is None or convention_id(sid, info, crowd) for sid, info, crowd in resolved)
    next_k: dict[int, int] = {}
    new_id: dict[int, int] = {}
    for sid, info, crowd in resolved:
        if info is None:
            new_id[sid] = VOID_ID
        elif keep:
            new_id[sid] = sid
        elif info.isthing and not crowd:
            k = next_k.get(info.id, 0)
            if k >= LABEL_DIVISOR:
                raise PanopticFormatError(f"{png}: more than {LABEL_DIVISOR} instances of category {info.id}")
            next_k[info.id] = k + 1
            new_id[sid] = info.id * LABEL_DIVISOR + k
        else:
            new_id[sid] = info.id
    lut = np.array([new_id.get(int(p), VOID_ID) for p in present], dtype=np.int32)
    return lut[inverse.reshape(ids.shape)]


class CocoPanopticWriter:
    """Writes images, RGB id PNGs and, on :meth:`close`, the panoptic JSON.

    PNG ids are the in-memory panoptic ids (Cityscapes convention, as ``cityscapesPanopticParser``
    writes them), so reading back reproduces the map exactly.
    """

    def __init__(self, json_path: str | Path, png_dir: str | Path, image_dir: str | Path, classes: ClassTable,
                 image_ext: str = ".png") -> None:
        self.json_path, self.png_dir, self.image_dir = Path(json_path), Path(png_dir), Path(image_dir)
        self.classes, self.image_ext = classes, image_ext
        self.images: list[dict] = []
        self.annotations: list[dict] = []
        self.png_dir.mkdir(parents=True, exist_ok=True)
        self.image_dir.mkdir(parents=True, exist_ok=True)

    def add(self, image_id: int | str, name: str, image: np.ndarray, panoptic: np.ndarray,
            segments: Sequence[Segment] | None = None, png_name: str | None = None, **image_fields) -> None:
        """Write one sample: image ``<image_dir>/<name><image_ext>``, PNG ``<png_dir>/<png_name>``
        (default ``<name>.png``). ``segments`` default to those of ``panoptic``; ``image_fields`` go into
        the JSON ``images`` entry (e.g. sequence / frame of a video)."""
        check_pair(image, panoptic)
        if segments is None:
            segments = segments_from_panoptic(panoptic, self.classes)
        img_path = self.image_dir / f"{name}{self.image_ext}"
        png_name = png_name or f"{name}.png"
        write_rgb_png(img_path, image)
        write_panoptic_png(self.png_dir / png_name, panoptic)
        h, w = panoptic.shape
        self.images.append({"id": image_id, "file_name": img_path.name, "height": h, "width": w, **image_fields})
        self.annotations.append({"image_id": image_id, "file_name": png_name,
                                 "segments_info": [s.to_coco() for s in segments]})

    def close(self) -> Path:
        cats = [{"id": c.id, "name": c.name, "isthing": int(c.isthing), "color": list(c.color),
                 "supercategory": "thing" if c.isthing else "stuff"} for c in self.classes.classes]
        return write_panoptic_json(self.json_path, self.images, self.annotations, cats)

    def __enter__(self) -> "CocoPanopticWriter":
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.close()


class CocoPanopticReader:
    """Random access to a COCO panoptic data set (also ``cityscapesPanopticParser`` output).

    ``classes`` None: the JSON's categories form the table. ``unknown``/``category_map``: see
    :class:`~hle_core.data.sample.CategoryResolver`. ``load_images=False`` skips image decoding (``image`` is
    then an empty (0, 0, 3) array), e.g. for evaluation that needs the ground truth only.
    """

    def __init__(self, json_path: str | Path, png_dir: str | Path, image_dir: str | Path | None = None,
                 classes: ClassTable | None = None, unknown: str = "error",
                 category_map: Mapping[int, int] | None = None, load_images: bool = True) -> None:
        self.json_path, self.png_dir = Path(json_path), Path(png_dir)
        self.image_dir = None if image_dir is None else Path(image_dir)
        self.load_images = load_images and image_dir is not None
        data = load_panoptic_json(self.json_path, "panoptic", require=("annotations", "categories"))
        self.categories = data["categories"]
        if classes is None:
            classes = ClassTable.from_list([{"id": c["id"], "name": c["name"], "isthing": c["isthing"],
                                             "color": c.get("color", (128, 128, 128))} for c in self.categories])
        self.classes = classes
        self.resolver = CategoryResolver(classes, self.categories, category_map, unknown, str(self.json_path))
        self.images = {img["id"]: img for img in data.get("images", [])}
        self.annotations = list(data["annotations"])
        self.image_ids = [a["image_id"] for a in self.annotations]

    def __len__(self) -> int:
        return len(self.annotations)

    def image_path(self, image_id: int | str) -> Path:
        if self.image_dir is None:
            raise PanopticFormatError(f"{self.json_path}: no image directory given")
        info = self.images.get(image_id)
        if info is None:
            raise PanopticFormatError(f"{self.json_path}: image id {image_id!r} has no 'images' entry")
        return self.image_dir / info["file_name"]

    def __getitem__(self, index: int) -> PanopticSample:
        ann = self.annotations[index]
        png = self.png_dir / ann["file_name"]
        pan = assemble(read_panoptic_png(png), ann["segments_info"], self.resolver, png)
        image = np.zeros((0, 0, 3), np.uint8)
        if self.load_images:
            path = self.image_path(ann["image_id"])
            image = read_image(path)
            if image.shape[:2] != pan.shape:
                raise PanopticFormatError(f"{png}: size {pan.shape} differs from image {path} {image.shape[:2]}")
        meta = {k: v for k, v in self.images.get(ann["image_id"], {}).items()
                if k not in ("id", "file_name", "height", "width")}
        return PanopticSample(image, pan, segments_from_panoptic(pan, self.classes), ann["image_id"],
                              ann["file_name"], meta)
