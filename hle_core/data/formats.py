"""Panoptic ground truth on disk (paper §4.1 data sets): COCO panoptic and Cityscapes, read and written.

In memory every sample uses the Cityscapes convention of ``docs/ARCHITECTURE.md``: an ``int32`` map with
void = 0, stuff pixel = category id, thing pixel = category id × 1000 + k (k ≥ 0) and, for thing classes,
an id below 1000 marks a *crowd* region. On disk:

* **COCO panoptic** — ``<json>`` with ``images``, ``annotations`` (``file_name``, ``image_id``,
  ``segments_info``: ``id``, ``category_id``, ``area``, ``bbox`` [x, y, w, h], ``iscrowd``) and
  ``categories`` (``id``, ``name``, ``isthing``, ``color``), plus a folder of RGB PNGs whose pixel id is
  R + 256·G + 256²·B. Segment ids in the PNGs are arbitrary; the JSON maps them to categories.
  ``cityscapesPanopticParser`` output (``gtFine/cityscapes_panoptic_<split>.json`` + folder of PNGs, string
  image ids such as ``"frankfurt_000000_000294"``) is this format too.
* **Cityscapes gtFine** — ``gtFine/<split>/<city>/<name>_gtFine_instanceIds.png`` (16-bit; id < 1000 is a
  label id, a crowd region for thing classes; otherwise class × 1000 + k), ``<name>_gtFine_labelIds.png``
  and the images ``leftImg8bit/<split>/<city>/<name>_leftImg8bit.png``.

Readers return :class:`PanopticSample`; writers take ``(image, panoptic, segments)``. Every error names the
file it concerns.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import cv2
import numpy as np

from ..config import LABEL_DIVISOR, VOID_ID, ClassInfo, ClassTable

__all__ = [
    "Segment",
    "PanopticSample",
    "PanopticFormatError",
    "PanopticFileNotFoundError",
    "UnknownCategoryError",
    "CITYSCAPES_IGNORE_IN_EVAL",
    "cityscapes_class_table",
    "category_of",
    "segments_from_panoptic",
    "rgb_to_id",
    "id_to_rgb",
    "read_image",
    "CocoPanopticWriter",
    "CocoPanopticReader",
    "CityscapesWriter",
    "CityscapesReader",
    "CityscapesPanopticReader",
    "coco_paths",
    "cityscapes_panoptic_paths",
]

#: Cityscapes label ids marked ``ignoreInEval`` in cityscapesScripts ``labels.py`` (unlabeled, ego vehicle,
#: rectification border, out of roi, static, dynamic, ground, parking, rail track, guard rail, bridge,
#: tunnel, polegroup, caravan, trailer): void in every Cityscapes evaluation, so void here.
CITYSCAPES_IGNORE_IN_EVAL = frozenset({0, 1, 2, 3, 4, 5, 6, 9, 10, 14, 15, 16, 18, 29, 30})

#: Highest id a 16-bit Cityscapes ``instanceIds`` PNG can hold.
_UINT16_MAX = np.iinfo(np.uint16).max


# ----------------------------------------------------------------------------------------------
# In-memory sample
# ----------------------------------------------------------------------------------------------
class PanopticFormatError(ValueError):
    """A panoptic file is malformed or inconsistent with its JSON; the message names the file."""


class PanopticFileNotFoundError(PanopticFormatError, FileNotFoundError):
    """A file the data set refers to is missing; the message names the path."""


class UnknownCategoryError(PanopticFormatError, KeyError):
    """A category of the data set is not in the class table (or disagrees with it)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


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


def cityscapes_class_table() -> ClassTable:
    """The 19 Cityscapes evaluation classes (label ids, names, colours of cityscapesScripts ``labels.py``)."""
    rows = [(7, "road", False, (128, 64, 128)), (8, "sidewalk", False, (244, 35, 232)),
            (11, "building", False, (70, 70, 70)), (12, "wall", False, (102, 102, 156)),
            (13, "fence", False, (190, 153, 153)), (17, "pole", False, (153, 153, 153)),
            (19, "traffic light", False, (250, 170, 30)), (20, "traffic sign", False, (220, 220, 0)),
            (21, "vegetation", False, (107, 142, 35)), (22, "terrain", False, (152, 251, 152)),
            (23, "sky", False, (70, 130, 180)), (24, "person", True, (220, 20, 60)),
            (25, "rider", True, (255, 0, 0)), (26, "car", True, (0, 0, 142)), (27, "truck", True, (0, 0, 70)),
            (28, "bus", True, (0, 60, 100)), (31, "train", True, (0, 80, 100)),
            (32, "motorcycle", True, (0, 0, 230)), (33, "bicycle", True, (119, 11, 32))]
    return ClassTable(tuple(ClassInfo(i, n, t, c) for i, n, t, c in rows))


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


# ----------------------------------------------------------------------------------------------
# PNG helpers
# ----------------------------------------------------------------------------------------------
def rgb_to_id(rgb: np.ndarray) -> np.ndarray:
    """COCO panoptic id = R + 256·G + 256²·B of an (H, W, 3) RGB array -> (H, W) int32."""
    c = rgb.astype(np.int32)
    return c[..., 0] + 256 * c[..., 1] + 256 * 256 * c[..., 2]


def id_to_rgb(ids: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_id`: (H, W) non-negative ids < 256³ -> (H, W, 3) uint8 RGB."""
    ids = np.asarray(ids)
    if ids.size and (ids.min() < 0 or ids.max() >= 256 ** 3):
        raise ValueError(f"COCO panoptic ids must lie in [0, 256^3), got range [{ids.min()}, {ids.max()}]")
    ids = ids.astype(np.int64)
    return np.stack([ids % 256, ids // 256 % 256, ids // 65536], axis=-1).astype(np.uint8)


def _imread(path: Path, flags: int) -> np.ndarray:
    if not path.is_file():
        raise PanopticFileNotFoundError(f"missing file: {path}")
    data = np.fromfile(str(path), dtype=np.uint8)
    img = cv2.imdecode(data, flags) if data.size else None
    if img is None:
        raise PanopticFormatError(f"cannot decode image file (truncated or not an image): {path}")
    return img


def read_image(path: str | Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an image file; clear errors for missing or unreadable files."""
    return cv2.cvtColor(_imread(Path(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _read_rgb_png(path: Path) -> np.ndarray:
    img = _imread(path, cv2.IMREAD_UNCHANGED)
    if img.ndim != 3 or img.shape[2] < 3 or img.dtype != np.uint8:
        raise PanopticFormatError(f"{path}: expected an 8-bit RGB panoptic PNG, got shape {img.shape} "
                                  f"dtype {img.dtype}")
    return rgb_to_id(img[..., 2::-1])  # BGR(A) -> RGB


def _read_label_png(path: Path) -> np.ndarray:
    img = _imread(path, cv2.IMREAD_UNCHANGED)
    if img.ndim != 2 or img.dtype not in (np.uint8, np.uint16, np.int32):
        raise PanopticFormatError(f"{path}: expected a single-channel 8/16-bit label PNG, got shape "
                                  f"{img.shape} dtype {img.dtype}")
    return img.astype(np.int32)


def _write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), array):
        raise OSError(f"could not write {path}")


def _write_rgb(path: Path, rgb: np.ndarray) -> None:
    _write_png(path, cv2.cvtColor(np.ascontiguousarray(rgb, dtype=np.uint8), cv2.COLOR_RGB2BGR))


def _check_pair(image: np.ndarray, panoptic: np.ndarray) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8, got shape {image.shape} dtype {image.dtype}")
    if panoptic.shape != image.shape[:2]:
        raise ValueError(f"panoptic map shape {panoptic.shape} != image shape {image.shape[:2]}")


# ----------------------------------------------------------------------------------------------
# Category resolution shared by the readers
# ----------------------------------------------------------------------------------------------
class _CategoryResolver:
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


def _assemble(ids: np.ndarray, seg_info: Sequence[Mapping], resolver: _CategoryResolver, png: Path) -> np.ndarray:
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


# ----------------------------------------------------------------------------------------------
# COCO panoptic
# ----------------------------------------------------------------------------------------------
def coco_paths(root: str | Path, split: str) -> tuple[Path, Path, Path]:
    """COCO layout under ``root``: ``annotations/panoptic_<split>.json``, ``annotations/panoptic_<split>/``
    (PNGs) and ``<split>/`` (images); with ``split="train2017"`` this is the official download."""
    root = Path(root)
    return root / "annotations" / f"panoptic_{split}.json", root / "annotations" / f"panoptic_{split}", root / split


def cityscapes_panoptic_paths(root: str | Path, split: str) -> tuple[Path, Path, Path]:
    """``cityscapesPanopticParser`` layout: ``gtFine/cityscapes_panoptic_<split>.json``, the PNG folder
    beside it, and ``leftImg8bit/<split>/<city>/`` images."""
    root = Path(root)
    return (root / "gtFine" / f"cityscapes_panoptic_{split}.json", root / "gtFine" / f"cityscapes_panoptic_{split}",
            root / "leftImg8bit" / split)


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
        _check_pair(image, panoptic)
        if segments is None:
            segments = segments_from_panoptic(panoptic, self.classes)
        img_path = self.image_dir / f"{name}{self.image_ext}"
        png_name = png_name or f"{name}.png"
        _write_rgb(img_path, image)
        _write_rgb(self.png_dir / png_name, id_to_rgb(panoptic))
        h, w = panoptic.shape
        self.images.append({"id": image_id, "file_name": img_path.name, "height": h, "width": w, **image_fields})
        self.annotations.append({"image_id": image_id, "file_name": png_name,
                                 "segments_info": [s.to_coco() for s in segments]})

    def close(self) -> Path:
        cats = [{"id": c.id, "name": c.name, "isthing": int(c.isthing), "color": list(c.color),
                 "supercategory": "thing" if c.isthing else "stuff"} for c in self.classes.classes]
        self.json_path.parent.mkdir(parents=True, exist_ok=True)
        self.json_path.write_text(json.dumps({"images": self.images, "annotations": self.annotations,
                                              "categories": cats}))
        return self.json_path

    def __enter__(self) -> "CocoPanopticWriter":
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.close()


class CocoPanopticReader:
    """Random access to a COCO panoptic data set (also ``cityscapesPanopticParser`` output).

    ``classes`` None: the JSON's categories form the table. ``unknown``/``category_map``: see
    :class:`_CategoryResolver`. ``load_images=False`` skips image decoding (``image`` is then an empty
    (0, 0, 3) array), e.g. for evaluation that needs the ground truth only.
    """

    def __init__(self, json_path: str | Path, png_dir: str | Path, image_dir: str | Path | None = None,
                 classes: ClassTable | None = None, unknown: str = "error",
                 category_map: Mapping[int, int] | None = None, load_images: bool = True) -> None:
        self.json_path, self.png_dir = Path(json_path), Path(png_dir)
        self.image_dir = None if image_dir is None else Path(image_dir)
        self.load_images = load_images and image_dir is not None
        if not self.json_path.is_file():
            raise PanopticFileNotFoundError(f"missing panoptic JSON: {self.json_path}")
        try:
            data = json.loads(self.json_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise PanopticFormatError(f"{self.json_path}: not valid JSON ({exc})") from exc
        missing = [k for k in ("annotations", "categories") if k not in data]
        if missing:
            raise PanopticFormatError(f"{self.json_path}: missing keys {missing}")
        self.categories = data["categories"]
        if classes is None:
            classes = ClassTable.from_list([{"id": c["id"], "name": c["name"], "isthing": c["isthing"],
                                             "color": c.get("color", (128, 128, 128))} for c in self.categories])
        self.classes = classes
        self.resolver = _CategoryResolver(classes, self.categories, category_map, unknown, str(self.json_path))
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
        pan = _assemble(_read_rgb_png(png), ann["segments_info"], self.resolver, png)
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


class CityscapesPanopticReader(CocoPanopticReader):
    """``cityscapesPanopticParser`` output under a Cityscapes root; images found as
    ``leftImg8bit/<split>/<city>/<file_name>`` with the city taken from the string image id."""

    def __init__(self, root: str | Path, split: str = "train", classes: ClassTable | None = None,
                 unknown: str = "error", category_map: Mapping[int, int] | None = None,
                 load_images: bool = True) -> None:
        json_path, png_dir, image_dir = cityscapes_panoptic_paths(root, split)
        super().__init__(json_path, png_dir, image_dir, classes, unknown, category_map, load_images)

    def image_path(self, image_id: int | str) -> Path:
        path = super().image_path(image_id)
        return path.parent / str(image_id).split("_")[0] / path.name


# ----------------------------------------------------------------------------------------------
# Cityscapes gtFine
# ----------------------------------------------------------------------------------------------
class CityscapesWriter:
    """Writes the Cityscapes layout: ``leftImg8bit`` images, ``gtFine`` ``instanceIds`` (16-bit) and
    ``labelIds`` PNGs, and on :meth:`close` the ``cityscapesPanopticParser`` JSON + PNG folder.

    Sample names follow ``<city>_<sequence:06d>_<frame:06d>``; the name is the (string) image id.
    """

    def __init__(self, root: str | Path, split: str, classes: ClassTable, city: str = "synth") -> None:
        self.root, self.split, self.city = Path(root), split, city
        json_path, png_dir, image_dir = cityscapes_panoptic_paths(root, split)
        self.panoptic = CocoPanopticWriter(json_path, png_dir, image_dir / city, classes,
                                           image_ext="_leftImg8bit.png")

    def name(self, sequence: int, frame: int) -> str:
        return f"{self.city}_{sequence:06d}_{frame:06d}"

    def add(self, sequence: int, frame: int, image: np.ndarray, panoptic: np.ndarray,
            segments: Sequence[Segment] | None = None) -> str:
        _check_pair(image, panoptic)
        if panoptic.size and (panoptic.min() < 0 or panoptic.max() > _UINT16_MAX):
            raise ValueError(f"Cityscapes instanceIds are 16-bit: ids must lie in [0, {_UINT16_MAX}], got "
                             f"[{panoptic.min()}, {panoptic.max()}]")
        name = self.name(sequence, frame)
        gt = self.root / "gtFine" / self.split / self.city
        _write_png(gt / f"{name}_gtFine_instanceIds.png", panoptic.astype(np.uint16))
        _write_png(gt / f"{name}_gtFine_labelIds.png", category_of(panoptic).astype(np.uint8))
        # cityscapesPanopticParser: image file <name>_leftImg8bit.png, PNG <name>_gtFine_panoptic.png
        self.panoptic.add(name, name, image, panoptic, segments, png_name=f"{name}_gtFine_panoptic.png")
        return name

    def close(self) -> Path:
        return self.panoptic.close()

    def __enter__(self) -> "CityscapesWriter":
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.close()


class CityscapesReader:
    """Reads ``gtFine/<split>/<city>/*_gtFine_instanceIds.png`` with its ``leftImg8bit`` image.

    Label ids Cityscapes ignores in evaluation (:data:`CITYSCAPES_IGNORE_IN_EVAL`) become void; other ids
    are resolved against ``classes`` (default: :func:`cityscapes_class_table`).
    """

    SUFFIX = "_gtFine_instanceIds.png"

    def __init__(self, root: str | Path, split: str = "train", classes: ClassTable | None = None,
                 unknown: str = "error", category_map: Mapping[int, int] | None = None,
                 load_images: bool = True) -> None:
        self.root, self.split = Path(root), split
        self.classes = classes if classes is not None else cityscapes_class_table()
        self.load_images = load_images
        gt_dir = self.root / "gtFine" / split
        if not gt_dir.is_dir():
            raise PanopticFileNotFoundError(f"missing Cityscapes annotation folder: {gt_dir}")
        self.files = sorted(gt_dir.glob(f"*/*{self.SUFFIX}"))
        if not self.files:
            raise PanopticFileNotFoundError(f"no *{self.SUFFIX} files under {gt_dir}")
        self.resolver = _CategoryResolver(self.classes, (), category_map, unknown, str(gt_dir))
        self.image_ids = [f.name[: -len(self.SUFFIX)] for f in self.files]

    def __len__(self) -> int:
        return len(self.files)

    def image_path(self, index: int) -> Path:
        f = self.files[index]
        return self.root / "leftImg8bit" / self.split / f.parent.name / f"{self.image_ids[index]}_leftImg8bit.png"

    def __getitem__(self, index: int) -> PanopticSample:
        path = self.files[index]
        raw = _read_label_png(path)
        present, inverse = np.unique(raw, return_inverse=True)
        lut = np.zeros(len(present), np.int32)
        for j, rid in enumerate(present.tolist()):
            cat = rid // LABEL_DIVISOR if rid >= LABEL_DIVISOR else rid
            if rid == VOID_ID or cat in CITYSCAPES_IGNORE_IN_EVAL:
                continue
            info = self.resolver.resolve(cat, str(path))
            if info is None:
                continue
            if rid >= LABEL_DIVISOR and not info.isthing:
                raise PanopticFormatError(f"{path}: instance id {rid} for stuff class {info.name!r}")
            lut[j] = info.id * LABEL_DIVISOR + rid % LABEL_DIVISOR if rid >= LABEL_DIVISOR else info.id
        pan = lut[inverse.reshape(raw.shape)]
        image = np.zeros((0, 0, 3), np.uint8)
        if self.load_images:
            image = read_image(self.image_path(index))
            if image.shape[:2] != pan.shape:
                raise PanopticFormatError(f"{path}: size {pan.shape} differs from image "
                                          f"{self.image_path(index)} {image.shape[:2]}")
        return PanopticSample(image, pan, segments_from_panoptic(pan, self.classes), self.image_ids[index],
                              path.name)
