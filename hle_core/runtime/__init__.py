"""Inference backends (torch, onnxruntime, TensorRT), ONNX export, TensorRT engine building and the engine cache.

Importing this package stays light: onnx, onnxruntime and tensorrt are imported only by the functions and
backends that need them.
"""
from .base import Backend, BackendUnavailable
from .engine_cache import EngineCache, EngineCacheError, EngineKey, ForeignEngineError, default_cache_dir
from .export import (INPUT_NAME, ONNX_OPSET, OnnxExportError, OnnxMetadataError, OnnxModelInfo, export_onnx,
                     onnx_io_shapes, read_onnx_metadata)
from .onnx_backend import OnnxRuntimeBackend
from .factory import FALLBACKS, KINDS, build_pipeline, cached_onnx_for_checkpoint, create_backend
from .tensorrt_backend import EngineIOMismatchError, EngineMismatchError, TensorRTBackend, check_engine_io
from .tensorrt_build import ProfileShapes, TensorRTBuildError, build_tensorrt_engine
from .torch_backend import TorchBackend

__all__ = [
    "Backend", "BackendUnavailable", "create_backend", "build_pipeline", "KINDS", "FALLBACKS", "TorchBackend",
    "OnnxRuntimeBackend",
    "TensorRTBackend", "export_onnx", "read_onnx_metadata", "onnx_io_shapes", "build_tensorrt_engine",
    "cached_onnx_for_checkpoint", "OnnxModelInfo", "ProfileShapes", "OnnxExportError", "OnnxMetadataError",
    "TensorRTBuildError", "EngineCache", "EngineKey", "EngineCacheError", "ForeignEngineError",
    "EngineMismatchError", "EngineIOMismatchError", "check_engine_io", "default_cache_dir", "INPUT_NAME",
    "ONNX_OPSET",
]
