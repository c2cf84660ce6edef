"""Cityscapes panoptic ground truth on disk (paper §4.1), read and written.

* **Cityscapes gtFine** — ``gtFine/<split>/<city>/<name>_gtFine_instanceIds.png`` (16-bit; id < 1000 is a
  label id, a crowd region for thing classes; otherwise class × 1000 + k), ``<name>_gtFine_labelIds.png``
  and the images ``leftImg8bit/<split>/<city>/<name>_leftImg8bit.png`` (:class:`CityscapesReader`,
  :class:`CityscapesWriter`).
* **cityscapesPanopticParser** output — ``gtFine/cityscapes_panoptic_<split>.json`` + folder of COCO panoptic
  PNGs, string image ids such as ``"frankfurt_000000_000294"`` (:class:`CityscapesPanopticReader`, a
  :class:`~hle_core.data.coco_panoptic.CocoPanopticReader`).

Readers return :class:`~hle_core.data.sample.PanopticSample` (Cityscapes convention in memory). Every error is a
:class:`~hle_core.panoptic_io.PanopticFormatError` naming the file it concerns.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..config import LABEL_DIVISOR, VOID_ID, ClassInfo, ClassTable
from ..panoptic_io import PanopticFileNotFoundError, PanopticFormatError, read_image, read_label_png, write_png
from .coco_panoptic import CocoPanopticReader, CocoPanopticWriter
from .sample import CategoryResolver, PanopticSample, Segment, category_of, check_pair, segments_from_panoptic

__all__ = ["CITYSCAPES_IGNORE_IN_EVAL", "cityscapes_class_table", "cityscapes_panoptic_paths",
           "CityscapesPanopticReader", "CityscapesWriter", "CityscapesReader"]

#: Cityscapes label ids marked ``ignoreInEval`` in cityscapesScripts ``labels.py`` (unlabeled, ego vehicle,
#: rectification border, out of roi, static, dynamic, ground, parking, rail track, guard rail, bridge,
#: tunnel, polegroup, caravan, trailer): void in every Cityscapes evaluation, so void here.
CITYSCAPES_IGNORE_IN_EVAL = frozenset({0, 1, 2, 3, 4, 5, 6, 9, 10, 14, 15, 16, 18, 29, 30})

#: Highest id a 16-bit Cityscapes ``instanceIds`` PNG can hold.
_UINT16_MAX = np.iinfo(np.uint16).max


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


def cityscapes_panoptic_paths(root: str | Path, split: str) -> tuple[Path, Path, Path]:
    """``cityscapesPanopticParser`` layout: ``gtFine/cityscapes_panoptic_<split>.json``, the PNG folder
    beside it, and ``leftImg8bit/<split>/<city>/`` images."""
    root = Path(root)
    return (root / "gtFine" / f"cityscapes_panoptic_{split}.json", root / "gtFine" / f"cityscapes_panoptic_{split}",
            root / "leftImg8bit" / split)


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
        check_pair(image, panoptic)
        if panoptic.size and (panoptic.min() < 0 or panoptic.max() > _UINT16_MAX):
            raise ValueError(f"Cityscapes instanceIds are 16-bit: ids must lie in [0, {_UINT16_MAX}], got "
                             f"[{panoptic.min()}, {panoptic.max()}]")
        name = self.name(sequence, frame)
        gt = self.root / "gtFine" / self.split / self.city
        write_png(gt / f"{name}_gtFine_instanceIds.png", panoptic.astype(np.uint16))
        write_png(gt / f"{name}_gtFine_labelIds.png", category_of(panoptic).astype(np.uint8))
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
        self.resolver = CategoryResolver(self.classes, (), category_map, unknown, str(gt_dir))
        self.image_ids = [f.name[: -len(self.SUFFIX)] for f in self.files]

    def __len__(self) -> int:
        return len(self.files)

    def image_path(self, index: int) -> Path:
        f = self.files[index]
        return self.root / "leftImg8bit" / self.split / f.parent.name / f"{self.image_ids[index]}_leftImg8bit.png"

    def __getitem__(self, index: int) -> PanopticSample:
        path = self.files[index]
        raw = read_label_png(path)
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
