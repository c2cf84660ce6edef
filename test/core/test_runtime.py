"""Backends (torch, onnxruntime) and ``create_backend``'s selection and fallback logic.

Oracles: ``HLENet.forward`` for the backends' outputs; the documented auto order (TensorRT with a GPU →
onnxruntime CUDA → torch CUDA → onnxruntime CPU) written out below as an independent table, with the
availability probes monkeypatched.
"""
from __future__ import annotations

import logging
import sys

import numpy as np
import pytest
import torch

from hle_core.config import HLEConfig
from hle_core.model import OUTPUT_NAMES, build_model, save_checkpoint
from hle_core.runtime import factory as sel
from hle_core.runtime.base import Backend, BackendUnavailable
from hle_core.runtime.export import OnnxMetadataError, export_onnx
from hle_core.runtime.onnx_backend import OnnxRuntimeBackend
from hle_core.runtime.torch_backend import TorchBackend

pytest.importorskip("onnxruntime")
TOL = 1e-4


def small_config() -> HLEConfig:
    cfg = HLEConfig()
    cfg.model.aspp_channels, cfg.model.decoder_channels, cfg.model.low_level_channels = 32, 32, 16
    cfg.model.embedding_dim = 6
    return cfg


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model(small_config()).eval()
    with torch.no_grad():
        model.head.weight.normal_(0, 0.3)
    d = tmp_path_factory.mktemp("rt")
    return {"model": model, "ckpt": save_checkpoint(d / "m.pt", model),
            "static": export_onnx(model, d / "m_static.onnx", height=64, width=96),
            "dynamic": export_onnx(model, d / "m_dyn.onnx", dynamic=True)}


def reference(model, x):
    with torch.no_grad():
        return model(x)


# --- torch ----------------------------------------------------------------------------------------------------
def test_torch_backend_matches_the_model_and_channels_last_agrees(files):
    x = torch.randn(2, 3, 64, 96)
    ref = reference(files["model"], x)
    plain = TorchBackend(files["ckpt"], device="cpu")
    cl = TorchBackend(files["ckpt"], device="cpu", channels_last=True)
    assert plain.config.to_json() == files["model"].cfg.to_json()
    for backend in (plain, cl):
        out = backend.infer(x)
        assert set(out) == set(OUTPUT_NAMES)
        for name in OUTPUT_NAMES:
            torch.testing.assert_close(out[name], ref[name], atol=TOL, rtol=0)
    assert "channels_last" in cl.describe()


@pytest.mark.parametrize("kwargs", [dict(fp16=True), dict(cuda_graphs=True)])
def test_torch_backend_refuses_cuda_only_options_on_cpu(files, kwargs):
    with pytest.raises(ValueError, match="need a CUDA device"):
        TorchBackend(files["ckpt"], device="cpu", **kwargs)


def test_torch_backend_rejects_bad_batches(files):
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        TorchBackend(files["model"]).infer(torch.randn(3, 64, 96))


# --- onnxruntime ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant,shape", [("static", (1, 3, 64, 96)), ("dynamic", (2, 3, 96, 64))])
def test_onnxruntime_backend_needs_only_the_onnx_file(files, variant, shape):
    backend = OnnxRuntimeBackend(files[variant])            # no checkpoint involved
    model = files["model"]
    assert backend.config.to_json() == model.cfg.to_json()
    params = model.decode_params()
    torch.testing.assert_close(backend.decode_params["class_means"], params["class_means"], atol=0, rtol=0)
    torch.testing.assert_close(backend.decode_params["class_sigma"], params["class_sigma"], atol=0, rtol=0)
    x = torch.randn(*shape)
    out, ref = backend.infer(x), reference(model, x)
    for name in OUTPUT_NAMES:
        assert out[name].device == backend.device and out[name].dtype == torch.float32
        torch.testing.assert_close(out[name], ref[name], atol=TOL, rtol=0)


def test_onnxruntime_cpu_pool_threads_sleep_between_runs(files):
    """Idle onnxruntime threads must not spin on the cores where the decode runs next (it slowed the decode)."""
    from hle_core.runtime.onnx_backend import ALLOW_SPINNING

    backend = OnnxRuntimeBackend(files["static"], intra_op_threads=2)
    assert backend.session.get_session_options().get_session_config_entry(ALLOW_SPINNING) == "0"


def test_onnxruntime_backend_rejects_shapes_the_graph_cannot_take(files):
    backend = OnnxRuntimeBackend(files["static"])
    with pytest.raises(ValueError, match=r"takes input shape \(1, 3, 64, 96\)"):
        backend.infer(torch.randn(1, 3, 64, 128))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        backend.infer(torch.randn(1, 1, 64, 96))


def test_onnxruntime_backend_cuda_without_provider_is_unavailable(files):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider")
    with pytest.raises(BackendUnavailable, match="CUDAExecutionProvider"):
        OnnxRuntimeBackend(files["static"], device="cuda")


def test_onnxruntime_backend_refuses_a_checkpoint(files):
    with pytest.raises(OnnxMetadataError, match="not a readable ONNX file"):
        OnnxRuntimeBackend(files["ckpt"])


# --- create_backend: selection --------------------------------------------------------------------------------
class Dummy(Backend):
    def __init__(self, kind, device):
        self.name, self.device, self.dtype = kind, torch.device("cpu"), torch.float32
        self.requested_device = device

    def infer(self, batch):
        raise NotImplementedError


@pytest.fixture
def world(monkeypatch):
    """Availability switches for the probes, and a recording ``_build`` (no real backend is constructed)."""
    state = {"cuda": False, "trt": False, "ort": ["CPUExecutionProvider"], "built": [], "broken": set()}
    monkeypatch.setattr(sel, "_cuda_available", lambda: state["cuda"])
    monkeypatch.setattr(sel, "_tensorrt_error", lambda: None if state["trt"] else "TensorRT not importable (test)")
    monkeypatch.setattr(sel, "_ort_providers", lambda: state["ort"])

    def fake_build(kind, device, path, fmt, **kw):
        state["built"].append((kind, device, fmt))
        if (kind, device) in state["broken"]:
            raise BackendUnavailable(f"{kind} broke at construction (test)")
        return Dummy(kind, device)

    monkeypatch.setattr(sel, "_build", fake_build)
    return state


CUDA_ORT = ["CUDAExecutionProvider", "CPUExecutionProvider"]
# (cuda, tensorrt importable, onnxruntime providers, model file) -> (kind, device) the documented auto order picks
AUTO_TABLE = [
    (True, True, CUDA_ORT, "ckpt", ("tensorrt", "cuda")),
    (True, True, CUDA_ORT, "static", ("tensorrt", "cuda")),
    (True, False, CUDA_ORT, "ckpt", ("onnxruntime", "cuda")),
    (True, False, ["CPUExecutionProvider"], "ckpt", ("torch", "cuda")),
    (True, False, ["CPUExecutionProvider"], "static", ("onnxruntime", "cpu")),   # torch cannot run an .onnx
    (False, True, CUDA_ORT, "ckpt", ("onnxruntime", "cpu")),                    # TensorRT needs a GPU
    (False, False, ["CPUExecutionProvider"], "static", ("onnxruntime", "cpu")),
    (False, False, None, "ckpt", ("torch", "cpu")),                              # no onnxruntime at all
]


@pytest.mark.parametrize("cuda,trt,providers,model,expected", AUTO_TABLE)
def test_auto_follows_the_documented_order(world, files, cuda, trt, providers, model, expected):
    world.update(cuda=cuda, trt=trt, ort=providers)
    backend = sel.create_backend("auto", files[model])
    assert (backend.name, backend.requested_device) == expected
    assert world["built"] == [(*expected, "checkpoint" if model == "ckpt" else "onnx")]
    assert backend.selection_reason.startswith(f"auto: chose {expected[0]} on {expected[1]}")
    if expected[0] != "tensorrt":
        assert "tensorrt on cuda:" in backend.selection_reason    # why TensorRT was skipped is stated


def test_auto_with_cpu_device_never_tries_cuda(world, files):
    world.update(cuda=True, trt=True, ort=CUDA_ORT)
    backend = sel.create_backend("auto", files["ckpt"], device="cpu")
    assert (backend.name, backend.requested_device) == ("onnxruntime", "cpu")


def test_construction_failure_moves_to_the_next_candidate(world, files):
    world.update(cuda=True, trt=True, ort=CUDA_ORT, broken={("tensorrt", "cuda")})
    backend = sel.create_backend("auto", files["static"])
    assert (backend.name, backend.requested_device) == ("onnxruntime", "cuda")
    assert "tensorrt broke at construction" in backend.selection_reason


def test_missing_tensorrt_falls_back_with_a_warning(world, files, caplog):
    world.update(cuda=True, trt=False, ort=["CPUExecutionProvider"])
    with caplog.at_level(logging.INFO, logger="hle_core.runtime"):
        backend = sel.create_backend("tensorrt", files["static"], fallback="onnxruntime")
    assert (backend.name, backend.requested_device) == ("onnxruntime", "cpu")   # no CUDA provider: CPU
    assert "(fallback)" in backend.selection_reason
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("requested backend tensorrt on cuda cannot run here: TensorRT not importable" in w and
               "trying fallback onnxruntime" in w for w in warnings)


def test_fallback_none_refuses_naming_the_reason(world, files):
    world.update(cuda=True, trt=False)
    with pytest.raises(BackendUnavailable, match="tensorrt on cuda: TensorRT not importable"):
        sel.create_backend("tensorrt", files["static"], fallback="none")
    with pytest.raises(BackendUnavailable):
        sel.create_backend("tensorrt", files["static"], fallback=False)
    assert world["built"] == []


def test_fallback_true_means_the_auto_order(world, files):
    world.update(cuda=True, trt=False, ort=["CPUExecutionProvider"])
    backend = sel.create_backend("tensorrt", files["ckpt"], fallback=True)
    assert (backend.name, backend.requested_device) == ("torch", "cuda")


def test_engine_file_without_tensorrt_is_refused(world, files, tmp_path):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"x")
    with pytest.raises(BackendUnavailable, match="cannot run a TensorRT .engine file"):
        sel.create_backend("auto", engine)


def test_explicit_device_is_passed_through(world, files):
    world.update(cuda=True)
    backend = sel.create_backend("torch", files["ckpt"], device="cuda:1")
    assert backend.requested_device == "cuda:1"


@pytest.mark.parametrize("kwargs,exc,needle", [
    (dict(kind="openvino"), ValueError, "backend kind"),
    (dict(device="gpu"), ValueError, "device must be"),
    (dict(fallback="tvm"), ValueError, "fallback must be"),
])
def test_bad_arguments_are_named(world, files, kwargs, exc, needle):
    with pytest.raises(exc, match=needle):
        sel.create_backend(model=files["ckpt"], **kwargs)


def test_missing_and_unknown_model_files(world, files, tmp_path):
    with pytest.raises(FileNotFoundError, match="model file not found"):
        sel.create_backend("auto", tmp_path / "missing.pt")
    (tmp_path / "m.bin").write_bytes(b"")
    with pytest.raises(ValueError, match="checkpoint"):
        sel.create_backend("auto", tmp_path / "m.bin")


# --- create_backend: real construction on this CPU ------------------------------------------------------------
def test_checkpoint_is_exported_once_to_the_cache_and_runs_on_onnxruntime(files, tmp_path, monkeypatch):
    monkeypatch.setattr(sel, "_cuda_available", lambda: False)
    backend = sel.create_backend("auto", files["ckpt"], engine_cache_dir=tmp_path)
    assert isinstance(backend, OnnxRuntimeBackend)
    cached = sorted(tmp_path.glob("*.onnx"))
    assert len(cached) == 1 and cached[0].name.endswith("-dynamic.onnx")
    mtime = cached[0].stat().st_mtime_ns
    again = sel.create_backend("onnxruntime", files["ckpt"], engine_cache_dir=tmp_path)
    assert again.path == cached[0] and cached[0].stat().st_mtime_ns == mtime          # reused, not re-exported
    x = torch.randn(1, 3, 64, 64)
    ref = reference(files["model"], x)
    out = again.infer(x)
    for name in OUTPUT_NAMES:
        torch.testing.assert_close(out[name], ref[name], atol=TOL, rtol=0)


def test_requested_tensorrt_without_it_falls_back_for_real(files, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    backend = sel.create_backend("tensorrt", files["static"], engine_cache_dir=tmp_path, fallback="onnxruntime")
    assert isinstance(backend, OnnxRuntimeBackend) and "(fallback)" in backend.selection_reason


def test_pipeline_gives_the_same_panoptic_map_on_torch_and_onnxruntime(files):
    pipeline = pytest.importorskip("hle_core.pipeline")
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (64, 96, 3), dtype=np.uint8)
    maps = []
    for backend in (TorchBackend(files["ckpt"]), OnnxRuntimeBackend(files["static"])):
        res = pipeline.Pipeline(backend).process(image)
        maps.append(res.panoptic)
    np.testing.assert_array_equal(maps[0], maps[1])
