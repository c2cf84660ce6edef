"""TensorRT backend: a serialized engine run on torch CUDA tensors (no pycuda, one stream, no host round trip).

Inputs and outputs are torch CUDA tensors whose ``data_ptr()`` is bound with ``set_tensor_address``; the
engine runs with ``execute_async_v3`` on ``torch.cuda.current_stream()``, so decoding (torch, same stream)
follows it without a synchronisation or a copy to the host.

Engines are only loaded through their sidecar (``engine_cache``): a file built by another TensorRT, on
another GPU, from another ONNX graph, precision or input profile is refused (:class:`ForeignEngineError`),
and an engine TensorRT itself cannot deserialize raises :class:`EngineMismatchError` naming both versions.
The engine's I/O tensor names and shapes are checked against the ONNX file's (:func:`check_engine_io`).

Never executed against a real TensorRT in this project (none installable, see docs/TENSORRT.md); the logic
is tested against a recording test double of the ``tensorrt`` module.
"""
from __future__ import annotations

import logging
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from .base import Backend, BackendUnavailable
from .engine_cache import EngineCache, EngineKey, ForeignEngineError, file_sha256, verify_engine, write_engine
from .export import INPUT_NAME, info_from_props, onnx_io_shapes, read_onnx_metadata
from .tensorrt_build import ProfileShapes, build_tensorrt_engine, cache_calibrator, import_tensorrt

__all__ = ["TensorRTBackend", "EngineMismatchError", "EngineIOMismatchError", "import_tensorrt",
           "check_engine_io", "engine_io_shapes", "running_environment", "ForeignEngineError", "resolve_profile",
           "engine_key", "export_engine", "DEFAULT_DYNAMIC_PROFILE", "cache_calibrator"]

log = logging.getLogger("hle_core.runtime")


class EngineMismatchError(RuntimeError):
    """The running TensorRT cannot deserialize an engine file (built by another TensorRT version / GPU)."""


class EngineIOMismatchError(ValueError):
    """The engine's input/output tensors (names, ranks, static sizes) differ from the ONNX file's."""


def _require_cuda(device: str | torch.device) -> torch.device:
    device = torch.device(device)
    if device.type != "cuda":
        raise ValueError(f"the TensorRT backend runs on a CUDA device, got device={device}")
    if not torch.cuda.is_available():
        raise BackendUnavailable("the TensorRT backend needs a CUDA GPU; torch.cuda.is_available() is False")
    return device


def _gpu_identity(device: torch.device) -> tuple[str, tuple[int, int]]:
    """(GPU name, compute capability) of ``device``."""
    return torch.cuda.get_device_name(device), tuple(torch.cuda.get_device_capability(device))  # type: ignore


def _current_stream_handle(device: torch.device) -> int:
    """The raw ``cudaStream_t`` of torch's current stream on ``device``."""
    return torch.cuda.current_stream(device).cuda_stream


def running_environment(trt: ModuleType, device: torch.device) -> dict[str, Any]:
    """The key fields an engine must match to run here: TensorRT version, GPU name, compute capability."""
    name, cc = _gpu_identity(device)
    return {"tensorrt_version": str(trt.__version__), "gpu_name": name, "compute_capability": tuple(cc)}


#: Profile used for a dynamic ONNX file when neither a profile nor an input size is given (logged).
DEFAULT_DYNAMIC_PROFILE = ProfileShapes((1, 3, 256, 512), (1, 3, 512, 1024), (1, 3, 1024, 2048))


def resolve_profile(onnx_input_shape: tuple, profile: ProfileShapes | None = None,
                    input_size: tuple[int, int] | None = None,
                    default: ProfileShapes | None = None) -> ProfileShapes:
    """The optimisation profile for an ONNX input shape (``-1`` = dynamic axis).

    Static input: its own shape (a different ``profile`` is a ValueError). Dynamic input: ``profile``, else
    ``input_size`` ``(H, W)`` as a batch-1 static profile, else ``default`` (logged), else ValueError.
    """
    shape = tuple(int(v) for v in onnx_input_shape)
    if len(shape) != 4:
        raise ValueError(f"expected a 4-D (B, 3, H, W) ONNX input, got {shape}")
    if all(v > 0 for v in shape):
        static = ProfileShapes.static(shape)  # type: ignore[arg-type]
        if profile is not None and profile != static:
            raise ValueError(f"the ONNX input is static {shape}; the requested profile {profile} differs")
        return static
    if profile is None and input_size is not None:
        profile = ProfileShapes.static((shape[0] if shape[0] > 0 else 1, 3, int(input_size[0]), int(input_size[1])))
    if profile is None:
        if default is None:
            raise ValueError(f"the ONNX input is dynamic {shape}: give min/opt/max shapes or an input size")
        log.warning(f"dynamic ONNX input {shape} and no profile given: using min={default.min} opt={default.opt} "
                    f"max={default.max}")
        profile = default
    for name, s in zip(("min", "opt", "max"), (profile.min, profile.opt, profile.max)):
        if any(a > 0 and a != b for a, b in zip(shape, s)):
            raise ValueError(f"profile {name} shape {s} contradicts the static axes of the ONNX input {shape}")
    return profile


def engine_key(onnx_path: str | Path, trt: ModuleType, device: torch.device, *, fp16: bool, workspace_mb: int,
               profile: ProfileShapes, int8: bool = False) -> EngineKey:
    """The :class:`EngineKey` of building ``onnx_path`` here with these settings (``int8`` wins over fp16)."""
    env = running_environment(trt, device)
    return EngineKey(tensorrt_version=env["tensorrt_version"], gpu_name=env["gpu_name"],
                     compute_capability=env["compute_capability"], onnx_sha256=file_sha256(onnx_path),
                     precision="int8" if int8 else ("fp16" if fp16 else "fp32"),
                     input_shapes=(profile.min, profile.opt, profile.max), workspace_mb=int(workspace_mb))


def _io_lists(inputs: dict[str, tuple], outputs: dict[str, tuple]) -> dict[str, dict[str, list[int]]]:
    return {"inputs": {k: list(v) for k, v in inputs.items()}, "outputs": {k: list(v) for k, v in outputs.items()}}


def export_engine(onnx_path: str | Path, out: str | Path, *, fp16: bool = False, workspace_mb: int = 1024,
                  profile: ProfileShapes | None = None, device: str | torch.device = "cuda",
                  trt: ModuleType | None = None, verbose: bool = False, int8: bool = False,
                  calibration_cache: str | Path | None = None) -> tuple[Path, EngineKey]:
    """``hle export tensorrt``: build an engine for ``onnx_path`` and write it to ``out`` with its sidecar.

    ``int8`` / ``calibration_cache``: as :func:`~hle_core.runtime.export.build_tensorrt_engine` (precision
    ``int8`` in the engine key)."""
    int8 = int8 or calibration_cache is not None
    trt = trt if trt is not None else import_tensorrt()
    device = _require_cuda(device)
    onnx_path = Path(onnx_path)
    info = read_onnx_metadata(onnx_path)
    inputs, outputs = onnx_io_shapes(onnx_path)
    in_shape = inputs[INPUT_NAME]
    profile = resolve_profile(in_shape, profile)
    engine = build_tensorrt_engine(onnx_path, fp16=fp16, workspace_mb=workspace_mb,
                                   profile=profile if any(v < 0 for v in in_shape) else None, trt=trt, verbose=verbose,
                                   int8=int8, calibration_cache=calibration_cache)
    key = engine_key(onnx_path, trt, device, fp16=fp16, workspace_mb=workspace_mb, profile=profile, int8=int8)
    path = write_engine(out, engine, key, metadata=info.props, onnx_io=_io_lists(inputs, outputs),
                        onnx_path=onnx_path.resolve())
    return path, key


def _shapes_compatible(a: tuple, b: tuple) -> bool:
    return len(a) == len(b) and all(x == y or x < 0 or y < 0 for x, y in zip(a, b))


def check_engine_io(engine_inputs: dict[str, tuple], engine_outputs: dict[str, tuple],
                    onnx_inputs: dict[str, tuple], onnx_outputs: dict[str, tuple]) -> None:
    """Compare an engine's I/O tensors with the ONNX graph's: same names, same ranks, same static sizes.

    Shapes are tuples of ints, ``-1`` for a dynamic axis (compatible with any size).

    Raises:
        EngineIOMismatchError: listing every missing, unexpected or incompatible tensor.
    """
    problems = []
    for kind, eng, ref in (("input", engine_inputs, onnx_inputs), ("output", engine_outputs, onnx_outputs)):
        for name in sorted(set(ref) - set(eng)):
            problems.append(f"{kind} {name!r} missing from the engine")
        for name in sorted(set(eng) - set(ref)):
            problems.append(f"engine has an unexpected {kind} {name!r}")
        for name in sorted(set(eng) & set(ref)):
            a, b = tuple(int(v) for v in eng[name]), tuple(int(v) for v in ref[name])
            if not _shapes_compatible(a, b):
                problems.append(f"{kind} {name!r}: engine shape {a}, ONNX shape {b}")
    if problems:
        raise EngineIOMismatchError("engine I/O does not match the ONNX file: " + "; ".join(problems))


def engine_io_shapes(engine: Any, trt: ModuleType) -> tuple[dict[str, tuple], dict[str, tuple]]:
    """``(inputs, outputs)`` name → shape of a deserialized engine (TensorRT ≥ 8.5 named-tensor API)."""
    inputs, outputs = {}, {}
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        shape = tuple(int(v) for v in engine.get_tensor_shape(name))
        (inputs if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else outputs)[name] = shape
    return inputs, outputs


class TensorRTBackend(Backend):
    """Run a cached / verified TensorRT engine.

    Args:
        engine_path: the engine; its sidecar (``<engine>.json``) must exist and match.
        device: a CUDA device.
        expected_key: the full :class:`EngineKey` required (from :meth:`from_onnx`); without it only the
            TensorRT version and GPU are checked against the running ones.
        trt: the ``tensorrt`` module (tests inject a double); imported when None.
    """

    name = "tensorrt"
    built: bool = False          # True when from_onnx had to build the engine (not a cache hit)

    def __init__(self, engine_path: str | Path, *, device: str | torch.device = "cuda",
                 expected_key: EngineKey | None = None, trt: ModuleType | None = None) -> None:
        self.trt = trt if trt is not None else import_tensorrt()
        self.device = _require_cuda(device)
        self.engine_path = Path(engine_path)
        env = running_environment(self.trt, self.device)
        doc = verify_engine(self.engine_path, expected_key, environment=None if expected_key else env)
        self.key: EngineKey = doc["key"]
        info = info_from_props(doc["metadata"], f"{self.engine_path} sidecar")
        self.config = info.config
        self.decode_params = {k: v.to(self.device) for k, v in info.decode_params.items()}
        self.output_names = info.output_names

        trt = self.trt
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
        if self.engine is None:
            raise EngineMismatchError(
                f"TensorRT {trt.__version__} on {env['gpu_name']} (sm {env['compute_capability']}) could not "
                f"deserialize {self.engine_path}, built by TensorRT {self.key.tensorrt_version} on "
                f"{self.key.gpu_name} (sm {tuple(self.key.compute_capability)}); rebuild it from its ONNX file")
        inputs, outputs = engine_io_shapes(self.engine, trt)
        onnx_io = doc["onnx_io"]
        check_engine_io(inputs, outputs, onnx_io["inputs"], onnx_io["outputs"])
        if set(outputs) != set(self.output_names):
            raise EngineIOMismatchError(f"engine outputs {sorted(outputs)} differ from the metadata's "
                                        f"{list(self.output_names)}")
        dtypes = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16}
        self._out_dtypes = {}
        for name in (INPUT_NAME, *self.output_names):
            dt = self.engine.get_tensor_dtype(name)
            if dt not in dtypes:
                raise EngineIOMismatchError(f"tensor {name!r} has TensorRT dtype {dt}, expected FLOAT or HALF")
            self._out_dtypes[name] = dtypes[dt]
        self.dtype = self._out_dtypes[INPUT_NAME]
        self.profile = ProfileShapes(*self.key.input_shapes)  # type: ignore[arg-type]
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise RuntimeError(f"TensorRT could not create an execution context for {self.engine_path} "
                               f"(out of GPU memory?)")

    @classmethod
    def from_onnx(cls, onnx_path: str | Path, *, cache_dir: str | Path | None = None, fp16: bool = False,
                  workspace_mb: int = 1024, profile: ProfileShapes | None = None,
                  input_size: tuple[int, int] | None = None, force_rebuild: bool = False,
                  device: str | torch.device = "cuda", trt: ModuleType | None = None) -> "TensorRTBackend":
        """Build (once, cached in ``cache_dir``) or reuse the engine for ``onnx_path`` and open it.

        The profile comes from :func:`resolve_profile` (static file: its shape; dynamic: ``profile``, else
        ``input_size``, else :data:`DEFAULT_DYNAMIC_PROFILE`).
        """
        trt = trt if trt is not None else import_tensorrt()
        device = _require_cuda(device)
        onnx_path = Path(onnx_path)
        info = read_onnx_metadata(onnx_path)
        inputs, outputs = onnx_io_shapes(onnx_path)
        profile = resolve_profile(inputs[INPUT_NAME], profile, input_size, default=DEFAULT_DYNAMIC_PROFILE)
        int8 = "hle.quantization" in info.props            # a QDQ export (hle export onnx --int8): INT8 engine
        key = engine_key(onnx_path, trt, device, fp16=fp16, workspace_mb=workspace_mb, profile=profile, int8=int8)
        cache = EngineCache(cache_dir)
        path, built = cache.get_or_build(
            key, lambda: build_tensorrt_engine(onnx_path, fp16=fp16, workspace_mb=workspace_mb, profile=profile,
                                               trt=trt, int8=int8),
            metadata=info.props, onnx_io=_io_lists(inputs, outputs), onnx_path=onnx_path.resolve(),
            stem=onnx_path.stem, force_rebuild=force_rebuild)
        backend = cls(path, device=device, expected_key=key, trt=trt)
        backend.built = built
        return backend

    def _check_batch(self, batch: torch.Tensor) -> None:
        if batch.dim() != 4 or batch.shape[1] != 3:
            raise ValueError(f"expected a (B, 3, H, W) batch, got shape {tuple(batch.shape)}")
        shape = tuple(batch.shape)
        if not all(lo <= v <= hi for lo, v, hi in zip(self.profile.min, shape, self.profile.max)):
            raise ValueError(f"batch shape {shape} outside the engine's profile min={self.profile.min} "
                             f"max={self.profile.max}; rebuild the engine with a wider profile")

    def infer(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        """Bind ``batch`` and freshly allocated outputs by ``data_ptr`` and enqueue on torch's current stream."""
        self._check_batch(batch)
        x = batch.to(self.device, self._out_dtypes[INPUT_NAME], non_blocking=True).contiguous()
        ctx = self.context
        if not ctx.set_input_shape(INPUT_NAME, tuple(x.shape)):
            raise ValueError(f"TensorRT rejected input shape {tuple(x.shape)}")
        ctx.set_tensor_address(INPUT_NAME, x.data_ptr())
        outs = {}
        for name in self.output_names:
            shape = tuple(int(v) for v in ctx.get_tensor_shape(name))
            outs[name] = torch.empty(shape, dtype=self._out_dtypes[name], device=self.device)
            ctx.set_tensor_address(name, outs[name].data_ptr())
        if not ctx.execute_async_v3(_current_stream_handle(self.device)):
            raise RuntimeError(f"TensorRT execute_async_v3 failed for input shape {tuple(x.shape)}")
        self._last_input = x            # keep the bound input alive until the stream has consumed it
        return {name: t.float() for name, t in outs.items()}

    def static_input_size(self) -> tuple[int, int] | None:
        lo, hi = self.profile.min, self.profile.max
        return (int(lo[2]), int(lo[3])) if (lo[2], lo[3]) == (hi[2], hi[3]) else None

    def describe(self) -> str:
        k = self.key
        return (f"tensorrt {k.tensorrt_version} on {k.gpu_name} ({k.precision}, profile {list(k.input_shapes)}) "
                f"engine {self.engine_path}")

    def close(self) -> None:
        for attr in ("context", "engine", "_runtime", "_last_input"):
            if hasattr(self, attr):
                delattr(self, attr)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
