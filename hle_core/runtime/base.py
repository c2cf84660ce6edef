"""The inference backend interface: a preprocessed batch in, the network's per-pixel maps out.

Every backend (torch, onnxruntime, TensorRT) returns the same dict of tensors (``OUTPUT_NAMES``: embedding,
sigma, sigma_spatial, seed; see docs/ARCHITECTURE.md) on its own device, so the :class:`~hle_core.pipeline.Pipeline`
(preprocess → backend → decode → track) is identical whichever backend runs.
"""
from __future__ import annotations

import abc

import torch

from ..config import HLEConfig

__all__ = ["Backend", "BackendUnavailable"]


class BackendUnavailable(RuntimeError):
    """The requested backend cannot run here (library missing, no GPU, ...); the message says why."""


class Backend(abc.ABC):
    """Abstract inference backend.

    Attributes:
        name: ``torch`` | ``onnxruntime`` | ``tensorrt``.
        device: where :meth:`infer` returns its tensors (decoding runs there too, no host round trip).
        config: the model's resolved :class:`HLEConfig` (classes, decoder defaults, coord scale).
        decode_params: ``{"class_means": (K, D) unit rows, "class_sigma": (K,)}`` on ``device``.
        dtype: input dtype the backend expects (float32, or float16 for FP16 engines).
        selection_reason: why :func:`~hle_core.runtime.create_backend` chose this backend ("" when built directly).
    """

    name: str = "abstract"
    device: torch.device
    config: HLEConfig
    decode_params: dict[str, torch.Tensor]
    dtype: torch.dtype = torch.float32
    selection_reason: str = ""

    @abc.abstractmethod
    def infer(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        """Run the network on ``batch`` ``(B, 3, H, W)`` normalised, H and W multiples of 32."""

    def describe(self) -> str:
        return f"{self.name} on {self.device}"

    def static_input_size(self) -> tuple[int, int] | None:
        """``(H, W)`` when the model accepts only that input size (a static ONNX graph or TensorRT profile); None
        when any multiple of 32 runs. :class:`~hle_core.pipeline.Pipeline` fits every image to it."""
        return None

    def close(self) -> None:
        """Free the model and device memory (lifecycle deactivate)."""
