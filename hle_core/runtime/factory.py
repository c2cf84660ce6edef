"""Where a model file becomes a backend and a pipeline: :func:`create_backend` picks and builds an inference
backend, saying what was chosen and why; :func:`build_pipeline` wraps it in the
:class:`~hle_core.pipeline.Pipeline` that the node, bag evaluation and the CLI run.

``auto`` tries, in order: TensorRT on a GPU → onnxruntime with the CUDA provider → torch on CUDA →
onnxruntime on the CPU (→ torch on the CPU when onnxruntime is missing). A checkpoint is exported once to a
cached ONNX file when an ONNX-based backend is chosen. An explicit ``kind`` that cannot run here is reported
(with the reason) and replaced by ``fallback``, or refused with :class:`BackendUnavailable`.
The chosen backend carries ``selection_reason``, which is also logged.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from ..config import BACKEND_FALLBACKS, BACKEND_KINDS, DEVICE_SYNTAX, device_error
from .base import Backend, BackendUnavailable
from .engine_cache import default_cache_dir, file_sha256

__all__ = ["create_backend", "build_pipeline", "KINDS", "FALLBACKS", "cached_onnx_for_checkpoint", "model_format"]

KINDS = BACKEND_KINDS                 # the names live once, in hle_core.config (the node's table reads them there)
FALLBACKS = BACKEND_FALLBACKS
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")
_AUTO_ORDER = (("tensorrt", "cuda"), ("onnxruntime", "cuda"), ("torch", "cuda"), ("onnxruntime", "cpu"),
               ("torch", "cpu"))


# --- availability probes (module level so tests can monkeypatch them) -----------------------------------------
def _cuda_available() -> bool:
    return torch.cuda.is_available()


def _tensorrt_error() -> str | None:
    """None when ``import tensorrt`` works, else why not."""
    try:
        import tensorrt  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - a broken TensorRT install raises anything; reported, not raised
        return f"TensorRT not importable ({type(exc).__name__}: {exc})"
    return None


def _ort_providers() -> list[str] | None:
    """onnxruntime's execution providers, or None when onnxruntime is not importable."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    return list(ort.get_available_providers())


def model_format(path: Path) -> str:
    """``checkpoint`` | ``onnx`` | ``engine`` from the file suffix."""
    suffix = path.suffix.lower()
    if suffix in CHECKPOINT_SUFFIXES:
        return "checkpoint"
    if suffix == ".onnx":
        return "onnx"
    if suffix in (".engine", ".plan", ".trt"):
        return "engine"
    raise ValueError(f"model must be a checkpoint ({', '.join(CHECKPOINT_SUFFIXES)}), an .onnx export or a TensorRT "
                     f".engine, got {path}")


def cached_onnx_for_checkpoint(checkpoint: str | Path, cache_dir: str | Path | None = None,
                               input_size: tuple[int, int] | None = None) -> Path:
    """Export ``checkpoint`` once to ``<cache>/<stem>-<sha16>-<dynamic|HxW>.onnx`` and reuse it afterwards.

    The file name carries the checkpoint's SHA-256 prefix; a reused file must also record the full hash in its
    metadata (``hle.source_sha256``), so a changed checkpoint is never served a stale graph, and its own bytes must
    still hash to the SHA-256 kept beside it (``<file>.json``,
    :func:`~hle_core.runtime.engine_cache.write_file_record`), so a cached file altered after export is re-exported,
    with the reason logged, never served on its label.
    """
    from .engine_cache import EngineCacheError, sidecar_path, verify_file_record, write_file_record
    from .export import export_onnx, read_onnx_metadata

    checkpoint = Path(checkpoint)
    sha = file_sha256(checkpoint)
    tag = "dynamic" if input_size is None else f"{int(input_size[0])}x{int(input_size[1])}"
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    out = cache / f"{checkpoint.stem}-{sha[:16]}-{tag}.onnx"
    if out.is_file():
        try:
            verify_file_record(out, source_sha256=sha)
            if read_onnx_metadata(out).props.get("hle.source_sha256") == sha:
                return out
            raise EngineCacheError(f"{out}: metadata hle.source_sha256 differs from the checkpoint's")
        except (EngineCacheError, ValueError, OSError) as exc:
            logging.getLogger("hle_core.runtime").warning("cached ONNX export not reused, re-exporting: %s", exc)
    sidecar_path(out).unlink(missing_ok=True)             # no record beside a file being replaced
    if input_size is None:
        export_onnx(checkpoint, out, dynamic=True, extra_metadata={"hle.source_sha256": sha})
    else:
        export_onnx(checkpoint, out, height=int(input_size[0]), width=int(input_size[1]),
                    extra_metadata={"hle.source_sha256": sha})
    write_file_record(out, source_sha256=sha)
    return out


def _why_not(kind: str, device: str, fmt: str) -> str | None:
    """None when ``kind`` on ``device`` can serve a model of format ``fmt`` here, else the reason."""
    if fmt == "engine" and kind != "tensorrt":
        return f"{kind} cannot run a TensorRT .engine file"
    if fmt == "onnx" and kind == "torch":
        return "torch cannot run an .onnx file (give the .pt checkpoint)"
    if device.startswith("cuda") and not _cuda_available():
        return "no CUDA GPU (torch.cuda.is_available() is False)"
    if kind == "tensorrt":
        if not device.startswith("cuda"):
            return "TensorRT needs a CUDA device"
        return _tensorrt_error()
    if kind == "onnxruntime":
        providers = _ort_providers()
        if providers is None:
            return "onnxruntime not importable"
        if device.startswith("cuda") and "CUDAExecutionProvider" not in providers:
            return f"onnxruntime has no CUDAExecutionProvider (has {providers})"
    return None


def _candidates(kind: str, device: str, fallback: str) -> list[tuple[str, str, bool]]:
    """Ordered ``(kind, device, is_fallback)`` to try.

    ``auto``: the auto order restricted to ``device`` (all of it for ``device='auto'``), then — unless
    ``fallback='none'`` — the rest of the auto order. An explicit kind: itself on ``device``, then the
    fallback (``auto``: the whole auto order; a kind: that kind on the same device, then on the CPU).
    """
    def concrete(d: str) -> str:                    # "cuda" in _AUTO_ORDER -> the "cuda:N" the caller named
        return device if (d == "cuda" and device.startswith("cuda")) else d

    if kind == "auto":
        want = None if device == "auto" else ("cuda" if device.startswith("cuda") else "cpu")
        first = [(k, concrete(d)) for k, d in _AUTO_ORDER if want in (None, d)]
        rest = [] if fallback == "none" else [(k, concrete(d)) for k, d in _AUTO_ORDER]
    else:
        if device != "auto":
            dev = device
        else:
            dev = "cuda" if (kind == "tensorrt" or _cuda_available()) else "cpu"
        first = [(kind, dev)]
        if fallback == "none":
            rest = []
        elif fallback == "auto":
            rest = [(k, concrete(d)) for k, d in _AUTO_ORDER]
        else:
            rest = [(fallback, dev), (fallback, "cpu")]
    out = [(k, d, False) for k, d in first]
    for k, d in rest:
        if all((k, d) != (c[0], c[1]) for c in out):
            out.append((k, d, True))
    return out


def create_backend(kind: str = "auto", model: str | Path = "", device: str = "auto", fp16: bool = False,
                   engine_cache_dir: str | Path | None = None, force_rebuild: bool = False,
                   fallback: str | bool = "onnxruntime", logger: Any = None, *,
                   input_size: tuple[int, int] | None = None, workspace_mb: int = 1024,
                   intra_op_threads: int = 0) -> Backend:
    """Pick and build a :class:`Backend` for ``model``.

    Args:
        kind: ``auto`` | ``tensorrt`` | ``onnxruntime`` | ``torch``.
        model: a checkpoint (``.pt``), an ONNX export (``.onnx``) or a TensorRT engine with its sidecar.
        device: ``auto`` | ``cpu`` | ``cuda`` | ``cuda:N``.
        fp16: half precision where the backend supports it (torch CUDA, TensorRT); ignored elsewhere (logged).
        engine_cache_dir: where engines and checkpoint exports are cached (default: ``default_cache_dir()``).
        force_rebuild: rebuild the TensorRT engine even if a matching cached one exists.
        fallback: when an explicit ``kind`` cannot run here: ``onnxruntime`` | ``torch`` | ``auto`` (the rest of
            the auto order) | ``none`` (refuse). ``True`` means ``auto``, ``False`` means ``none``.
        logger: anything with ``.info(str)`` / ``.warning(str)`` (a ``logging.Logger``, an rclpy logger).
        input_size: ``(H, W)``: the static size of a checkpoint export, and the TensorRT profile of a dynamic ONNX.
        workspace_mb: TensorRT builder workspace.
        intra_op_threads: onnxruntime intra-op threads (0 = its default).
    Returns:
        The backend, with ``selection_reason`` (str) set.
    Raises:
        FileNotFoundError: no such model file. ValueError: bad ``kind`` / ``device`` / ``fallback`` / suffix.
        BackendUnavailable: nothing in the candidate list can run here (every reason listed).
    """
    log = logger if logger is not None else logging.getLogger("hle_core.runtime")
    if kind not in KINDS:
        raise ValueError(f"backend kind must be one of {KINDS}, got {kind!r}")
    if isinstance(fallback, bool):
        fallback = "auto" if fallback else "none"
    if fallback not in FALLBACKS:
        raise ValueError(f"fallback must be one of {FALLBACKS} (or a bool), got {fallback!r}")
    device = str(device)
    if device_error(device) is not None:
        raise ValueError(f"device must be {DEVICE_SYNTAX}, got {device!r}")
    path = Path(model).expanduser()
    if not str(model) or not path.is_file():
        raise FileNotFoundError(f"model file not found: {str(model)!r}")
    fmt = model_format(path)

    skipped: list[str] = []
    for k, dev, is_fallback in _candidates(kind, device, fallback):
        reason = _why_not(k, dev, fmt)
        if reason is None:
            try:
                backend = _build(k, dev, path, fmt, fp16=fp16, cache_dir=engine_cache_dir, force_rebuild=force_rebuild,
                                 input_size=input_size, workspace_mb=workspace_mb,
                                 intra_op_threads=intra_op_threads, log=log)
            except BackendUnavailable as exc:
                reason = str(exc)
            else:
                lead = (f"requested {kind}" if kind != "auto" else "auto")
                why = f"; skipped: {'; '.join(skipped)}" if skipped else ""
                backend.selection_reason = (f"{lead}: chose {k} on {dev}{' (fallback)' if is_fallback else ''}"
                                            f" for {path.name}{why}")
                log.info(f"inference backend: {backend.selection_reason}")
                return backend
        skipped.append(f"{k} on {dev}: {reason}")
        if kind != "auto" and not is_fallback:      # what was asked for cannot run: say so loudly
            then = "refusing (fallback=none)" if fallback == "none" else f"trying fallback {fallback}"
            log.warning(f"requested backend {k} on {dev} cannot run here: {reason}; {then}")
        else:
            log.info(f"backend {k} on {dev} skipped: {reason}")
    raise BackendUnavailable(f"no usable backend for {path} (kind={kind}, device={device}, fallback={fallback}): "
                             + "; ".join(skipped))


def build_pipeline(model: str | Path, backend: str = "auto", *, device: str = "auto",
                   input_size: tuple[int, int] | None = None, resize: str = "letterbox", decoder: Any = None,
                   tracker: Any = None, logger: Any = None, **backend_options: Any) -> Any:
    """A model file → a ready :class:`hle_core.pipeline.Pipeline`: :func:`create_backend` + the pipeline around it.

    The one place where the node, bag evaluation and the CLI turn a model path into a pipeline (``.pt``
    checkpoint, ``.onnx`` export or TensorRT engine; the backend is picked as :func:`create_backend` does).

    Args:
        model, backend, device, logger: as for :func:`create_backend` (``backend`` is its ``kind``).
        input_size: ``(H, W)`` network input (multiples of 32), or None for the image's own size (padded).
        resize: how images are fitted to ``input_size``: ``letterbox`` (aspect ratio kept, padded) or
            ``stretch`` (see :class:`~hle_core.pipeline.Pipeline`).
        decoder: a :class:`~hle_core.config.DecoderConfig`, a callable mapping the model's own decoder
            configuration to the one to use (e.g. the node's parameter overrides), or None for the model's.
        tracker: a :class:`~hle_core.tracking.TrackerConfig`, or None for no tracking.
        **backend_options: further :func:`create_backend` keywords (``fp16``, ``fallback``, ...).
    Raises:
        as :func:`create_backend`; ValueError for a bad ``input_size`` or ``resize``. The backend is closed on failure.
    """
    from ..pipeline import Pipeline          # here, not at import: the pipeline module imports this package

    built = create_backend(backend, model=model, device=device, logger=logger, input_size=input_size,
                           **backend_options)
    try:
        chosen = decoder(built.config.decoder) if callable(decoder) else decoder
        return Pipeline(built, input_size=input_size, decoder=chosen, tracker=tracker, resize=resize)
    except Exception:
        built.close()
        raise


def _build(kind: str, device: str, path: Path, fmt: str, *, fp16: bool, cache_dir: str | Path | None,
           force_rebuild: bool, input_size: tuple[int, int] | None, workspace_mb: int, intra_op_threads: int,
           log: Any) -> Backend:
    on_cuda = device.startswith("cuda")
    if fp16 and not (on_cuda and kind in ("torch", "tensorrt")):
        log.info(f"fp16 ignored: {kind} on {device} runs in float32")
    if kind == "torch":
        from .torch_backend import TorchBackend

        return TorchBackend(str(path), device=device, fp16=fp16 and on_cuda)
    if kind == "tensorrt":
        from .tensorrt_backend import TensorRTBackend

        if fmt == "engine":
            if force_rebuild:
                log.warning("force_rebuild ignored: an .engine file was given, not the ONNX file it came from")
            return TensorRTBackend(path, device=device)
        onnx_path = cached_onnx_for_checkpoint(path, cache_dir, input_size) if fmt == "checkpoint" else path
        return TensorRTBackend.from_onnx(onnx_path, cache_dir=cache_dir, fp16=fp16, workspace_mb=workspace_mb,
                                         input_size=input_size, force_rebuild=force_rebuild, device=device)
    from .onnx_backend import OnnxRuntimeBackend

    onnx_path = cached_onnx_for_checkpoint(path, cache_dir, input_size) if fmt == "checkpoint" else path
    return OnnxRuntimeBackend(onnx_path, device=device, intra_op_threads=intra_op_threads)
