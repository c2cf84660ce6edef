"""int8 for CPUs: static quantization (QDQ) of an exported network, calibrated on synthetic street scenes.

``quantize_onnx`` runs onnxruntime's ``quantize_static`` on an ONNX file written by ``hle export onnx``:
QuantizeLinear / DequantizeLinear pairs around every quantizable operator but the output head
(:func:`float_head_nodes`) (``QuantFormat.QDQ``), int8 weights
per output channel, activations as uint8 with MinMax ranges (onnxruntime's recommended CPU setting) measured on
``num_calibration`` scenes of :class:`hle_core.data.SceneGenerator` drawn with ``calibration_seed`` — by default
a seed that neither training (1), validation (1000003), decoder tuning (2000003) nor evaluation (9090917, 4242)
uses. The network's inputs are normalised exactly as the pipeline does (``ModelConfig.mean/std``).

The quantized file keeps the HLE metadata of its source (so every backend reads config and decode parameters
from it as from any export) plus ``hle.quantization`` (JSON: format, calibration count and seed, method). The
activation ranges are also written in two cache formats beside it:

* ``<out>.calibration.json``: onnxruntime's own cache (``calibration_cache_path`` of ``quantize_static``);
  re-quantizing with it skips the calibration runs;
* ``<out>.calibration.cache``: TensorRT's calibration-cache text format (``TRT-<version>-<calibrator>``
  header, then ``tensor: <big-endian IEEE-754 float32 scale in hex>`` per tensor, scale = max |range| / 127),
  which :func:`hle_core.runtime.tensorrt_build.build_tensorrt_engine` hands to TensorRT's INT8 builder through a
  cache-only calibrator when building an engine from the fp32 export (TensorRT's implicit quantization; the
  QDQ file itself is TensorRT's explicit-quantization input).
"""
from __future__ import annotations

import json
import logging
import math
import os
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np

from .export import read_onnx_metadata

__all__ = [
    "CALIBRATION_SEED", "QUANTIZATION_KEY", "QuantizationError", "QuantizationInfo", "SceneCalibrationReader",
    "calibration_images", "quantize_onnx", "quantization_info", "tensorrt_calibration_cache",
    "read_tensorrt_calibration_cache", "int8_output_path", "float_head_nodes",
]

log = logging.getLogger("hle_core.runtime")

#: Default scene seed of the calibration set: not a seed of training, validation, tuning or evaluation.
CALIBRATION_SEED = 5555
#: ``metadata_props`` key of a quantized file.
QUANTIZATION_KEY = "hle.quantization"
#: Calibrator name in the TensorRT cache header (the one TensorRT recommends for CNNs).
TENSORRT_CALIBRATOR = "EntropyCalibration2"


class QuantizationError(RuntimeError):
    """Quantization could not run (bad input file, onnxruntime's quantizer failing, a bad calibration cache)."""


@dataclass(frozen=True)
class QuantizationInfo:
    """What :func:`quantize_onnx` wrote."""

    onnx: Path                    # the int8 (QDQ) model
    ort_cache: Path               # onnxruntime calibration ranges (JSON)
    tensorrt_cache: Path          # the same ranges in TensorRT's calibration-cache format
    num_calibration: int
    calibration_seed: int
    size: tuple[int, int]
    tensors: int                  # activation tensors of the fp32 graph with a range (TensorRT cache entries)


def int8_output_path(out: str | Path) -> Path:
    """``model.onnx`` → ``model.int8.onnx`` (the default name of the quantized file beside the fp32 one)."""
    out = Path(out)
    return out.with_name(out.stem + ".int8" + out.suffix)


def calibration_images(num: int, size: tuple[int, int], seed: int = CALIBRATION_SEED,
                       mean: tuple[float, float, float] = (0.485, 0.456, 0.406),
                       std: tuple[float, float, float] = (0.229, 0.224, 0.225)) -> Iterator[np.ndarray]:
    """``num`` synthetic street scenes of ``size`` ``(H, W)`` (scene seed ``seed``, indices 0..num-1) as network
    inputs: ``(1, 3, H, W)`` float32, normalised with ``mean`` / ``std`` as :class:`~hle_core.pipeline.Pipeline`
    does. Deterministic."""
    from ..data import SceneGenerator

    if num < 1:
        raise ValueError(f"calibration needs at least one image, got {num}")
    gen = SceneGenerator(tuple(size), seed=seed)
    m = np.asarray(mean, np.float32).reshape(1, 3, 1, 1)
    s = np.asarray(std, np.float32).reshape(1, 3, 1, 1)
    for i in range(num):
        image = np.asarray(gen.frame(i).image, np.float32) / 255.0                 # H x W x 3 RGB
        yield np.ascontiguousarray((image.transpose(2, 0, 1)[None] - m) / s)


class SceneCalibrationReader:
    """onnxruntime ``CalibrationDataReader`` over :func:`calibration_images` (one image per ``get_next``)."""

    def __init__(self, input_name: str, num: int, size: tuple[int, int], seed: int = CALIBRATION_SEED,
                 mean: tuple[float, float, float] = (0.485, 0.456, 0.406),
                 std: tuple[float, float, float] = (0.229, 0.224, 0.225)) -> None:
        self.input_name = input_name
        self._args = (num, tuple(size), seed, tuple(mean), tuple(std))
        self._images = calibration_images(*self._args)
        self.served = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        image = next(self._images, None)
        if image is None:
            return None
        self.served += 1
        return {self.input_name: image}

    def rewind(self) -> None:
        self._images = calibration_images(*self._args)
        self.served = 0


def quantization_info(path: str | Path) -> dict | None:
    """The ``hle.quantization`` metadata of an ONNX file, or None for an fp32 export."""
    info = read_onnx_metadata(path)
    raw = info.props.get(QUANTIZATION_KEY)
    return None if raw is None else json.loads(raw)


def quantize_onnx(fp32_onnx: str | Path, out: str | Path | None = None, *, num_calibration: int = 32,
                  calibration_seed: int = CALIBRATION_SEED, size: tuple[int, int] | None = None,
                  per_channel: bool = True, reduce_range: bool = False,
                  tensorrt_version: str = "8601") -> QuantizationInfo:
    """Static int8 quantization (QDQ) of an HLE ONNX export, calibrated on synthetic scenes (module docstring).

    Args:
        fp32_onnx: a file written by ``hle export onnx`` (static or dynamic input).
        out: the int8 file (default: :func:`int8_output_path` of ``fp32_onnx``).
        num_calibration: calibration scenes (≥ 1).
        calibration_seed: their scene seed (keep it away from evaluation seeds).
        size: ``(H, W)`` of the calibration scenes; default the export's static size, (256, 512) when dynamic.
        per_channel: int8 weights per output channel (else per tensor).
        reduce_range: 7-bit weights (for CPUs without VNNI whose int8 accumulation may saturate).
        tensorrt_version: the version number written in the TensorRT cache header (e.g. ``8601`` for 8.6.1).
    Returns:
        :class:`QuantizationInfo`.
    Raises:
        FileNotFoundError, OnnxMetadataError (not an HLE export), ValueError (bad counts / sizes),
        QuantizationError (already quantized, or onnxruntime's quantizer failed).
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import load_tensors_data

    src = Path(fp32_onnx)
    info = read_onnx_metadata(src)                     # raises for a missing file or a non-HLE ONNX
    if QUANTIZATION_KEY in info.props:
        raise QuantizationError(f"{src} is already quantized ({info.props[QUANTIZATION_KEY]}); "
                                "quantize the fp32 export")
    if num_calibration < 1:
        raise ValueError(f"num_calibration must be >= 1, got {num_calibration}")
    if size is None:
        size = (info.height, info.width) if not info.dynamic else (256, 512)
    h, w = int(size[0]), int(size[1])
    if h < 32 or w < 32 or h % 32 or w % 32:
        raise ValueError(f"calibration size must be multiples of 32, got {h}x{w}")
    if not info.dynamic and (h, w) != (info.height, info.width):
        raise ValueError(f"{src} takes {info.height}x{info.width} inputs; calibration size {h}x{w} differs")
    dst = (Path(out) if out is not None else int8_output_path(src)).resolve()   # absolute: the calibrator chdirs
    src = src.resolve()
    dst.parent.mkdir(parents=True, exist_ok=True)
    ort_cache = dst.with_name(dst.name + ".calibration.json")
    trt_cache = dst.with_name(dst.name + ".calibration.cache")
    ort_cache.unlink(missing_ok=True)                  # a stale cache would silently replace this calibration
    reader = SceneCalibrationReader(info.input_name, num_calibration, (h, w), calibration_seed, info.mean, info.std)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    os.close(fd)
    try:
        with tempfile.TemporaryDirectory(prefix="hle_quant_") as work:
            # onnxruntime's recommended pre-processing (shape inference, graph optimisation) before calibration
            pre = Path(work) / "pre.onnx"
            try:
                from onnxruntime.quantization.shape_inference import quant_pre_process
                quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
            except Exception as exc:                               # noqa: BLE001 - optional step, logged
                log.warning("quantization pre-processing skipped (%s: %s)", type(exc).__name__, exc)
                pre = src
            exclude = float_head_nodes(onnx.load(str(pre), load_external_data=False))
            cwd = os.getcwd()
            os.chdir(work)                                         # the calibrator writes augmented_model.onnx here
            try:
                quantize_static(str(pre), tmp, reader, quant_format=QuantFormat.QDQ, per_channel=per_channel,
                                reduce_range=reduce_range, activation_type=QuantType.QUInt8,
                                weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                                calibration_cache_path=str(ort_cache), nodes_to_exclude=exclude)
            finally:
                os.chdir(cwd)
        if reader.served != num_calibration:
            raise QuantizationError(f"calibration saw {reader.served} of {num_calibration} scenes")
        proto = onnx.load(tmp)
        del proto.metadata_props[:]
        for key, value in info.props.items():
            proto.metadata_props.add(key=key, value=value)
        meta = {"format": "QDQ", "weights": "int8 per-channel" if per_channel else "int8 per-tensor",
                "activations": "uint8", "method": "MinMax", "num_calibration": num_calibration,
                "calibration_seed": calibration_seed, "calibration_size": [h, w], "source": src.name}
        proto.metadata_props.add(key=QUANTIZATION_KEY, value=json.dumps(meta, sort_keys=True))
        onnx.save(proto, tmp)
        os.replace(tmp, dst)
    except (OSError, ValueError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise QuantizationError(f"quantizing {src} failed: {type(exc).__name__}: {exc}") from exc
    finally:
        Path(tmp).unlink(missing_ok=True)
    ranges = {}
    for name, data in load_tensors_data(ort_cache).data.items():
        lo, hi = data.range_value
        ranges[name] = (float(np.min(lo)), float(np.max(hi)))
    # TensorRT names its tensors after the fp32 graph it parses: keep the ranges of tensors of that graph, but
    # not of the float head (a tensor without a scale keeps TensorRT's higher precision, as in the QDQ file)
    fp32_proto = onnx.load(str(src), load_external_data=False)
    graph, head = fp32_proto.graph, set(float_head_nodes(fp32_proto))
    names = {v.name for v in graph.input} | {o for node in graph.node if node.name not in head for o in node.output}
    ranges = {name: r for name, r in ranges.items() if name in names}
    trt_cache.write_text(tensorrt_calibration_cache(ranges, tensorrt_version))
    log.info("quantized %s -> %s (QDQ, %d calibration scenes of seed %d at %dx%d, %d activation ranges)",
             src, dst, num_calibration, calibration_seed, h, w, len(ranges))
    return QuantizationInfo(onnx=dst, ort_cache=ort_cache, tensorrt_cache=trt_cache, num_calibration=num_calibration,
                            calibration_seed=calibration_seed, size=(h, w), tensors=len(ranges))


def float_head_nodes(proto) -> list[str]:
    """Names of the nodes from the last ``Conv`` on (the output head, its upsampling and the per-output
    normalisation / exp / sigmoid), which stay float: one tensor there carries the embedding (|x| ≤ 1), the σ
    logits and the seed logits together, and a per-tensor uint8 scale sized for the logits leaves the embedding
    a handful of levels (on seed 2000003 scenes, quantizing it cost several PQ_th points)."""
    nodes = list(proto.graph.node)
    last_conv = max((i for i, n in enumerate(nodes) if n.op_type == "Conv"), default=len(nodes))
    return [n.name for n in nodes[last_conv:] if n.name]


def tensorrt_calibration_cache(ranges: Mapping[str, tuple[float, float]], tensorrt_version: str = "8601",
                               calibrator: str = TENSORRT_CALIBRATOR) -> str:
    """TensorRT's calibration-cache text for activation ranges ``{tensor: (lowest, highest)}``.

    One header line ``TRT-<version>-<calibrator>``, then ``<tensor>: <hex>`` per tensor in name order, where
    ``<hex>`` is the big-endian IEEE-754 float32 of the symmetric int8 scale ``max(|lowest|, |highest|) / 127``
    (TensorRT's INT8 is symmetric; a zero range gets the smallest positive scale).
    """
    if not str(tensorrt_version).isdigit():
        raise ValueError(f"tensorrt_version must be digits like 8601, got {tensorrt_version!r}")
    lines = [f"TRT-{tensorrt_version}-{calibrator}"]
    for name in sorted(ranges):
        lo, hi = ranges[name]
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise QuantizationError(f"tensor {name!r} has a non-finite calibration range ({lo}, {hi})")
        if ":" in name or "\n" in name:
            raise QuantizationError(f"tensor name {name!r} cannot be written to a TensorRT calibration cache")
        scale = max(abs(lo), abs(hi)) / 127.0 or np.finfo(np.float32).tiny
        lines.append(f"{name}: {struct.pack('>f', scale).hex()}")
    return "\n".join(lines) + "\n"


def read_tensorrt_calibration_cache(data: str | bytes) -> tuple[str, dict[str, float]]:
    """Parse :func:`tensorrt_calibration_cache` output: ``(header, {tensor: scale})``.

    Raises:
        QuantizationError: not a TensorRT calibration cache.
    """
    text = data.decode() if isinstance(data, bytes) else data
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines or not lines[0].startswith("TRT-"):
        raise QuantizationError(f"not a TensorRT calibration cache (header {lines[0] if lines else ''!r})")
    scales = {}
    for line in lines[1:]:
        name, sep, value = line.rpartition(": ")
        try:
            scales[name] = struct.unpack(">f", bytes.fromhex(value))[0]
        except ValueError:
            sep = ""
        if not sep or not name:
            raise QuantizationError(f"bad TensorRT calibration cache line {line!r}")
    return lines[0], scales
