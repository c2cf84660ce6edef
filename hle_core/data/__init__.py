"""Data (paper §4.1): synthetic street scenes, COCO / Cityscapes panoptic readers and writers
(:mod:`.coco_panoptic`, :mod:`.cityscapes`; codec, file I/O and errors in :mod:`hle_core.panoptic_io`), training
datasets and joint transforms. In memory, panoptic maps follow the Cityscapes convention (void 0, stuff =
category id, thing = category id × 1000 + k, thing id < 1000 = crowd)."""
from .dataset import PanopticDataset, SyntheticDataset, panoptic_to_targets
from ..panoptic_io import (PanopticFileNotFoundError, PanopticFormatError, UnknownCategoryError, id_to_rgb,
                           read_image, rgb_to_id)
from .cityscapes import (CITYSCAPES_IGNORE_IN_EVAL, CityscapesPanopticReader, CityscapesReader, CityscapesWriter,
                         cityscapes_class_table, cityscapes_panoptic_paths)
from .coco_panoptic import CocoPanopticReader, CocoPanopticWriter, coco_paths
from .sample import PanopticSample, Segment, category_of, segments_from_panoptic
from .synthetic import REQUIRED_CLASSES, Frame, SceneGenerator, Video, generate_video
from .transforms import (ColorJitter, Compose, RandomCrop, RandomHorizontalFlip, RandomScale, ResizeMaxSide,
                         resize_sample, train_transforms)

__all__ = [
    "PanopticDataset", "SyntheticDataset", "panoptic_to_targets",
    "CITYSCAPES_IGNORE_IN_EVAL", "CityscapesPanopticReader", "CityscapesReader", "CityscapesWriter",
    "CocoPanopticReader", "CocoPanopticWriter", "PanopticFileNotFoundError", "PanopticFormatError",
    "PanopticSample", "Segment", "UnknownCategoryError", "category_of", "cityscapes_class_table",
    "cityscapes_panoptic_paths", "coco_paths", "id_to_rgb", "read_image", "rgb_to_id", "segments_from_panoptic",
    "REQUIRED_CLASSES", "Frame", "SceneGenerator", "Video", "generate_video",
    "ColorJitter", "Compose", "RandomCrop", "RandomHorizontalFlip", "RandomScale", "ResizeMaxSide",
    "resize_sample", "train_transforms",
]
