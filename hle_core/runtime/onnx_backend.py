"""onnxruntime backend: an exported HLE graph (``hle export onnx``) on the CPU or the CUDA execution provider.

Everything besides the weights — config, class table, decode parameters μ̂_k / σ_k, input size — is read
from the file's metadata (:func:`~hle_core.runtime.export.read_onnx_metadata`), so this one file is all a
consumer needs. Inputs and outputs are bound to torch tensors through ``io_binding`` by ``data_ptr`` on
both providers: no numpy copies on the CPU, and on CUDA the maps stay on the GPU for decoding.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from .base import Backend, BackendUnavailable
from .export import output_channels, read_onnx_metadata

__all__ = ["OnnxRuntimeBackend"]

#: onnxruntime session option: whether idle intra-op threads spin (busy-wait) for more work, and its value on CPU
#: here ("0"; bench/bench_decode_trained.py --ort-spinning sets "1" for the A/B).
ALLOW_SPINNING = "session.intra_op.allow_spinning"
CPU_SPINNING = "0"

log = logging.getLogger("hle_core.runtime")

CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"


class OnnxRuntimeBackend(Backend):
    """onnxruntime inference session over an exported HLE graph.

    Args:
        onnx_path: a file written by :func:`~hle_core.runtime.export.export_onnx`.
        device: ``cpu`` or ``cuda[:i]`` (needs the CUDA execution provider).
        intra_op_threads: onnxruntime intra-op threads (0 = its default).
    Raises:
        FileNotFoundError / OnnxMetadataError: missing file or not an HLE export.
        BackendUnavailable: onnxruntime missing, or ``cuda`` requested without the CUDA provider.
    """

    name = "onnxruntime"

    def __init__(self, onnx_path: str | Path, device: str | torch.device = "cpu", intra_op_threads: int = 0) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendUnavailable(f"onnxruntime is not importable ({exc})") from exc
        self.path = Path(onnx_path)
        info = read_onnx_metadata(self.path)
        self.info = info
        self.config = info.config
        self.device = torch.device(device)
        if self.device.type == "cuda":
            if CUDA_PROVIDER not in ort.get_available_providers():
                raise BackendUnavailable(f"onnxruntime {ort.__version__} has no {CUDA_PROVIDER} "
                                         f"(available: {ort.get_available_providers()}); install onnxruntime-gpu")
            index = self.device.index if self.device.index is not None else torch.cuda.current_device()
            self.device = torch.device("cuda", index)
            # run on torch's current stream, so decoding (torch) is ordered after the network without a sync
            stream = torch.cuda.current_stream(self.device).cuda_stream
            options = {"device_id": index, "user_compute_stream": str(stream)}
            providers: list = [(CUDA_PROVIDER, options), CPU_PROVIDER]
        elif self.device.type == "cpu":
            providers = [CPU_PROVIDER]
        else:
            raise ValueError(f"onnxruntime backend device must be cpu or cuda, got {device}")
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if intra_op_threads:
            so.intra_op_num_threads = int(intra_op_threads)
        if self.device.type == "cpu":
            # onnxruntime's idle pool threads spin after each run by default, on the cores where torch decodes
            # this frame next: on 2 cores that slowed the decode after the network (docs/RESULTS.md, "Real time
            # on CPU", the spinning A/B). The network itself does not slow down when they sleep instead.
            so.add_session_config_entry(ALLOW_SPINNING, CPU_SPINNING)
        self.session = ort.InferenceSession(str(self.path), so, providers=providers)
        self.providers = self.session.get_providers()
        self.decode_params = {k: v.to(self.device) for k, v in info.decode_params.items()}
        self.dtype = torch.float32
        self.input_name = info.input_name
        self.output_names = info.output_names
        graph_inputs = [i.name for i in self.session.get_inputs()]
        graph_outputs = [o.name for o in self.session.get_outputs()]
        if graph_inputs != [self.input_name] or sorted(graph_outputs) != sorted(self.output_names):
            raise ValueError(f"{self.path}: graph I/O {graph_inputs} -> {graph_outputs} differs from its metadata "
                             f"{self.input_name} -> {list(self.output_names)}")
        self._channels = output_channels(self.config)
        # (B, 3, H, W) with -1 on symbolic axes
        self._input_shape = tuple(d if isinstance(d, int) and d > 0 else -1 for d in self.session.get_inputs()[0].shape)
        self._device_type = "cuda" if self.device.type == "cuda" else "cpu"
        self._device_id = self.device.index or 0
        log.info("onnxruntime %s session on %s for %s", ort.__version__, self.providers, self.path)

    def _check_batch(self, batch: torch.Tensor) -> None:
        if batch.dim() != 4 or batch.shape[1] != 3:
            raise ValueError(f"expected a (B, 3, H, W) batch, got shape {tuple(batch.shape)}")
        if not all(want in (-1, got) for want, got in zip(self._input_shape, batch.shape)):
            raise ValueError(f"{self.path} takes input shape {self._input_shape} (-1 = any), got a batch of "
                             f"{tuple(batch.shape)}; export with --dynamic or resize the input")

    def infer(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        """Run the graph on ``batch`` ``(B, 3, H, W)`` float32; outputs are torch tensors on ``self.device``."""
        self._check_batch(batch)
        x = batch.to(self.device, torch.float32).contiguous()
        b, _, h, w = x.shape
        binding = self.session.io_binding()
        binding.bind_input(self.input_name, self._device_type, self._device_id, np.float32, list(x.shape),
                           x.data_ptr())
        outs = {}
        for name in self.output_names:
            outs[name] = torch.empty((b, self._channels[name], h, w), dtype=torch.float32, device=self.device)
            binding.bind_output(name, self._device_type, self._device_id, np.float32, list(outs[name].shape),
                                outs[name].data_ptr())
        self.session.run_with_iobinding(binding)
        return outs

    def describe(self) -> str:
        return f"onnxruntime on {self.device} ({', '.join(self.providers)}) {self.path.name}"

    def static_input_size(self) -> tuple[int, int] | None:
        h, w = self._input_shape[2], self._input_shape[3]
        return (h, w) if h > 0 and w > 0 else None

    def close(self) -> None:
        if hasattr(self, "session"):
            del self.session
