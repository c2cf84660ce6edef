"""Export: an :class:`~hle_core.model.HLENet` to a self-describing ONNX file, and an ONNX file to a TensorRT engine.

ONNX (``export_onnx``): the legacy TorchScript exporter (``dynamo=False``, opset 17), input ``images``
``(B, 3, H, W)`` normalised with ``ModelConfig.mean/std``, outputs named after ``OUTPUT_NAMES`` (embedding,
sigma, sigma_spatial, seed; + semantic_logits in the Table-6 variant). The embedding's L2 normalisation, the σ
exponentials and the seed sigmoid are inside the graph, so every runtime returns exactly the
``HLENet.forward`` contract. The graph only uses operators that TensorRT's ONNX parser supports
(:data:`TENSORRT_SUPPORTED_OPS`, checked by :func:`check_tensorrt_ops`) and passes ``onnx.checker``.

Everything a consumer needs beyond the weights rides in ``metadata_props`` (:func:`onnx_metadata`): the
resolved config JSON (``HLEConfig.to_json()``), the class table, the decode parameters μ̂_k ``(K, D)`` and
σ_k ``(K,)`` as JSON lists, the input size (or ``dynamic``), mean/std. :func:`read_onnx_metadata` reads them
back, so a ROS node needs only this one file.

TensorRT (``build_tensorrt_engine``): the TensorRT Python API — ``trt.Builder``, a network filled by
``trt.OnnxParser``, an optimisation profile for dynamic inputs, ``BuilderFlag.FP16``, a workspace memory pool
limit — returning the serialized engine bytes. TensorRT is imported lazily; see docs/TENSORRT.md for what of
this path was executed (nothing against a real TensorRT in this project).
"""
from __future__ import annotations

import copy
import json
import logging
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from ..config import ConfigError, HLEConfig
from ..model import OUTPUT_NAMES, HLENet, load_model

__all__ = [
    "ONNX_OPSET", "INPUT_NAME", "METADATA_FORMAT", "TENSORRT_SUPPORTED_OPS", "OnnxExportError", "OnnxMetadataError",
    "OnnxModelInfo", "ProfileShapes", "TensorRTBuildError", "export_onnx", "onnx_metadata", "read_onnx_metadata",
    "onnx_io_shapes", "check_tensorrt_ops", "simplify_onnx", "build_tensorrt_engine", "output_names_for",
]

log = logging.getLogger("hle_core.runtime")

ONNX_OPSET = 17
INPUT_NAME = "images"
METADATA_FORMAT = "hle-onnx"
METADATA_VERSION = 1
#: ONNX operators the exported graph may contain: the subset of onnx-tensorrt's supported-operator list
#: (TensorRT 8.6 and 10.x, opset 17) that a DeepLabV3+ over torchvision backbones can lower to.
TENSORRT_SUPPORTED_OPS = frozenset({
    "Add", "AveragePool", "BatchNormalization", "Cast", "Clip", "Concat", "Constant", "ConstantOfShape", "Conv",
    "Div", "Exp", "Expand", "Flatten", "Gather", "GlobalAveragePool", "Identity", "MaxPool", "Mul",
    "ReduceL2", "ReduceMean", "ReduceSum", "Relu", "Reshape", "Resize", "Shape", "Sigmoid", "Slice", "Sqrt",
    "Squeeze", "Sub", "Transpose", "Unsqueeze", "Max", "Min", "Pow", "HardSigmoid", "HardSwish",
})
_DYNAMIC_AXES = {0: "batch", 2: "height", 3: "width"}


class OnnxExportError(RuntimeError):
    """The exported graph fails a check (onnx.checker, an operator TensorRT lacks, a bad simplification)."""


class OnnxMetadataError(ValueError):
    """An ONNX file lacks the HLE metadata (config, decode parameters) or carries an unreadable version."""


class TensorRTBuildError(RuntimeError):
    """TensorRT could not parse the ONNX file or build an engine; the message carries the parser's errors."""


@dataclass(frozen=True)
class ProfileShapes:
    """TensorRT optimisation profile of the ``images`` input: min / opt / max ``(B, 3, H, W)``."""

    min: tuple[int, int, int, int]
    opt: tuple[int, int, int, int]
    max: tuple[int, int, int, int]

    def __post_init__(self) -> None:
        for name in ("min", "opt", "max"):
            shape = getattr(self, name)
            if len(shape) != 4 or shape[1] != 3 or any(int(v) < 1 for v in shape):
                raise ValueError(f"profile {name} shape must be (B, 3, H, W) with positive sizes, got {shape}")
        if not all(a <= b <= c for a, b, c in zip(self.min, self.opt, self.max)):
            raise ValueError(f"profile shapes must satisfy min <= opt <= max per axis, got "
                             f"min={self.min} opt={self.opt} max={self.max}")

    @classmethod
    def static(cls, shape: tuple[int, int, int, int]) -> "ProfileShapes":
        s = tuple(int(v) for v in shape)
        return cls(s, s, s)  # type: ignore[arg-type]

    def as_lists(self) -> list[list[int]]:
        return [list(self.min), list(self.opt), list(self.max)]


@dataclass
class OnnxModelInfo:
    """What :func:`read_onnx_metadata` recovers from an exported file."""

    config: HLEConfig
    decode_params: dict[str, torch.Tensor]     # class_means (K, D) unit rows, class_sigma (K,) — float32 CPU
    input_name: str
    output_names: tuple[str, ...]
    height: int | None                         # None when dynamic
    width: int | None
    dynamic: bool
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    props: dict[str, str]                      # raw metadata_props


def output_names_for(model_or_cfg: HLENet | HLEConfig) -> tuple[str, ...]:
    """Graph output names in order: ``OUTPUT_NAMES`` (+ ``semantic_logits`` in the Table-6 variant)."""
    cfg = model_or_cfg.cfg if isinstance(model_or_cfg, HLENet) else model_or_cfg
    return OUTPUT_NAMES + (("semantic_logits",) if cfg.model.separate_semantic_branch else ())


def output_channels(cfg: HLEConfig) -> dict[str, int]:
    """Channel count of each output: D for the embedding, K for semantic logits, 1 for the scalar maps."""
    ch = {name: 1 for name in OUTPUT_NAMES}
    ch["embedding"] = cfg.model.embedding_dim
    if cfg.model.separate_semantic_branch:
        ch["semantic_logits"] = len(cfg.classes)
    return ch


class _TupleOutputs(nn.Module):
    """Export wrapper: ``HLENet``'s dict as a tuple in :func:`output_names_for` order (ONNX needs positions)."""

    def __init__(self, model: HLENet) -> None:
        super().__init__()
        self.model = model
        self.names = output_names_for(model)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(images)
        return tuple(out[name] for name in self.names)


def onnx_metadata(model: HLENet, height: int | None, width: int | None, dynamic: bool,
                  extra: dict[str, str] | None = None) -> dict[str, str]:
    """The ``metadata_props`` an exported file carries (all values strings; JSON where structured)."""
    cfg = model.cfg
    params = model.decode_params()
    props = {
        "hle.format": METADATA_FORMAT,
        "hle.version": str(METADATA_VERSION),
        "hle.config": cfg.to_json(),
        "hle.classes": json.dumps(cfg.classes.to_list()),
        "hle.decode_params": json.dumps({"class_means": params["class_means"].float().cpu().tolist(),
                                         "class_sigma": params["class_sigma"].float().cpu().tolist()}),
        "hle.input": json.dumps({"name": INPUT_NAME, "layout": "NCHW", "dynamic": bool(dynamic),
                                 "height": None if dynamic else int(height),  # type: ignore[arg-type]
                                 "width": None if dynamic else int(width),  # type: ignore[arg-type]
                                 "value_range": "(pixel / 255 - mean) / std"}),
        "hle.normalisation": json.dumps({"mean": list(cfg.model.mean), "std": list(cfg.model.std)}),
        "hle.outputs": json.dumps(list(output_names_for(model))),
        "hle.opset": str(ONNX_OPSET),
    }
    props.update(extra or {})
    return props


def _check_size(height: int | None, width: int | None, dynamic: bool) -> tuple[int, int]:
    """Validate the export size; returns the (H, W) of the dummy input used for tracing."""
    if dynamic:
        if (height is None) != (width is None):
            raise ValueError(f"give both --height and --width or neither, got height={height} width={width}")
    if height is None or width is None:
        if not dynamic:
            raise ValueError("a static export needs height and width (or dynamic=True)")
        return 256, 512                                     # tracing size only; the graph stays dynamic
    h, w = int(height), int(width)
    if h < 32 or w < 32 or h % 32 or w % 32:
        raise ValueError(f"height and width must be positive multiples of 32, got {height}x{width}")
    return h, w


def export_onnx(model: HLENet | str | Path, out: str | Path, *, height: int | None = 512, width: int | None = 1024,
                dynamic: bool = False, simplify: bool = False, opset: int = ONNX_OPSET,
                extra_metadata: dict[str, str] | None = None) -> Path:
    """Export ``model`` (an ``HLENet`` or a checkpoint path) to ``out``; returns the written path.

    Args:
        height, width: the static input size (multiples of 32); with ``dynamic`` they only set the tracing size.
        dynamic: batch, height and width become symbolic (``batch``, ``height``, ``width``).
        simplify: run onnxslim (or onnxsim) when installed; logged and skipped when neither is.
        extra_metadata: more ``metadata_props`` (e.g. the source checkpoint's hash).
    Raises:
        ValueError: a size that is not a positive multiple of 32.
        OnnxExportError: the graph fails ``onnx.checker`` or uses an operator TensorRT lacks.
    """
    import onnx

    if opset < 13:
        raise ValueError(f"opset must be >= 13 (Resize / ReduceL2 semantics TensorRT parses), got {opset}")
    if isinstance(model, (str, Path)):
        model = load_model(model)
    if not isinstance(model, HLENet):
        raise TypeError(f"export_onnx expects an HLENet or a checkpoint path, got {type(model).__name__}")
    h, w = _check_size(height, width, dynamic)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model = copy.deepcopy(model).float().cpu().eval()       # never move / retype the caller's model
    names = output_names_for(model)
    dummy = torch.randn(1, 3, h, w)
    axes = {name: dict(_DYNAMIC_AXES) for name in (INPUT_NAME, *names)} if dynamic else None
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # expected and harmless here: the legacy exporter's deprecation notice, and the tracer noting that
            # HLENet's input-shape check becomes a constant
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx.*")
            warnings.filterwarnings("ignore", message=r".*legacy TorchScript-based ONNX export.*")
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            torch.onnx.export(_TupleOutputs(model).eval(), (dummy,), tmp, dynamo=False, opset_version=opset,
                              input_names=[INPUT_NAME], output_names=list(names), dynamic_axes=axes,
                              do_constant_folding=True)
        proto = onnx.load(tmp)
        _fix_output_channels(proto, output_channels(model.cfg))
        if simplify:
            proto = simplify_onnx(proto)
        del proto.metadata_props[:]
        for key, value in onnx_metadata(model, height, width, dynamic, extra_metadata).items():
            proto.metadata_props.add(key=key, value=value)
        proto.producer_name = "hle_core"
        try:
            onnx.checker.check_model(proto, full_check=True)
        except onnx.checker.ValidationError as exc:
            raise OnnxExportError(f"exported graph fails onnx.checker: {exc}") from exc
        check_tensorrt_ops(proto)
        onnx.save(proto, tmp)
        os.replace(tmp, out)
    finally:
        Path(tmp).unlink(missing_ok=True)
    log.info("exported %s (%s, opset %d%s) to %s", model.cfg.model.backbone,
             "dynamic" if dynamic else f"{h}x{w}", opset, ", simplified" if simplify else "", out)
    return out


def _fix_output_channels(proto: Any, channels: dict[str, int]) -> None:
    """The tracer leaves the channel axis of sliced outputs symbolic; pin it (TensorRT and checks need it)."""
    for value_info in proto.graph.output:
        dims = value_info.type.tensor_type.shape.dim
        if value_info.name in channels and len(dims) == 4:
            dims[1].Clear()
            dims[1].dim_value = channels[value_info.name]


def check_tensorrt_ops(proto: Any) -> None:
    """Raise :class:`OnnxExportError` naming every operator outside :data:`TENSORRT_SUPPORTED_OPS`."""
    ops = {node.op_type for node in proto.graph.node}
    bad = sorted(ops - TENSORRT_SUPPORTED_OPS)
    if bad:
        raise OnnxExportError(f"graph uses operators outside the TensorRT-supported set: {bad}")


def simplify_onnx(proto: Any) -> Any:
    """Simplify with onnxslim, else onnxsim; returns ``proto`` unchanged (and logs why) when neither is installed."""
    try:
        import onnxslim
    except ImportError:
        onnxslim = None
    if onnxslim is not None:
        slim = onnxslim.slim(proto)
        log.info("simplified with onnxslim %s: %d -> %d nodes", getattr(onnxslim, "__version__", "?"),
                 len(proto.graph.node), len(slim.graph.node))
        return slim
    try:
        import onnxsim
    except ImportError:
        log.warning("simplify requested but neither onnxslim nor onnxsim is installed; graph left as exported")
        return proto
    simplified, ok = onnxsim.simplify(proto)
    if not ok:
        raise OnnxExportError("onnxsim could not validate the simplified graph")
    return simplified


def read_onnx_metadata(path: str | Path) -> OnnxModelInfo:
    """Read config, decode parameters and input description from an exported file (weights not needed).

    Raises:
        FileNotFoundError: no such file.
        OnnxMetadataError: the file is not an HLE export, or its metadata is unreadable.
    """
    import onnx

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX file not found: {path}")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:   # protobuf DecodeError and friends: not an ONNX file at all
        raise OnnxMetadataError(f"{path} is not a readable ONNX file ({type(exc).__name__}: {exc})") from exc
    props = {p.key: p.value for p in proto.metadata_props}
    return info_from_props(props, str(path))


def info_from_props(props: dict[str, str], source: str = "metadata") -> OnnxModelInfo:
    """Parse HLE ``metadata_props`` (from an ONNX file or an engine sidecar) into :class:`OnnxModelInfo`."""
    if props.get("hle.format") != METADATA_FORMAT:
        raise OnnxMetadataError(f"{source}: not an HLE export (metadata hle.format={props.get('hle.format')!r}, "
                                f"expected {METADATA_FORMAT!r}); export it with `hle export onnx`")
    if props.get("hle.version") != str(METADATA_VERSION):
        raise OnnxMetadataError(f"{source}: metadata version {props.get('hle.version')!r} unsupported "
                                f"(expected {METADATA_VERSION})")
    try:
        cfg = HLEConfig.from_json(props["hle.config"])
        params = json.loads(props["hle.decode_params"])
        inp = json.loads(props["hle.input"])
        outputs = tuple(json.loads(props["hle.outputs"]))
    except (KeyError, ValueError, ConfigError) as exc:
        raise OnnxMetadataError(f"{source}: unreadable HLE metadata: {exc!r}") from exc
    means = torch.tensor(params["class_means"], dtype=torch.float32)
    sigma = torch.tensor(params["class_sigma"], dtype=torch.float32)
    k, d = len(cfg.classes), cfg.model.embedding_dim
    if means.shape != (k, d) or sigma.shape != (k,):
        raise OnnxMetadataError(f"{source}: decode params of shape {tuple(means.shape)}, {tuple(sigma.shape)} "
                                f"do not match the config's K={k}, D={d}")
    return OnnxModelInfo(config=cfg, decode_params={"class_means": means, "class_sigma": sigma},
                         input_name=inp["name"], output_names=outputs, height=inp["height"], width=inp["width"],
                         dynamic=bool(inp["dynamic"]), mean=tuple(cfg.model.mean), std=tuple(cfg.model.std),
                         props=dict(props))


def onnx_io_shapes(path_or_proto: str | Path | Any) -> tuple[dict[str, tuple], dict[str, tuple]]:
    """``(inputs, outputs)``: name → shape tuple, a symbolic or unknown axis as ``-1`` (TensorRT's convention)."""
    import onnx

    proto = onnx.load(str(path_or_proto), load_external_data=False) \
        if isinstance(path_or_proto, (str, Path)) else path_or_proto
    init = {i.name for i in proto.graph.initializer}

    def shape(vi: Any) -> tuple:
        return tuple(d.dim_value if d.HasField("dim_value") else -1 for d in vi.type.tensor_type.shape.dim)

    inputs = {vi.name: shape(vi) for vi in proto.graph.input if vi.name not in init}
    outputs = {vi.name: shape(vi) for vi in proto.graph.output}
    return inputs, outputs


# --- TensorRT ------------------------------------------------------------------------------------
def build_tensorrt_engine(onnx_path: str | Path, *, fp16: bool = False, workspace_mb: int = 1024,
                          profile: ProfileShapes | None = None, trt: ModuleType | None = None,
                          verbose: bool = False, int8: bool = False,
                          calibration_cache: str | Path | None = None) -> bytes:
    """Build a serialized TensorRT engine from an ONNX file with the TensorRT Python API.

    Args:
        onnx_path: an exported graph (its ``images`` input static or dynamic).
        fp16: set ``BuilderFlag.FP16`` (inputs/outputs stay float32; layers may run in half precision).
        workspace_mb: ``MemoryPoolType.WORKSPACE`` limit in MiB.
        profile: optimisation profile of ``images``; required when the input has a dynamic axis, ignored
            (apart from a consistency check) when it is static.
        trt: the ``tensorrt`` module (tests inject a double); imported when None.
        int8: set ``BuilderFlag.INT8``: for a QDQ file (``hle export onnx --int8``, explicit quantization) the
            scales come from its Q/DQ nodes; for an fp32 file ``calibration_cache`` is required.
        calibration_cache: a TensorRT calibration cache (:func:`hle_core.runtime.quantize.quantize_onnx`
            writes ``<int8>.onnx.calibration.cache``, same ranges as the QDQ file); handed to the builder
            through a calibrator that only reads it (implicit quantization of the fp32 graph). Implies int8.
    Returns:
        The serialized engine (``bytes``).
    Raises:
        TensorRTBuildError: parse errors (all of them listed) or a failed build.
        ValueError: a dynamic input without ``profile``, or a profile that contradicts a static input.
    """
    if trt is None:
        from .tensorrt_backend import import_tensorrt

        trt = import_tensorrt()
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise FileNotFoundError(f"ONNX file not found: {onnx_path}")
    if workspace_mb < 1:
        raise ValueError(f"workspace_mb must be >= 1, got {workspace_mb}")
    logger = trt.Logger(trt.Logger.VERBOSE if verbose else trt.Logger.WARNING)
    builder = trt.Builder(logger)
    major = int(str(trt.__version__).split(".")[0])
    # TensorRT >= 10: networks are always explicit-batch and the flag is deprecated; before 10 it is required.
    flags = 0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise TensorRTBuildError(f"TensorRT {trt.__version__} could not parse {onnx_path}: " + "; ".join(errors))

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    if calibration_cache is not None:
        from .tensorrt_backend import cache_calibrator

        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = cache_calibrator(trt, Path(calibration_cache))
    elif int8:
        from .quantize import QUANTIZATION_KEY

        if QUANTIZATION_KEY not in read_onnx_metadata(onnx_path).props:
            raise ValueError(f"int8 TensorRT build of the fp32 graph {onnx_path} needs a calibration cache "
                             f"(hle export onnx --int8 writes one), or pass the int8 (QDQ) export instead")
        config.set_flag(trt.BuilderFlag.INT8)
    if fp16:
        if not builder.platform_has_fast_fp16:
            log.warning("FP16 requested but this GPU has no fast FP16; building with the flag anyway")
        config.set_flag(trt.BuilderFlag.FP16)

    inp = network.get_input(0)
    if network.num_inputs != 1 or inp.name != INPUT_NAME:
        raise TensorRTBuildError(f"{onnx_path}: expected one input named {INPUT_NAME!r}, got "
                                 f"{[network.get_input(i).name for i in range(network.num_inputs)]}")
    in_shape = tuple(int(v) for v in inp.shape)
    if any(v < 0 for v in in_shape):
        if profile is None:
            raise ValueError(f"{onnx_path} has a dynamic input {in_shape}; give min/opt/max shapes")
        for name, shape in zip(("min", "opt", "max"), (profile.min, profile.opt, profile.max)):
            clash = [(i, a, b) for i, (a, b) in enumerate(zip(in_shape, shape)) if a >= 0 and a != b]
            if clash:
                raise ValueError(f"profile {name} shape {shape} contradicts the static axes of input {in_shape}")
        opt_profile = builder.create_optimization_profile()
        opt_profile.set_shape(INPUT_NAME, profile.min, profile.opt, profile.max)
        config.add_optimization_profile(opt_profile)
    elif profile is not None and not (profile.min == profile.opt == profile.max == in_shape):
        raise ValueError(f"{onnx_path} has a static input {in_shape}; profile {profile} does not match it")

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise TensorRTBuildError(f"TensorRT {trt.__version__} failed to build an engine from {onnx_path} "
                                 f"(fp16={fp16}, int8={int8 or calibration_cache is not None}, "
                                 f"workspace={workspace_mb} MiB); see the TensorRT log above")
    return bytes(serialized)
