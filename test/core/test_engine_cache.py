"""TensorRT engine cache, engine building and the TensorRT runtime binding — all without TensorRT.

TensorRT cannot be installed on this project's machines. Everything around it is tested here:

* cache keys (any component changes the key), reuse, invalidation of stale / tampered / sidecar-less engines,
  refusal of foreign engines, ``force_rebuild``;
* the I/O name/shape check against the ONNX file, as a function over plain name → shape dicts;
* the builder and runtime code paths, against ``FakeTensorRT`` below: a TEST DOUBLE of the ``tensorrt``
  module implementing only the API surface hle_core calls, recording the calls. Its "engine" runs the ONNX
  file with onnxruntime, reading its input from and writing its outputs to the raw addresses bound with
  ``set_tensor_address`` (CPU tensors stand in for CUDA ones), so the binding logic is checked end to end
  against the torch model. It proves our calls are consistent with the API as documented, not that a real
  TensorRT accepts the graph (see docs/TENSORRT.md).
"""
from __future__ import annotations

import ctypes
import dataclasses
import hashlib
import json
import sys
import types

import numpy as np
import pytest
import torch

from hle_core.config import HLEConfig
from hle_core.model import OUTPUT_NAMES, build_model
from hle_core.runtime import tensorrt_backend as trt_mod
from hle_core.runtime.base import BackendUnavailable
from hle_core.runtime.engine_cache import (EngineCache, EngineCacheError, EngineKey, ForeignEngineError, file_sha256,
                                           key_differences, read_sidecar, sidecar_path, verify_engine, write_engine)
from hle_core.runtime.export import INPUT_NAME, export_onnx, onnx_io_shapes, read_onnx_metadata
from hle_core.runtime.tensorrt_backend import (EngineIOMismatchError, EngineMismatchError, TensorRTBackend,
                                               check_engine_io, resolve_profile)
from hle_core.runtime.tensorrt_build import ProfileShapes, TensorRTBuildError, build_tensorrt_engine

ort = pytest.importorskip("onnxruntime")
SHA = "ab" * 32


def make_key(**changes) -> EngineKey:
    base = dict(tensorrt_version="10.3.0", gpu_name="NVIDIA H100 80GB HBM3", compute_capability=(9, 0),
                onnx_sha256=SHA, precision="fp16", input_shapes=((1, 3, 512, 1024),) * 3, workspace_mb=1024)
    base.update(changes)
    return EngineKey(**base)


# --- keys -----------------------------------------------------------------------------------------------------
ALTERED = {"tensorrt_version": "10.4.0", "gpu_name": "NVIDIA A100-SXM4-80GB", "compute_capability": (8, 0),
           "onnx_sha256": "cd" * 32, "precision": "fp32",
           "input_shapes": ((1, 3, 256, 512), (1, 3, 512, 1024), (1, 3, 1024, 2048)), "workspace_mb": 2048}


def test_every_key_component_changes_the_digest():
    assert set(ALTERED) == {f.name for f in dataclasses.fields(EngineKey)}   # the test covers every field
    base = make_key()
    assert make_key().digest() == base.digest()
    digests = {base.digest()}
    for name, value in ALTERED.items():
        other = make_key(**{name: value})
        assert other.digest() != base.digest(), name
        assert key_differences(base, other) and key_differences(base, other)[0].startswith(name)
        digests.add(other.digest())
    assert len(digests) == len(ALTERED) + 1
    # the digest is the SHA-256 of the canonical JSON (independent recomputation)
    assert base.digest() == hashlib.sha256(json.dumps(base.to_dict(), sort_keys=True).encode()).hexdigest()
    assert EngineKey.from_dict(json.loads(json.dumps(base.to_dict()))) == base


@pytest.mark.parametrize("bad", [dict(precision="int4"), dict(onnx_sha256="abc"),
                                 dict(input_shapes=((1, 3, 64, 64),))])
def test_bad_key_fields_are_rejected(bad):
    with pytest.raises(ValueError):
        make_key(**bad)


def test_file_sha256_matches_hashlib(tmp_path):
    data = np.random.default_rng(0).bytes(3 * (1 << 20) + 17)      # spans several read chunks
    (tmp_path / "f").write_bytes(data)
    assert file_sha256(tmp_path / "f") == hashlib.sha256(data).hexdigest()


# --- the cache ------------------------------------------------------------------------------------------------
class CountingBuilder:
    def __init__(self, payload: bytes = b"engine-v1") -> None:
        self.calls = 0
        self.payload = payload

    def __call__(self) -> bytes:
        self.calls += 1
        return self.payload + bytes([self.calls])


def get(cache: EngineCache, key: EngineKey, build, force: bool = False):
    return cache.get_or_build(key, build, metadata={"m": "1"}, onnx_io={"inputs": {}, "outputs": {}},
                              stem="net", force_rebuild=force)


def test_cache_builds_once_then_reuses_and_force_rebuild_rebuilds(tmp_path):
    cache, build, key = EngineCache(tmp_path), CountingBuilder(), make_key()
    path, built = get(cache, key, build)
    assert built and build.calls == 1 and path.read_bytes() == b"engine-v1\x01"
    assert read_sidecar(path)["key"] == key
    path2, built = get(cache, key, build)
    assert (path2, built, build.calls) == (path, False, 1)
    path3, built = get(cache, key, build, force=True)
    assert (path3, built, build.calls) == (path, True, 2) and path.read_bytes() == b"engine-v1\x02"


def test_a_changed_component_gives_a_separate_engine(tmp_path):
    cache, build = EngineCache(tmp_path), CountingBuilder()
    p1, _ = get(cache, make_key(), build)
    p2, built = get(cache, make_key(tensorrt_version="10.4.0"), build)
    assert built and p2 != p1 and build.calls == 2
    assert read_sidecar(p1)["key"].tensorrt_version == "10.3.0"   # the old one is untouched


def test_stale_sidecar_triggers_a_rebuild(tmp_path):
    cache, build, key = EngineCache(tmp_path), CountingBuilder(), make_key()
    path, _ = get(cache, key, build)
    doc = json.loads(sidecar_path(path).read_text())
    doc["key"]["gpu_name"] = "NVIDIA GeForce RTX 3090"          # e.g. a cache directory copied from another machine
    sidecar_path(path).write_text(json.dumps(doc))
    _, built = get(cache, key, build)
    assert built and build.calls == 2
    assert read_sidecar(path)["key"] == key


@pytest.mark.parametrize("damage", ["tamper_engine", "delete_sidecar", "garble_sidecar"])
def test_damaged_cache_entries_are_rebuilt_not_loaded(tmp_path, damage):
    cache, build, key = EngineCache(tmp_path), CountingBuilder(), make_key()
    path, _ = get(cache, key, build)
    if damage == "tamper_engine":
        path.write_bytes(b"someone else's engine")
    elif damage == "delete_sidecar":
        sidecar_path(path).unlink()
    else:
        sidecar_path(path).write_text("{not json")
    assert cache.lookup(key, "net") is None
    _, built = get(cache, key, build)
    assert built and build.calls == 2


def test_explicit_foreign_engine_is_refused_naming_the_fields(tmp_path):
    key = make_key()
    path = write_engine(tmp_path / "m.engine", b"bytes", key, metadata={}, onnx_io={"inputs": {}, "outputs": {}})
    env = {"tensorrt_version": "10.3.0", "gpu_name": "NVIDIA H100 80GB HBM3", "compute_capability": (9, 0)}
    assert verify_engine(path, environment=env)["key"] == key
    with pytest.raises(ForeignEngineError, match=r"tensorrt_version: engine has '10.3.0', running '8.6.1'"):
        verify_engine(path, environment={**env, "tensorrt_version": "8.6.1"})
    with pytest.raises(ForeignEngineError, match="compute_capability"):
        verify_engine(path, environment={**env, "compute_capability": (8, 6)})
    with pytest.raises(ForeignEngineError, match="precision"):
        verify_engine(path, make_key(precision="fp32"))
    sidecar_path(path).unlink()
    with pytest.raises(EngineCacheError, match="no sidecar"):
        verify_engine(path, environment=env)
    with pytest.raises(FileNotFoundError):
        verify_engine(tmp_path / "none.engine")


def test_builder_returning_nothing_is_an_error(tmp_path):
    with pytest.raises(EngineCacheError, match="expected non-empty bytes"):
        get(EngineCache(tmp_path), make_key(), lambda: b"")


# --- I/O check and profiles -----------------------------------------------------------------------------------
ONNX_IN = {"images": (-1, 3, -1, -1)}
ONNX_OUT = {"embedding": (-1, 12, -1, -1), "sigma": (-1, 1, -1, -1), "sigma_spatial": (-1, 1, -1, -1),
            "seed": (-1, 1, -1, -1)}


def test_engine_io_check_accepts_matching_and_dynamic_axes():
    check_engine_io(ONNX_IN, ONNX_OUT, ONNX_IN, ONNX_OUT)
    check_engine_io({"images": (1, 3, 512, 1024)}, {k: (1, v[1], 512, 1024) for k, v in ONNX_OUT.items()},
                    ONNX_IN, ONNX_OUT)


@pytest.mark.parametrize("change,needle", [
    (lambda i, o: (i, {k: v for k, v in o.items() if k != "seed"}), "output 'seed' missing"),
    (lambda i, o: (i, {**o, "logits": (-1, 8, -1, -1)}), "unexpected output 'logits'"),
    (lambda i, o: ({"input": (-1, 3, -1, -1)}, o), "input 'images' missing"),
    (lambda i, o: (i, {**o, "embedding": (-1, 8, -1, -1)}), "output 'embedding': engine shape (-1, 8, -1, -1)"),
    (lambda i, o: ({"images": (-1, 3, -1)}, o), "input 'images'"),
])
def test_engine_io_check_names_each_mismatch(change, needle):
    inputs, outputs = change(dict(ONNX_IN), dict(ONNX_OUT))
    with pytest.raises(EngineIOMismatchError) as err:
        check_engine_io(inputs, outputs, ONNX_IN, ONNX_OUT)
    assert needle in str(err.value)


def test_resolve_profile():
    static = (1, 3, 64, 128)
    assert resolve_profile(static) == ProfileShapes.static(static)
    with pytest.raises(ValueError, match="differs"):
        resolve_profile(static, ProfileShapes.static((1, 3, 64, 64)))
    assert resolve_profile((-1, 3, -1, -1), input_size=(96, 160)) == ProfileShapes.static((1, 3, 96, 160))
    prof = ProfileShapes((1, 3, 64, 64), (1, 3, 128, 128), (2, 3, 256, 256))
    assert resolve_profile((-1, 3, -1, -1), prof) == prof
    with pytest.raises(ValueError, match="dynamic"):
        resolve_profile((-1, 3, -1, -1))
    with pytest.raises(ValueError, match="contradicts"):
        resolve_profile((1, 3, -1, -1), prof)
    with pytest.raises(ValueError, match="min <= opt <= max"):
        ProfileShapes((1, 3, 128, 128), (1, 3, 64, 64), (1, 3, 256, 256))


# --- TEST DOUBLE of the tensorrt module -----------------------------------------------------------------------
class _Enum:
    def __init__(self, **members):
        for k, v in members.items():
            setattr(self, k, v)


def make_fake_tensorrt(version: str = "10.3.0") -> types.ModuleType:
    """TEST DOUBLE: a ``tensorrt`` module with just the API surface hle_core uses; ``fake.calls`` records calls.

    The serialized "engine" is JSON naming the ONNX file, the TensorRT version that built it, the flags and
    the profile; the runtime refuses (returns None) an engine of another version, as TensorRT does.
    """
    fake = types.ModuleType("tensorrt")
    fake.__version__ = version
    fake.calls = []
    fake.fail_parse = False
    fake.fail_build = False
    fake.extra_output = None           # name of a bogus output the "engine" reports (I/O mismatch tests)
    rec = fake.calls.append

    class Logger:
        VERBOSE, WARNING = "VERBOSE", "WARNING"

        def __init__(self, severity):
            rec(("Logger", severity))

    fake.Logger = Logger
    fake.NetworkDefinitionCreationFlag = _Enum(EXPLICIT_BATCH=0, STRONGLY_TYPED=1)
    fake.MemoryPoolType = _Enum(WORKSPACE="WORKSPACE")
    fake.BuilderFlag = _Enum(FP16="FP16", INT8="INT8")

    class IInt8EntropyCalibrator2:
        def __init__(self):
            rec(("IInt8EntropyCalibrator2",))

    fake.IInt8EntropyCalibrator2 = IInt8EntropyCalibrator2
    fake.TensorIOMode = _Enum(INPUT="INPUT", OUTPUT="OUTPUT")
    fake.DataType = _Enum(FLOAT="FLOAT", HALF="HALF", INT32="INT32")

    class Tensor:
        def __init__(self, name, shape):
            self.name, self.shape = name, shape

    class Network:
        def __init__(self):
            self.inputs = []

        @property
        def num_inputs(self):
            return len(self.inputs)

        def get_input(self, i):
            return self.inputs[i]

    class OnnxParser:
        def __init__(self, network, logger):
            self.network = network
            self.num_errors = 0

        def parse_from_file(self, path):
            rec(("parse_from_file", path))
            if fake.fail_parse:
                self.num_errors = 2
                return False
            inputs, _ = onnx_io_shapes(path)
            self.network.inputs = [Tensor(n, s) for n, s in inputs.items()]
            self.network.onnx_path = path
            return True

        def get_error(self, i):
            return f"fake parser error {i}"

    class Profile:
        def set_shape(self, name, mn, opt, mx):
            rec(("set_shape", name, tuple(mn), tuple(opt), tuple(mx)))
            self.shapes = [list(mn), list(opt), list(mx)]

    class Config:
        def __init__(self):
            self.flags, self.profiles = [], []

        def set_memory_pool_limit(self, pool, size):
            rec(("set_memory_pool_limit", pool, size))

        def set_flag(self, flag):
            rec(("set_flag", flag))
            self.flags.append(flag)

        def add_optimization_profile(self, profile):
            rec(("add_optimization_profile",))
            self.profiles.append(profile)

    class Builder:
        platform_has_fast_fp16 = True

        def __init__(self, logger):
            rec(("Builder",))

        def create_network(self, flags):
            rec(("create_network", flags))
            return Network()

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            rec(("build_serialized_network",))
            if fake.fail_build:
                return None
            cal = getattr(config, "int8_calibrator", None)          # TensorRT reads the cache before any batch
            cache = None if cal is None else bytes(cal.read_calibration_cache()).decode()
            return json.dumps({"onnx": network.onnx_path, "built_by": fake.__version__, "flags": config.flags,
                               "profile": [p.shapes for p in config.profiles], "calibration_cache": cache,
                               "calibrator_batch": None if cal is None else cal.get_batch([INPUT_NAME]),
                               "calibrator_is_trt": isinstance(cal, IInt8EntropyCalibrator2)}).encode()

    class Context:
        def __init__(self, engine):
            self.engine, self.addresses, self.input_shape = engine, {}, None

        def set_input_shape(self, name, shape):
            rec(("set_input_shape", name, tuple(shape)))
            self.input_shape = tuple(shape)
            return name == INPUT_NAME

        def set_tensor_address(self, name, ptr):
            rec(("set_tensor_address", name))
            self.addresses[name] = ptr

        def get_tensor_shape(self, name):
            b, _, h, w = self.input_shape
            return (b, self.engine.channels[name], h, w)

        def execute_async_v3(self, stream):
            rec(("execute_async_v3", stream))
            n = int(np.prod(self.input_shape))
            x = np.ctypeslib.as_array((ctypes.c_float * n).from_address(self.addresses[INPUT_NAME]))
            x = x.reshape(self.input_shape).copy()
            names = [o.name for o in self.engine.session.get_outputs()]
            for name, y in zip(names, self.engine.session.run(None, {INPUT_NAME: x})):
                y = np.ascontiguousarray(y, np.float32)
                ctypes.memmove(self.addresses[name], y.ctypes.data, y.nbytes)
            return True

    class Engine:
        def __init__(self, doc):
            self.onnx = doc["onnx"]
            self.session = ort.InferenceSession(self.onnx, providers=["CPUExecutionProvider"])
            inputs, outputs = onnx_io_shapes(self.onnx)
            if fake.extra_output:
                outputs[fake.extra_output] = (-1, 1, -1, -1)
            self.io = [(n, s, "INPUT") for n, s in inputs.items()] + [(n, s, "OUTPUT") for n, s in outputs.items()]
            self.channels = {n: s[1] for n, s, _ in self.io}

        @property
        def num_io_tensors(self):
            return len(self.io)

        def get_tensor_name(self, i):
            return self.io[i][0]

        def get_tensor_mode(self, name):
            return next(m for n, _, m in self.io if n == name)

        def get_tensor_shape(self, name):
            return next(s for n, s, _ in self.io if n == name)

        def get_tensor_dtype(self, name):
            return "FLOAT"

        def create_execution_context(self):
            return Context(self)

    class Runtime:
        def __init__(self, logger):
            rec(("Runtime",))

        def deserialize_cuda_engine(self, data):
            rec(("deserialize_cuda_engine",))
            try:
                doc = json.loads(bytes(data))
            except ValueError:
                return None
            return Engine(doc) if doc.get("built_by") == fake.__version__ else None

    fake.Builder, fake.OnnxParser, fake.Runtime = Builder, OnnxParser, Runtime
    return fake


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory):
    cfg = HLEConfig()
    cfg.model.aspp_channels, cfg.model.decoder_channels, cfg.model.low_level_channels = 32, 32, 16
    cfg.model.embedding_dim = 6
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    d = tmp_path_factory.mktemp("trt")
    return model, export_onnx(model, d / "static.onnx", height=64, width=96), export_onnx(model, d / "dyn.onnx",
                                                                                            dynamic=True)


@pytest.fixture
def fake_gpu(monkeypatch):
    """Pretend a CUDA GPU: CPU tensors stand in for CUDA ones, a fixed GPU identity, stream handle 0."""
    fake = make_fake_tensorrt()
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    monkeypatch.setattr(trt_mod, "_require_cuda", lambda device: torch.device("cpu"))
    monkeypatch.setattr(trt_mod, "_gpu_identity", lambda device: ("Fake GPU 80GB", (9, 0)))
    monkeypatch.setattr(trt_mod, "_current_stream_handle", lambda device: 1234)
    return fake


def calls_named(fake, name):
    return [c for c in fake.calls if c[0] == name]


@pytest.mark.parametrize("version,flags", [("10.3.0", 0), ("8.6.1", 1 << 0)])
@pytest.mark.slow                  # the onnx_files fixture exports two ONNX graphs (~20 s)
def test_builder_uses_the_documented_api(onnx_files, version, flags):
    _, static, dynamic = onnx_files
    fake = make_fake_tensorrt(version)
    prof = ProfileShapes((1, 3, 64, 64), (1, 3, 128, 128), (2, 3, 256, 256))
    data = build_tensorrt_engine(dynamic, fp16=True, workspace_mb=256, profile=prof, trt=fake)
    assert calls_named(fake, "create_network") == [("create_network", flags)]   # EXPLICIT_BATCH only before 10
    assert calls_named(fake, "parse_from_file") == [("parse_from_file", str(dynamic))]
    assert calls_named(fake, "set_memory_pool_limit") == [("set_memory_pool_limit", "WORKSPACE", 256 << 20)]
    assert calls_named(fake, "set_flag") == [("set_flag", "FP16")]
    assert calls_named(fake, "set_shape") == [("set_shape", INPUT_NAME, prof.min, prof.opt, prof.max)]
    assert json.loads(data)["profile"] == [prof.as_lists()]

    fake = make_fake_tensorrt(version)
    build_tensorrt_engine(static, fp16=False, trt=fake)
    assert not calls_named(fake, "set_flag") and not calls_named(fake, "set_shape")   # static graph: no profile


@pytest.mark.slow                  # the onnx_files fixture exports two ONNX graphs (~20 s)
def test_builder_reports_parse_and_build_failures(onnx_files):
    _, static, dynamic = onnx_files
    fake = make_fake_tensorrt()
    fake.fail_parse = True
    with pytest.raises(TensorRTBuildError, match="fake parser error 0; fake parser error 1"):
        build_tensorrt_engine(static, trt=fake)
    fake.fail_parse, fake.fail_build = False, True
    with pytest.raises(TensorRTBuildError, match="failed to build"):
        build_tensorrt_engine(static, trt=fake)
    with pytest.raises(ValueError, match="dynamic input"):
        build_tensorrt_engine(dynamic, trt=make_fake_tensorrt())


@pytest.mark.slow                  # the onnx_files fixture exports two ONNX graphs (~20 s)
def test_tensorrt_backend_binds_tensors_and_matches_torch(onnx_files, fake_gpu, tmp_path):
    model, static, dynamic = onnx_files
    backend = TensorRTBackend.from_onnx(dynamic, cache_dir=tmp_path, input_size=(64, 96), fp16=True)
    assert backend.built and backend.key.precision == "fp16"
    assert backend.key.input_shapes == ((1, 3, 64, 96),) * 3
    info = read_onnx_metadata(dynamic)
    assert backend.config.to_json() == info.config.to_json()
    assert torch.equal(backend.decode_params["class_means"], info.decode_params["class_means"])
    x = torch.randn(1, 3, 64, 96)
    out = backend.infer(x)
    with torch.no_grad():
        ref = model(x)
    for name in OUTPUT_NAMES:
        torch.testing.assert_close(out[name], ref[name], atol=1e-4, rtol=0)
    assert calls_named(fake_gpu, "execute_async_v3") == [("execute_async_v3", 1234)]   # torch's current stream
    assert {c[1] for c in calls_named(fake_gpu, "set_tensor_address")} == {INPUT_NAME, *OUTPUT_NAMES}
    with pytest.raises(ValueError, match="outside the engine's profile"):
        backend.infer(torch.randn(1, 3, 64, 128))

    builds = len(calls_named(fake_gpu, "build_serialized_network"))
    again = TensorRTBackend.from_onnx(dynamic, cache_dir=tmp_path, input_size=(64, 96), fp16=True)
    assert not again.built and len(calls_named(fake_gpu, "build_serialized_network")) == builds
    forced = TensorRTBackend.from_onnx(dynamic, cache_dir=tmp_path, input_size=(64, 96), fp16=True,
                                       force_rebuild=True)
    assert forced.built and len(calls_named(fake_gpu, "build_serialized_network")) == builds + 1


@pytest.mark.slow                  # the onnx_files fixture exports two ONNX graphs (~20 s)
def test_new_tensorrt_version_rebuilds_and_old_engine_is_refused(onnx_files, fake_gpu, tmp_path):
    _, static, _ = onnx_files
    old = TensorRTBackend.from_onnx(static, cache_dir=tmp_path)
    fake_gpu.__version__ = "10.4.0"                                  # TensorRT upgraded on the robot
    new = TensorRTBackend.from_onnx(static, cache_dir=tmp_path)
    assert new.built and new.engine_path != old.engine_path
    with pytest.raises(ForeignEngineError, match="tensorrt_version: engine has '10.3.0', running '10.4.0'"):
        TensorRTBackend(old.engine_path)
    # sidecar claims the running version but the bytes do not deserialize: TensorRT's own refusal, named
    doc = read_sidecar(old.engine_path)
    key = dataclasses.replace(doc["key"], tensorrt_version="10.4.0")
    bogus = write_engine(tmp_path / "bogus.engine", old.engine_path.read_bytes(), key, metadata=doc["metadata"],
                         onnx_io=doc["onnx_io"])
    with pytest.raises(EngineMismatchError, match=r"TensorRT 10.4.0 .* could not deserialize .* built by TensorRT "
                                                  r"10.4.0"):
        TensorRTBackend(bogus)


@pytest.mark.slow                  # the onnx_files fixture exports two ONNX graphs (~20 s)
def test_engine_io_mismatch_is_refused(onnx_files, fake_gpu, tmp_path):
    _, static, _ = onnx_files
    fake_gpu.extra_output = "semantic_logits"
    with pytest.raises(EngineIOMismatchError, match="unexpected output 'semantic_logits'"):
        TensorRTBackend.from_onnx(static, cache_dir=tmp_path)


@pytest.mark.slow                  # the onnx_files fixture exports two ONNX graphs (~20 s)
def test_changed_onnx_file_gets_a_new_engine(onnx_files, fake_gpu, tmp_path):
    model, static, _ = onnx_files
    copy = tmp_path / "model.onnx"
    copy.write_bytes(static.read_bytes())
    first = TensorRTBackend.from_onnx(copy, cache_dir=tmp_path / "cache")
    with torch.no_grad():
        model.head.bias.add_(0.5)                                    # "retrained" model, same file name
    try:
        export_onnx(model, copy, height=64, width=96)
    finally:
        with torch.no_grad():
            model.head.bias.sub_(0.5)
    second = TensorRTBackend.from_onnx(copy, cache_dir=tmp_path / "cache")
    assert second.built and second.key.onnx_sha256 != first.key.onnx_sha256 == file_sha256(static)


def test_without_tensorrt_the_backend_is_unavailable_with_a_clear_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)               # import tensorrt -> ImportError
    with pytest.raises(BackendUnavailable, match="TensorRT is not importable"):
        trt_mod.import_tensorrt()


@pytest.mark.slow                  # the onnx_files fixture exports two ONNX graphs (~20 s)
def test_cli_export_tensorrt_writes_engine_and_sidecar(onnx_files, fake_gpu, tmp_path, capsys):
    import argparse

    from hle_core.commands.export import add_parser

    _, _, dynamic = onnx_files
    parser = argparse.ArgumentParser(prog="hle")
    add_parser(parser.add_subparsers(dest="command", required=True))
    out = tmp_path / "m.engine"
    args = parser.parse_args(["export", "tensorrt", "--onnx", str(dynamic), "--out", str(out), "--fp16",
                              "--workspace", "512", "--min", "1x3x64x64", "--opt", "1x3x64x96", "--max", "1x3x128x128"])
    assert args.func(args) == 0
    doc = verify_engine(out, environment={"tensorrt_version": "10.3.0", "gpu_name": "Fake GPU 80GB",
                                          "compute_capability": (9, 0)})
    assert doc["key"].precision == "fp16" and doc["key"].workspace_mb == 512
    assert doc["key"].onnx_sha256 == file_sha256(dynamic)
    assert doc["key"].input_shapes == ((1, 3, 64, 64), (1, 3, 64, 96), (1, 3, 128, 128))
    assert calls_named(fake_gpu, "set_memory_pool_limit") == [("set_memory_pool_limit", "WORKSPACE", 512 << 20)]
    assert "sidecar m.engine.json" in capsys.readouterr().out
    backend = TensorRTBackend(out)                                    # the explicit engine loads and runs
    assert set(backend.infer(torch.randn(1, 3, 96, 128))) == set(OUTPUT_NAMES)
    args = parser.parse_args(["export", "tensorrt", "--onnx", str(dynamic), "--out", str(out)])
    with pytest.raises(ValueError, match="dynamic"):
        args.func(args)


# --- int8 (issue 15): the calibration cache written by `hle export onnx --int8` -------------------------------
@pytest.mark.slow                  # the onnx_files fixture exports two ONNX graphs (~20 s)
def test_int8_engine_reads_the_calibration_cache(onnx_files, fake_gpu, tmp_path, capsys):
    import argparse

    from hle_core.commands.export import add_parser
    from hle_core.runtime.quantize import QuantizationError, tensorrt_calibration_cache

    _, static, _ = onnx_files
    cache = tmp_path / "m.int8.onnx.calibration.cache"
    cache.write_text(tensorrt_calibration_cache({INPUT_NAME: (-2.1, 2.54), "/model/Relu_output_0": (0.0, 6.35)}))
    fake = make_fake_tensorrt()
    doc = json.loads(build_tensorrt_engine(static, trt=fake, calibration_cache=cache))
    assert calls_named(fake, "set_flag") == [("set_flag", "INT8")]
    assert doc["flags"] == ["INT8"] and doc["calibrator_is_trt"]
    assert doc["calibration_cache"] == cache.read_text()           # handed over unchanged
    assert doc["calibrator_batch"] is None                          # the calibrator never feeds images
    # an fp32 graph with --int8 but no cache, and a file that is not a cache, are refused before building
    with pytest.raises(ValueError, match="calibration cache"):
        build_tensorrt_engine(static, trt=make_fake_tensorrt(), int8=True)
    bad = tmp_path / "bad.cache"
    bad.write_text("not a cache\n")
    with pytest.raises(QuantizationError, match="not a TensorRT calibration cache"):
        build_tensorrt_engine(static, trt=make_fake_tensorrt(), calibration_cache=bad)
    with pytest.raises(FileNotFoundError):
        build_tensorrt_engine(static, trt=make_fake_tensorrt(), calibration_cache=tmp_path / "missing.cache")
    # CLI: the engine key records precision int8, so an fp32 / fp16 engine of the same file is another entry
    parser = argparse.ArgumentParser(prog="hle")
    add_parser(parser.add_subparsers(dest="command", required=True))
    out = tmp_path / "m.engine"
    args = parser.parse_args(["export", "tensorrt", "--onnx", str(static), "--out", str(out),
                              "--calibration-cache", str(cache)])
    assert args.func(args) == 0
    key = verify_engine(out, environment={"tensorrt_version": "10.3.0", "gpu_name": "Fake GPU 80GB",
                                          "compute_capability": (9, 0)})["key"]
    assert key.precision == "int8" and "int8" in capsys.readouterr().out
