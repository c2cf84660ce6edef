"""ONNX export (hle_core.runtime.export, ``hle export onnx``): parity with torch, metadata, TensorRT-friendliness.

Oracles: the torch model itself (onnxruntime outputs must match ``HLENet.forward`` within 1e-4), the model's own
config / decode parameters (metadata must round-trip them exactly), onnx.checker, onnx-tensorrt's supported-operator
list, and polygraphy's independent reading of the graph.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from hle_core.config import HLEConfig
from hle_core.model import OUTPUT_NAMES, build_model, save_checkpoint
from hle_core.runtime.export import (INPUT_NAME, ONNX_OPSET, TENSORRT_SUPPORTED_OPS, OnnxExportError,
                                     OnnxMetadataError, check_tensorrt_ops, export_onnx, onnx_io_shapes,
                                     read_onnx_metadata)

ort = pytest.importorskip("onnxruntime")
H, W = 64, 128
TOL = 1e-4


def small_config(**model) -> HLEConfig:
    """A narrow mobilenet_v2 DeepLabV3+ so every export takes about a second on one core."""
    cfg = HLEConfig()
    cfg.model.aspp_channels = 32
    cfg.model.decoder_channels = 32
    cfg.model.low_level_channels = 16
    cfg.model.embedding_dim = 6
    for k, v in model.items():
        setattr(cfg.model, k, v)
    return cfg


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    net = build_model(small_config()).eval()
    with torch.no_grad():   # non-trivial BN statistics and head so the outputs are not near-constant
        for mod in net.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 1.5)
        net.head.weight.normal_(0, 0.3)
        net.log_class_sigma.uniform_(-1, 0)
    return net


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    d = tmp_path_factory.mktemp("onnx")
    return {"static": export_onnx(model, d / "static.onnx", height=H, width=W),
            "dynamic": export_onnx(model, d / "dynamic.onnx", dynamic=True)}


def images(kind: str, batch: int, h: int, w: int, cfg: HLEConfig) -> torch.Tensor:
    """Random normal images, or street scenes (hle_core.data.synthetic when present, else structured bands)."""
    if kind == "random":
        return torch.randn(batch, 3, h, w, generator=torch.Generator().manual_seed(h + w + batch))
    try:
        from hle_core.data.synthetic import SceneGenerator
        rgb = np.stack([SceneGenerator((h, w), seed=3).frame(i).image for i in range(batch)])
    except ImportError:   # structured fallback: horizontal colour bands and a bright rectangle
        rgb = np.zeros((batch, h, w, 3), np.uint8)
        rgb[:, : h // 3] = (70, 130, 180)
        rgb[:, h // 3:] = (128, 64, 128)
        rgb[:, h // 2:h // 2 + 10, w // 4:w // 4 + 20] = (220, 20, 60)
    x = torch.from_numpy(rgb).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(cfg.model.mean).view(1, 3, 1, 1)
    std = torch.tensor(cfg.model.std).view(1, 3, 1, 1)
    return (x - mean) / std


def run_ort(path, x: torch.Tensor) -> dict[str, np.ndarray]:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, {INPUT_NAME: x.numpy()})))


def assert_parity(model, path, x: torch.Tensor) -> None:
    with torch.no_grad():
        ref = model(x)
    got = run_ort(path, x)
    assert set(got) == set(OUTPUT_NAMES)
    for name in OUTPUT_NAMES:
        np.testing.assert_allclose(got[name], ref[name].numpy(), atol=TOL, rtol=0, err_msg=name)


@pytest.mark.parametrize("kind", ["random", "synthetic"])
def test_static_export_matches_torch(model, exported, kind):
    assert_parity(model, exported["static"], images(kind, 1, H, W, model.cfg))


@pytest.mark.parametrize("kind", ["random", "synthetic"])
@pytest.mark.parametrize("shape", [(1, 64, 128), (2, 96, 160), (1, 128, 64)])
def test_dynamic_export_matches_torch_at_other_shapes(model, exported, kind, shape):
    b, h, w = shape
    assert_parity(model, exported["dynamic"], images(kind, b, h, w, model.cfg))


def test_embedding_normalisation_is_inside_the_graph(model, exported):
    got = run_ort(exported["dynamic"], images("random", 1, 96, 96, model.cfg))
    np.testing.assert_allclose(np.linalg.norm(got["embedding"], axis=1), 1.0, atol=1e-5)
    assert (got["sigma"] > 0).all() and ((got["seed"] > 0) & (got["seed"] < 1)).all()


def test_metadata_round_trips_config_and_decode_params(model, exported):
    for variant, path in exported.items():
        info = read_onnx_metadata(path)
        assert info.config.to_json() == model.cfg.to_json()
        assert info.config.classes == model.cfg.classes
        params = model.decode_params()
        # JSON of float32 values is exact: bit-identical after the round trip
        assert torch.equal(info.decode_params["class_means"], params["class_means"].float())
        assert torch.equal(info.decode_params["class_sigma"], params["class_sigma"].float())
        assert info.output_names == OUTPUT_NAMES and info.input_name == INPUT_NAME
        assert info.mean == model.cfg.model.mean and info.std == model.cfg.model.std
        if variant == "static":
            assert (info.dynamic, info.height, info.width) == (False, H, W)
        else:
            assert (info.dynamic, info.height, info.width) == (True, None, None)


def test_graph_is_checked_opset17_and_uses_tensorrt_ops(exported):
    for path in exported.values():
        proto = onnx.load(str(path))
        onnx.checker.check_model(proto, full_check=True)
        assert {o.domain: o.version for o in proto.opset_import}.get("", None) == ONNX_OPSET
        assert {n.op_type for n in proto.graph.node} <= TENSORRT_SUPPORTED_OPS
    inputs, outputs = onnx_io_shapes(exported["static"])
    assert inputs == {INPUT_NAME: (1, 3, H, W)}
    assert outputs == {"embedding": (1, 6, H, W), "sigma": (1, 1, H, W), "sigma_spatial": (1, 1, H, W),
                       "seed": (1, 1, H, W)}
    inputs, outputs = onnx_io_shapes(exported["dynamic"])
    assert inputs == {INPUT_NAME: (-1, 3, -1, -1)} and outputs["embedding"] == (-1, 6, -1, -1)


def test_operator_outside_tensorrt_set_is_rejected():
    node = helper.make_node("NonMaxSuppression", ["boxes", "scores"], ["idx"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, 4, 4]),
                                            helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 1, 4])],
                              [helper.make_tensor_value_info("idx", TensorProto.INT64, [None, 3])])
    with pytest.raises(OnnxExportError, match="NonMaxSuppression"):
        check_tensorrt_ops(helper.make_model(graph))


def test_non_hle_onnx_is_refused(tmp_path):
    node = helper.make_node("Relu", ["x"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph), tmp_path / "relu.onnx")
    with pytest.raises(OnnxMetadataError, match="not an HLE export"):
        read_onnx_metadata(tmp_path / "relu.onnx")
    with pytest.raises(FileNotFoundError):
        read_onnx_metadata(tmp_path / "missing.onnx")


@pytest.mark.parametrize("h,w", [(100, 128), (64, 0), (16, 32)])
def test_sizes_not_multiples_of_32_are_rejected(model, tmp_path, h, w):
    with pytest.raises(ValueError, match="multiples of 32"):
        export_onnx(model, tmp_path / "bad.onnx", height=h, width=w)
    assert not (tmp_path / "bad.onnx").exists()


@pytest.mark.slow  # ~17 s on the 2-core machine
def test_simplified_graph_keeps_parity_and_metadata(model, tmp_path):
    pytest.importorskip("onnxslim", reason="onnxslim not installed")
    path = export_onnx(model, tmp_path / "slim.onnx", dynamic=True, simplify=True)
    proto = onnx.load(str(path))
    assert not any(n.op_type == "Identity" for n in proto.graph.node)
    assert read_onnx_metadata(path).config.to_json() == model.cfg.to_json()
    assert_parity(model, path, images("synthetic", 1, 96, 128, model.cfg))


def test_separate_semantic_branch_exports_its_logits(tmp_path):
    torch.manual_seed(1)
    net = build_model(small_config(separate_semantic_branch=True, backbone="mobilenet_v2")).eval()
    path = export_onnx(net, tmp_path / "sem.onnx", height=64, width=64)
    info = read_onnx_metadata(path)
    assert info.output_names == OUTPUT_NAMES + ("semantic_logits",)
    assert onnx_io_shapes(path)[1]["semantic_logits"] == (1, len(net.cfg.classes), 64, 64)
    x = images("random", 1, 64, 64, net.cfg)
    with torch.no_grad():
        ref = net(x)
    got = run_ort(path, x)
    np.testing.assert_allclose(got["semantic_logits"], ref["semantic_logits"].numpy(), atol=TOL, rtol=0)


def test_polygraphy_reads_the_exported_graph(exported):
    exe = shutil.which("polygraphy") or str(Path(sys.executable).with_name("polygraphy"))
    if not Path(exe).is_file():
        pytest.skip("polygraphy not installed (pip install polygraphy)")
    res = subprocess.run([exe, "inspect", "model", str(exported["dynamic"])], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    text = res.stdout
    assert "ONNX Opset: 17" in text
    assert "{images [dtype=float32, shape=('batch', 3, 'height', 'width')]}" in text
    for name, channels in (("embedding", 6), ("sigma", 1), ("sigma_spatial", 1), ("seed", 1)):
        assert f"{name} [dtype=float32, shape=('batch', {channels}, 'height', 'width')]" in text


# --- `hle export onnx` ----------------------------------------------------------------------------------------
def cli(argv: list[str]) -> argparse.Namespace:
    from hle_core.commands.export import add_parser

    parser = argparse.ArgumentParser(prog="hle")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_cli_export_onnx_writes_a_loadable_file(model, tmp_path, capsys):
    ckpt = save_checkpoint(tmp_path / "m.pt", model)
    args = cli(["export", "onnx", "--checkpoint", str(ckpt), "--out", str(tmp_path / "m.onnx"),
                "--height", "64", "--width", "96"])
    assert args.func(args) == 0
    info = read_onnx_metadata(tmp_path / "m.onnx")
    assert (info.height, info.width, info.dynamic) == (64, 96, False)
    assert "wrote" in capsys.readouterr().out
    assert_parity(model, tmp_path / "m.onnx", images("synthetic", 1, 64, 96, model.cfg))


def test_cli_rejects_dynamic_with_a_size(tmp_path):
    args = cli(["export", "onnx", "--checkpoint", str(tmp_path / "none.pt"), "--out", str(tmp_path / "m.onnx"),
                "--dynamic", "--height", "64"])
    with pytest.raises(ValueError, match="--dynamic excludes"):
        args.func(args)


def test_cli_parses_tensorrt_shapes():
    args = cli(["export", "tensorrt", "--onnx", "m.onnx", "--out", "m.engine", "--fp16", "--workspace", "512",
                "--min", "1x3x64x64", "--opt", "1x3x512x1024", "--max", "2x3x1024x2048"])
    assert (args.min, args.opt, args.max) == ((1, 3, 64, 64), (1, 3, 512, 1024), (2, 3, 1024, 2048))
    assert args.fp16 and args.workspace == 512
    with pytest.raises(SystemExit):
        cli(["export", "tensorrt", "--onnx", "m.onnx", "--out", "m.engine", "--min", "1x3x64"])
