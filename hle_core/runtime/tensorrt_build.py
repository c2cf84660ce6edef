"""Building a TensorRT engine from an exported ONNX file (:mod:`hle_core.runtime.export`).

``build_tensorrt_engine``: the TensorRT Python API — ``trt.Builder``, a network filled by ``trt.OnnxParser``, an
optimisation profile (:class:`ProfileShapes`) for dynamic inputs, ``BuilderFlag.FP16`` / ``INT8`` (a QDQ file, or
an fp32 file with a calibration cache read by :func:`cache_calibrator`), a workspace memory pool limit —
returning the serialized engine bytes. TensorRT is imported lazily (:func:`import_tensorrt`); see
docs/TENSORRT.md for what of this path was executed (nothing against a real TensorRT in this project). The
backend that runs (and caches) the engines is :mod:`hle_core.runtime.tensorrt_backend`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from .base import BackendUnavailable
from .export import INPUT_NAME, read_onnx_metadata

__all__ = ["ProfileShapes", "TensorRTBuildError", "build_tensorrt_engine", "cache_calibrator", "import_tensorrt"]

log = logging.getLogger("hle_core.runtime")


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


def import_tensorrt() -> ModuleType:
    """``import tensorrt`` or raise :class:`BackendUnavailable` saying why and what to use instead."""
    try:
        import tensorrt
    except Exception as exc:   # ImportError, or a broken install raising OSError on its shared libraries
        raise BackendUnavailable(f"TensorRT is not importable here ({type(exc).__name__}: {exc}); install the "
                                 f"TensorRT Python package matching your CUDA, or use backend onnxruntime / torch")\
            from exc
    return tensorrt


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


def cache_calibrator(trt: ModuleType, cache_path: str | Path) -> Any:
    """A ``trt.IInt8EntropyCalibrator2`` that only reads the calibration cache at ``cache_path``.

    TensorRT asks ``read_calibration_cache()`` first and, given ranges, never asks for a batch; the cache is
    the text written by :func:`hle_core.runtime.quantize.tensorrt_calibration_cache` (checked here, so a
    wrong file fails before a build). ``get_batch`` returns None ("no more data") should TensorRT ask anyway.

    Raises:
        FileNotFoundError: no such file. QuantizationError: not a TensorRT calibration cache.
    """
    from .quantize import TENSORRT_CALIBRATOR, read_tensorrt_calibration_cache

    path = Path(cache_path)
    if not path.is_file():
        raise FileNotFoundError(f"TensorRT calibration cache not found: {path}")
    data = path.read_bytes()
    header, scales = read_tensorrt_calibration_cache(data)
    if not header.endswith(TENSORRT_CALIBRATOR):
        log.warning(f"{path}: calibration cache header {header!r} is not {TENSORRT_CALIBRATOR}; TensorRT may ignore it")
    base = trt.IInt8EntropyCalibrator2

    class CacheCalibrator(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            base.__init__(self)
            self.cache, self.path, self.num_tensors = data, path, len(scales)

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names, p_str=None):                 # noqa: ARG002 - TensorRT's signature
            return None

        def read_calibration_cache(self) -> bytes:
            return self.cache

        def write_calibration_cache(self, cache) -> None:       # noqa: ARG002 - the cache is ours, read-only
            return None

    return CacheCalibrator()
