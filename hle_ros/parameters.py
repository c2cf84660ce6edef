"""Every parameter of the panoptic node, declared once: name, default, type, description, range / choices.

What hle_core already defines is read from there, never repeated: the ``decoder.*`` ranges and descriptions
from :class:`hle_core.config.DecoderConfig`'s field metadata, the ``tracking.*`` defaults, ranges and
descriptions from :class:`hle_core.tracking.TrackerConfig`'s, the backend kinds and fallbacks, resize modes,
size multiple, device syntax and ``max_pixels`` default from :mod:`hle_core.config`. Decoder thresholds default
to a sentinel (``-1``) meaning "the value the model was tuned with" (the checkpoint / ONNX file carries its
:class:`hle_core.config.DecoderConfig`), so the node never silently overrides a tuned decoder.

``config/panoptic.yaml`` is generated from :data:`PARAMETERS` (``python -m hle_ros.parameters --write-yaml``,
:func:`render_yaml`); ``test/ros/test_parameters.py`` checks the committed file is exactly what it writes.

An empty ``model`` means the shipped default model (:mod:`hle_ros.default_model`); with it and input size
0 x 0 the network input is the model's training size 256 x 512 at its test scale 1.5, i.e. 384 x 768 (letterbox), see
:attr:`NodeParameters.input_size`.

Validation (:func:`validate_parameters`) is plain Python, testable without ROS: it coerces integers given
for floating-point parameters (``-p x:=1``), refuses wrong types, out-of-range values and unknown choices, and
reports every bad parameter at once, naming what it received and what it expected.
"""
from __future__ import annotations

import dataclasses
import math
import re
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from hle_core.config import (BACKEND_FALLBACKS, BACKEND_KINDS, DEFAULT_MAX_PIXELS, RESIZE_MODES, SIZE_MULTIPLE,
                             ConfigError, DecoderConfig, device_error, in_range, range_text, setting_range)
from hle_core.tracking import TrackerConfig

__all__ = [
    "ParamSpec",
    "PARAMETERS",
    "PARAMETERS_BY_NAME",
    "ParameterError",
    "NodeParameters",
    "validate_parameters",
    "parameter_errors",
    "check_change",
    "ParameterChange",
    "LIVE_PARAMETERS",
    "validate_one",
    "load_yaml_parameters",
    "default_parameters",
    "BACKENDS",
    "FALLBACKS",
    "RELIABILITIES",
    "EMBEDDING_MODES",
    "RESIZE_MODES",
    "USE_MODEL_VALUE",
    "SIZE_MULTIPLE",
    "CAMERA_NAME_RE",
    "YAML_PATH",
    "render_yaml",
    "main",
]

BACKENDS = BACKEND_KINDS
FALLBACKS = BACKEND_FALLBACKS
RELIABILITIES = ("reliable", "best_effort")
EMBEDDING_MODES = ("pca", "first3")
#: Decoder parameters at this value keep the model's own (tuned) setting.
USE_MODEL_VALUE = -1
_INT32_MAX = 2**31 - 1
#: A camera name is one ROS name token: it becomes a topic namespace (``<name>/image``, ``~/<name>/panoptic``).
CAMERA_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


class ParameterError(ValueError):
    """One or more node parameters are invalid; the message lists each with the value received and expected."""


@dataclass(frozen=True)
class ParamSpec:
    """One node parameter.

    ``lo``/``hi`` bound numeric values (inclusive unless ``open_lo`` / ``open_hi``); ``choices`` enumerates string
    values; ``sentinel`` is a value accepted outside ``lo..hi`` with a documented special meaning (here: "use the
    model's value").
    """

    name: str
    default: Any
    type: type                      # bool | int | float | str | list (a string array)
    description: str
    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] | None = None
    sentinel: Any = None
    open_lo: bool = False
    open_hi: bool = False

    def constraints(self) -> str:
        """Human-readable range / choices, as shown by ``ros2 param describe``."""
        parts = []
        if self.choices:
            parts.append("one of " + " | ".join(self.choices))
        if self.lo is not None or self.hi is not None:
            parts.append(f"in {range_text(self.lo, self.hi, self.open_lo, self.open_hi)}")
        if self.sentinel is not None:
            parts.append(f"or {self.sentinel} (use the model's value)")
        return ", ".join(parts)


def _decoder_param(name: str) -> ParamSpec:
    """``decoder.<name>``: type, range and description from :class:`DecoderConfig`'s field; default -1 (the
    model's tuned value)."""
    f = {f.name: f for f in dataclasses.fields(DecoderConfig)}[name]
    kind = type(f.default)
    lo, hi, open_lo, open_hi = setting_range(DecoderConfig, name)
    return ParamSpec(f"decoder.{name}", kind(USE_MODEL_VALUE), kind,
                     f"{f.metadata['description']} (-1: the model's tuned value)", lo=lo, hi=hi,
                     sentinel=kind(USE_MODEL_VALUE), open_lo=open_lo, open_hi=open_hi)


def _tracking_param(name: str) -> ParamSpec:
    """``tracking.<name>``: default, type, range and description from :class:`TrackerConfig`'s field."""
    f = {f.name: f for f in dataclasses.fields(TrackerConfig)}[name]
    lo, hi, open_lo, open_hi = setting_range(TrackerConfig, name)
    return ParamSpec(f"tracking.{name}", f.default, type(f.default), f.metadata["description"], lo=lo, hi=hi,
                     open_lo=open_lo, open_hi=open_hi)


#: The node's parameters, grouped. Order is the declaration order.
PARAMETERS: tuple[ParamSpec, ...] = (
    # --- lifecycle ------------------------------------------------------------------------------------------
    ParamSpec("autostart", True, bool,
              "walk the lifecycle node to 'active' by itself at start (configure + activate)"),
    # --- model / backend ------------------------------------------------------------------------------------
    ParamSpec("model", "", str,
              "model file: an HLE checkpoint (.pt/.pth/.ckpt; any backend, exported to a cached ONNX "
              "file for onnxruntime / TensorRT), an ONNX export (.onnx) or a TensorRT .engine; empty: the shipped "
              "default model hle_street.pt of the installed package (then input 0 x 0 means 384 x 768 letterbox)"),
    ParamSpec("backend", "auto", str,
              "inference backend; auto = TensorRT with a GPU, then onnxruntime CUDA, torch CUDA, onnxruntime CPU",
              choices=BACKENDS),
    ParamSpec("device", "auto", str, "auto | cpu | cuda | cuda:N (auto: cuda when available, else cpu)"),
    ParamSpec("fp16", False, bool, "half-precision inference on CUDA (ignored on the CPU)"),
    ParamSpec("engine_cache_dir", "", str, "where TensorRT engines are cached ('' = the backend's default)"),
    ParamSpec("force_rebuild", False, bool, "rebuild the TensorRT engine even when a cached one matches"),
    ParamSpec("fallback", "auto", str,
              "when the requested backend cannot run here: try onnxruntime | torch | auto (the rest of the auto "
              "order) | none (refuse)", choices=FALLBACKS),
    ParamSpec("workspace_mb", 1024, int, "TensorRT builder workspace [MiB]", lo=64, hi=1 << 20),
    ParamSpec("intra_op_threads", 0, int, "onnxruntime intra-op threads (0: its default)", lo=0, hi=1024),
    ParamSpec("input_height", 0, int,
              "network input height in pixels, a multiple of 32 (0 with input_width 0: the image's own size, padded; "
              "times the model's test_scale; with the default model (model empty): its training size 256 x 512 at its "
              "test scale 1.5, i.e. 384 x 768)",
              lo=0, hi=16384),
    ParamSpec("input_width", 0, int,
              "network input width in pixels, a multiple of 32 (0 with input_height 0: the image's own size, padded; "
              "times the model's test_scale; with the default model (model empty): its training size 256 x 512 at its "
              "test scale 1.5, i.e. 384 x 768)",
              lo=0, hi=16384),
    ParamSpec("resize_mode", "letterbox", str,
              "how an image is fitted to input_height x input_width (ignored at 0 x 0): letterbox scales it by "
              "s = min(input_height / H, input_width / W), keeping its aspect ratio, pads bottom/right with the "
              "mean colour and decodes only the image region; stretch resizes each axis separately. With "
              "384 x 768 (the shipped street model's 256 x 512 training scenes at its test scale 1.5, what its "
              "accuracy was measured at): 640x480 -> s = 0.8, 384 x 512 + 256 padded columns; 1280x720 -> "
              "s = 0.533, 384 x 683 + 85 padded columns. Recommended for the shipped synthetic-street model "
              "(objects scaled to the image height): letterbox, so objects appear at the scale it was evaluated at "
              "(stretch makes objects of a 640 x 480 frame 1.5x too wide); 256 x 512 has 0.44x the pixels (the "
              "node's network stage on 2 CPU cores: 68 vs 152 ms for a 640 x 480 camera) at a lower accuracy "
              "(docs/RESULTS.md)",
              choices=RESIZE_MODES),
    # --- decoding (§3.5); -1 keeps the model's tuned value ---------------------------------------------------
    *(_decoder_param(name) for name in ("seed_threshold", "merge_threshold", "mask_threshold", "stuff_threshold",
                                  "min_instance_area", "min_stuff_area", "max_seeds", "fast_downsample")),
    # --- tracking by mean embeddings (§4.5) -----------------------------------------------------------------
    ParamSpec("tracking.enabled", True, bool, "associate thing instances across frames and publish track ids"),
    *(_tracking_param(f.name) for f in dataclasses.fields(TrackerConfig)),
    # --- input ----------------------------------------------------------------------------------------------
    ParamSpec("cameras", [], list,
              "camera names served by this one node and one network, e.g. [front, left]: <name>/image (and "
              "<name>/camera_info, <name>/image/compressed) -> ~/<name>/panoptic, ~/<name>/detections, ...; frames "
              "that arrive together are inferred as one batch, each camera has its own tracker and diagnostics. "
              "Empty: one camera, image -> ~/panoptic"),
    ParamSpec("batch_window_ms", 100.0, float,
              "several cameras: after the first frame arrives, wait at most this long [ms] for the other cameras' "
              "frames so that they are inferred as one batch (0: take what is there; 10 ms split 640x480 frame sets on "
              "the 2-core test machine, docs/RESULTS.md)", lo=0.0, hi=1000.0),
    ParamSpec("pipeline_overlap", False, bool,
              "one camera: run the work in two stages on two threads (preprocess + inference | decode + track + "
              "publish), so the next frame's inference overlaps this frame's decoding; outputs stay in stamp order. "
              "Meant for GPU backends, where inference leaves the CPU free (not measured); on a 2-core CPU it gave "
              "no gain (docs/RESULTS.md). false: one thread does it all (several cameras: always one thread)"),
    ParamSpec("subscribe_compressed", False, bool,
              "also subscribe to image/compressed (sensor_msgs/CompressedImage, decoded with OpenCV)"),
    ParamSpec("max_pixels", DEFAULT_MAX_PIXELS, int,
              "images are rejected unprocessed when they, or the network input made from them (padded to "
              "multiples of 32, or input_height x input_width), have more pixels than this, or when their long "
              "side is over 16 times the short side; compressed images are checked before decoding",
              lo=1, hi=_INT32_MAX),
    ParamSpec("qos.reliability", "best_effort", str,
              "reliability of the image subscriptions (best_effort matches every publisher; outputs are "
              "always reliable)", choices=RELIABILITIES),
    ParamSpec("qos.depth", 1, int, "keep-last depth of subscriptions and publishers (1: frames never go stale)",
              lo=1, hi=1000),
    # --- outputs --------------------------------------------------------------------------------------------
    ParamSpec("embedding_mode", "pca", str, "~/embedding colouring: PCA of the embedding or its first 3 dims "
              "(paper Fig. 8)", choices=EMBEDDING_MODES),
    ParamSpec("overlay_alpha", 0.5, float, "opacity of the class colours in ~/overlay", lo=0.0, hi=1.0),
    ParamSpec("diagnostics.period", 1.0, float, "seconds between /diagnostics messages", lo=0.05, hi=3600.0),
    ParamSpec("diagnostics.window", 300, int, "frames over which rate and latency percentiles are computed",
              lo=2, hi=100000),
)

PARAMETERS_BY_NAME: dict[str, ParamSpec] = {p.name: p for p in PARAMETERS}


def default_parameters() -> dict[str, Any]:
    """``{name: default}`` from :data:`PARAMETERS`."""
    return {p.name: p.default for p in PARAMETERS}


def validate_one(spec: ParamSpec, value: Any) -> tuple[Any, str | None]:
    """Coerce ``value`` to ``spec.type`` and check its range; returns ``(value, None)`` or ``(value, reason)``."""
    t = spec.type
    if t is bool:
        if not isinstance(value, bool):
            return value, f"expected true/false, got {value!r} ({type(value).__name__})"
    elif t is int:
        if isinstance(value, bool) or not isinstance(value, int):
            return value, f"expected an integer, got {value!r} ({type(value).__name__})"
    elif t is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return value, f"expected a number, got {value!r} ({type(value).__name__})"
        value = float(value)
        if not math.isfinite(value):
            return value, f"expected a finite number, got {value!r}"
    elif t is str:
        if not isinstance(value, str):
            return value, (f"expected a string, got {value!r} ({type(value).__name__}); quote it, "
                           f"e.g. -p {spec.name}:=\"'{value}'\"")
    elif t is list:                     # string arrays; ROS gives None for a YAML [] and bytes [] for the default
        if value is None:
            value = []
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)) or \
                not all(isinstance(v, str) for v in value):
            return value, f"expected a list of names, e.g. [front, left], got {value!r} ({type(value).__name__})"
        value = list(value)
    if spec.sentinel is not None and value == spec.sentinel:
        return value, None
    if spec.choices is not None and value not in spec.choices:
        return value, f"expected one of {list(spec.choices)}, got {value!r}"
    if (spec.lo is not None or spec.hi is not None) and not in_range(value, spec.lo, spec.hi, spec.open_lo,
                                                                     spec.open_hi):
        return value, f"expected a value {spec.constraints()}, got {value!r}"
    return value, None


@dataclass(frozen=True)
class NodeParameters:
    """Validated parameter values (``values[name]``) and what the node builds from them."""

    values: Mapping[str, Any]

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    @property
    def uses_default_model(self) -> bool:
        """True when ``model`` is empty: the shipped default model (:mod:`hle_ros.default_model`)."""
        return not self.values["model"]

    @property
    def model_path(self) -> str:
        """The model file to load: ``model`` (``~`` expanded), or the shipped default model's path."""
        if self.uses_default_model:
            from hle_ros.default_model import find_default_model

            found = find_default_model()
            if found.path is None:
                raise ParameterError(f"model: {found.missing_reason()}")
            return str(found.path)
        return str(Path(self.values["model"]).expanduser())

    @property
    def input_size(self) -> tuple[int, int] | None:
        """``(H, W)`` network input, or None for the image's own size (times the model's test scale); 0 x 0
        with the default model is its training size at its test scale
        (:data:`hle_ros.default_model.DEFAULT_MODEL_INPUT_SIZE`)."""
        h, w = self.values["input_height"], self.values["input_width"]
        if h == 0 and self.uses_default_model:
            from hle_ros.default_model import DEFAULT_MODEL_INPUT_SIZE

            return DEFAULT_MODEL_INPUT_SIZE
        return None if h == 0 else (h, w)

    @property
    def cameras(self) -> tuple[str, ...]:
        """The camera names of a multi-camera node; () for the single-camera node."""
        return tuple(self.values["cameras"])

    def decoder_config(self, model_decoder: DecoderConfig) -> DecoderConfig:
        """The model's decoder settings with every non-sentinel ``decoder.*`` parameter applied."""
        changes = {spec.name.split(".", 1)[1]: self.values[spec.name] for spec in PARAMETERS
                   if spec.name.startswith("decoder.") and self.values[spec.name] != spec.sentinel}
        return dataclasses.replace(model_decoder, **changes)

    def tracker_config(self) -> TrackerConfig | None:
        """The tracker configuration, or None when ``tracking.enabled`` is false."""
        if not self.values["tracking.enabled"]:
            return None
        fields = {f.name for f in dataclasses.fields(TrackerConfig)}
        return TrackerConfig.from_dict({name: self.values[f"tracking.{name}"] for name in fields})


def validate_parameters(values: Mapping[str, Any], check_files: bool = True) -> NodeParameters:
    """Check every parameter of :data:`PARAMETERS` (missing ones take their default).

    Raises:
        ParameterError: listing every unknown or invalid parameter with the value received and what is expected.
    """
    out, errors = _checked(values, check_files)
    if errors:
        raise ParameterError("invalid node parameters:\n  " + "\n  ".join(errors))
    return NodeParameters(out)


def parameter_errors(values: Mapping[str, Any], check_files: bool = True) -> list[str]:
    """What :func:`validate_parameters` would refuse in ``values``, one line per problem ([] when valid)."""
    return _checked(values, check_files)[1]


def _checked(values: Mapping[str, Any], check_files: bool) -> tuple[dict[str, Any], list[str]]:
    errors: list[str] = []
    unknown = sorted(set(values) - set(PARAMETERS_BY_NAME))
    if unknown:
        errors.append(f"unknown parameter(s) {unknown}")
    out: dict[str, Any] = {}
    bad: set[str] = set()
    for spec in PARAMETERS:
        value, reason = validate_one(spec, values.get(spec.name, spec.default))
        if reason:
            errors.append(f"{spec.name}: {reason}")
            bad.add(spec.name)
        out[spec.name] = value
    errors.extend(_cross_checks(out, bad, check_files))
    return out, errors


#: Parameters a configured node applies at once when set (read per frame, or swapped atomically into the
#: pipeline); every other change takes effect at the next configure (deactivate, cleanup, configure, activate).
LIVE_PARAMETERS = frozenset({"overlay_alpha", "embedding_mode", "max_pixels"}
                            | {p.name for p in PARAMETERS if p.name.startswith("decoder.")})


@dataclass(frozen=True)
class ParameterChange:
    """The verdict on a set of parameter changes (:func:`check_change`)."""

    errors: tuple[str, ...]             # why the change is refused (empty: accepted)
    live: tuple[str, ...]               # accepted names applied at once (see LIVE_PARAMETERS)
    deferred: tuple[str, ...]           # accepted names that take effect at the next configure
    values: Mapping[str, Any]           # the whole parameter set after the change (coerced when accepted)

    @property
    def ok(self) -> bool:
        return not self.errors

    def reason(self) -> str:
        """The text for ``SetParametersResult.reason``."""
        if self.errors:
            return "; ".join(self.errors)
        parts = []
        if self.live:
            parts.append(f"applied now: {', '.join(self.live)}")
        if self.deferred:
            parts.append(f"takes effect at the next configure (deactivate, cleanup, configure, activate): "
                         f"{', '.join(self.deferred)}")
        return "; ".join(parts)


def check_change(current: Mapping[str, Any], changes: Mapping[str, Any], check_files: bool = True,
                 configured: bool = True) -> ParameterChange:
    """Validate ``changes`` against the whole parameter set, exactly as configure does: the values, their
    cross-parameter rules and the model file. Refused are the problems the change brings in (a set that is
    already incomplete, e.g. no model yet, does not block unrelated changes). ``configured`` False: nothing
    applies at once (no configuration to change yet); everything waits for configure."""
    merged = {**current, **changes}
    before = set(parameter_errors(current, check_files))
    values, after = _checked(merged, check_files)
    new = tuple(e for e in after if e not in before)
    names = tuple(n for n in changes if n in PARAMETERS_BY_NAME)
    live = tuple(n for n in names if configured and n in LIVE_PARAMETERS)
    return ParameterChange(new, live, tuple(n for n in names if n not in live), values if not new else merged)


def _cross_checks(v: Mapping[str, Any], bad: set[str], check_files: bool) -> list[str]:
    """Checks that involve several parameters or the file system; parameters already in ``bad`` are skipped."""
    errors = []
    if "model" in bad:
        pass
    elif not v["model"]:
        if check_files:
            from hle_ros.default_model import find_default_model

            found = find_default_model()
            if found.path is None:
                errors.append(f"model: no model file given and {found.missing_reason()}; set it, e.g. "
                              f"-p model:=/path/to/hle.pt (checkpoint) or .onnx")
    elif check_files and not Path(v["model"]).expanduser().is_file():
        errors.append(f"model: file not found: {v['model']!r}")
    if "device" not in bad and device_error(v["device"]) is not None:
        errors.append(f"device: {device_error(v['device'])}")
    h, w = v["input_height"], v["input_width"]
    if {"input_height", "input_width"} & bad:
        pass
    elif (h == 0) != (w == 0):
        errors.append(f"input_height/input_width: set both or neither (0), got {h} x {w}")
    elif h % SIZE_MULTIPLE or w % SIZE_MULTIPLE:
        errors.append(f"input_height/input_width: must be multiples of {SIZE_MULTIPLE}, got {h} x {w}")
    if "cameras" not in bad:
        names = list(v["cameras"])
        wrong = [n for n in names if not CAMERA_NAME_RE.match(n)]
        if wrong:
            errors.append(f"cameras: names must be ROS name tokens (a letter, then letters, digits, _), got {wrong}")
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            errors.append(f"cameras: each name once, got {dup} more than once")
    if not any(name.startswith("tracking.") for name in bad):
        try:
            NodeParameters(v).tracker_config()
        except ConfigError as exc:
            errors.append(str(exc))
    return errors


def load_yaml_parameters(path: str | Path, node_name: str = "/**") -> dict[str, Any]:
    """Flatten the ``ros__parameters`` of ``node_name`` in a ROS 2 parameters file to ``{dotted.name: value}``."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"parameters file not found: {path}")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict) or node_name not in data:
        keys = list(data) if isinstance(data, dict) else data
        raise ParameterError(f"{path}: no '{node_name}' section (keys: {keys})")
    section = data[node_name]
    if not isinstance(section, dict) or "ros__parameters" not in section:
        raise ParameterError(f"{path}: '{node_name}' has no 'ros__parameters' mapping")
    flat: dict[str, Any] = {}

    def walk(prefix: str, node: Mapping[str, Any]) -> None:
        for key, value in node.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(value, dict):
                walk(name, value)
            else:
                flat[name] = value

    walk("", section["ros__parameters"])
    return flat


# --- config/panoptic.yaml, generated from PARAMETERS ---------------------------------------------------------
#: The node's parameters file in the source tree (installed to share/hle_ros/config).
YAML_PATH = Path(__file__).resolve().parents[1] / "config" / "panoptic.yaml"
_YAML_HEAD = """\
# Parameters of the HLE panoptic node (hle_ros/panoptic_node.py, default name hle_panoptic).
# GENERATED from the node's parameter table (hle_ros/parameters.py, which reads the decoder and tracker settings
# from hle_core): do not edit by hand; change the table or hle_core, then run
#   python -m hle_ros.parameters --write-yaml
# (test/ros/test_parameters.py checks this file is exactly what that writes).
# `/**` applies to the node whatever its name or namespace. Override single values on the command line
# (`--ros-args -p backend:=torch`) or through the launch file's arguments.
/**:
  ros__parameters:
"""
#: Section comments, before the first parameter of each group.
_YAML_SECTIONS = {
    "autostart": "lifecycle",
    "model": "model / backend",
    "decoder.seed_threshold": "decoding (paper §3.5); -1 keeps the value the model was tuned with",
    "tracking.enabled": "tracking by mean embeddings (paper §4.5); values from hle_core.tracking.TrackerConfig",
    "cameras": "input",
    "embedding_mode": "outputs",
}


def _yaml_value(value: Any) -> str:
    """A parameter value as YAML that loads back with the same type (ints stay ints, floats floats)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_yaml_value(v) for v in value) + "]"
    return value if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value) and value not in ("true", "false", "null") \
        else '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_yaml() -> str:
    """``config/panoptic.yaml``: every parameter of :data:`PARAMETERS` with its default, its description and
    range / choices as comments, grouped as in the table (``a.b`` names nested under ``a:``)."""
    out = [_YAML_HEAD]
    group = None
    for spec in PARAMETERS:
        if spec.name in _YAML_SECTIONS:
            title = _YAML_SECTIONS[spec.name]
            out.append(f"\n    # --- {title} " + "-" * max(3, 100 - len(title)) + "\n")
        prefix, _, key = spec.name.rpartition(".")
        if prefix != group:
            if prefix:
                out.append(f"    {prefix}:\n")
            group = prefix
        indent = "      " if prefix else "    "
        text = spec.description
        if spec.choices:
            text += f" (one of {' | '.join(spec.choices)})"
        if spec.lo is not None or spec.hi is not None:
            text += f", in {range_text(spec.lo, spec.hi, spec.open_lo, spec.open_hi)}"
        for line in textwrap.wrap(text, width=118 - len(indent) - 2, break_on_hyphens=False):
            out.append(f"{indent}# {line}\n")
        out.append(f"{indent}{key}: {_yaml_value(spec.default)}\n")
    return "".join(out)


def main(argv: list[str] | None = None) -> int:
    """``python -m hle_ros.parameters --write-yaml [PATH]`` writes :func:`render_yaml` (default
    :data:`YAML_PATH`); ``--check [PATH]`` exits 1 when the file differs from it."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m hle_ros.parameters", description=main.__doc__)
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write-yaml", action="store_true", help="write the parameters file")
    mode.add_argument("--check", action="store_true", help="exit 1 when the parameters file is not the generated one")
    p.add_argument("path", nargs="?", type=Path, default=YAML_PATH)
    args = p.parse_args(argv)
    text = render_yaml()
    if args.write_yaml:
        args.path.write_text(text, encoding="utf-8")
        print(f"wrote {args.path}")
        return 0
    same = args.path.is_file() and args.path.read_text(encoding="utf-8") == text
    state = "up to date" if same else "differs from the table; run python -m hle_ros.parameters --write-yaml"
    print(f"{args.path}: {state}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
