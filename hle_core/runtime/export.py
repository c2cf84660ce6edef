"""ONNX export: an :class:`~hle_core.model.HLENet` to a self-describing ONNX file, and its metadata read back.

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

Building a TensorRT engine from such a file is :mod:`hle_core.runtime.tensorrt_build` (which imports this
module, never the other way round).
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
from typing import Any

import torch
from torch import nn

from ..config import ConfigError, HLEConfig
from ..model import OUTPUT_NAMES, HLENet, load_model

__all__ = [
    "ONNX_OPSET", "INPUT_NAME", "METADATA_FORMAT", "TENSORRT_SUPPORTED_OPS", "OnnxExportError", "OnnxMetadataError",
    "OnnxModelInfo", "export_onnx", "onnx_metadata", "read_onnx_metadata", "onnx_io_shapes", "check_tensorrt_ops",
    "simplify_onnx", "output_names_for",
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
