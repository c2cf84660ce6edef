"""PyTorch backend (CPU or CUDA): eager, with optional FP16, channels-last, torch.compile and CUDA graphs.

The options and where they were measured (docs/RESULTS.md has the numbers):

* ``fp16`` (CUDA only): weights and input in half precision; outputs returned as float32.
* ``channels_last``: NHWC memory format for convolutions (pays with cuDNN tensor cores; on CPU it was
  measured in bench/bench_backends.py).
* ``compile``: ``torch.compile`` (inductor); the first call per input shape compiles.
* ``cuda_graphs`` (CUDA only): the forward is captured once per input shape into a ``torch.cuda.CUDAGraph``
  and replayed, removing per-kernel launch overhead; outputs are cloned out of the static buffers.
"""
from __future__ import annotations

import torch

from ..config import HLEConfig
from ..model import load_model
from .base import Backend

__all__ = ["TorchBackend"]


class TorchBackend(Backend):
    """Args:
        model: an :class:`HLENet` or a checkpoint path; with ``config``, any module returning the network output
            dict (e.g. a DDP-unwrapped network under evaluation).
        device: ``cpu`` / ``cuda[:i]``.
        fp16: half precision weights and input (CUDA only; on CPU a ValueError, not a silent slow path).
        channels_last, compile, cuda_graphs: see the module docstring.
        config: the :class:`HLEConfig` to decode with (default: the network's own ``cfg``).
    """

    name = "torch"

    def __init__(self, model: torch.nn.Module | str, device: str | torch.device = "cpu", fp16: bool = False, *,
                 channels_last: bool = False, compile: bool = False, cuda_graphs: bool = False,
                 config: HLEConfig | None = None) -> None:
        self.device = torch.device(device)
        if self.device.type not in ("cpu", "cuda"):
            raise ValueError(f"torch backend device must be cpu or cuda, got {device}")
        if (fp16 or cuda_graphs) and self.device.type != "cuda":
            raise ValueError(f"fp16={fp16} / cuda_graphs={cuda_graphs} need a CUDA device, got {self.device}")
        if compile and cuda_graphs:
            raise ValueError("choose compile or cuda_graphs, not both (torch.compile(mode='reduce-overhead') "
                             "already uses CUDA graphs)")
        net = model if isinstance(model, torch.nn.Module) else load_model(str(model))
        self.dtype = torch.float16 if fp16 else torch.float32
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = net.to(self.device, self.dtype).eval()
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.config = config if config is not None else net.cfg
        params = net.decode_params() if hasattr(net, "decode_params") else {}
        self.decode_params = {k: v.float() for k, v in params.items()}
        self.options = {"fp16": fp16, "channels_last": channels_last, "compile": compile, "cuda_graphs": cuda_graphs}
        self._forward = torch.compile(self.model) if compile else self.model
        self._graphs: dict[tuple[int, ...], tuple[torch.cuda.CUDAGraph, torch.Tensor, dict]] = {}

    def _prepare(self, batch: torch.Tensor) -> torch.Tensor:
        if batch.dim() != 4 or batch.shape[1] != 3:
            raise ValueError(f"expected a (B, 3, H, W) batch, got shape {tuple(batch.shape)}")
        return batch.to(self.device, self.dtype, non_blocking=True).contiguous(memory_format=self.memory_format)

    @torch.inference_mode()
    def infer(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self._prepare(batch)
        if self.options["cuda_graphs"]:
            return self._replay(x)
        out = self._forward(x)
        return {k: v.float().contiguous() for k, v in out.items()}

    def _replay(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """CUDA graph per input shape: capture after a warm-up on a side stream, then copy in and replay."""
        key = tuple(x.shape)
        if key not in self._graphs:
            static_in = x.clone()
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                for _ in range(2):                          # cuDNN autotuning / allocations outside the capture
                    self.model(static_in)
            torch.cuda.current_stream(self.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = self.model(static_in)
            self._graphs[key] = (graph, static_in, static_out)
        graph, static_in, static_out = self._graphs[key]
        static_in.copy_(x)
        graph.replay()
        # clone: the static outputs are overwritten by the next replay
        return {k: v.float().clone() if v.dtype == torch.float32 else v.float() for k, v in static_out.items()}

    def describe(self) -> str:
        flags = [k for k, v in self.options.items() if v]
        return f"torch on {self.device}" + (f" ({', '.join(flags)})" if flags else "")

    def close(self) -> None:
        self._graphs.clear()
        for attr in ("model", "_forward"):
            if hasattr(self, attr):
                delattr(self, attr)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
