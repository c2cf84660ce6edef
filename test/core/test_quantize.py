"""int8 static quantization (issue 15): ``hle export onnx --int8 --calibration N``, QDQ, calibration caches.

One untrained small network is exported and quantized once (through the CLI) at 64 × 128 with 2 calibration
scenes; the tests read what that wrote. Accuracy of a trained int8 model is measured in docs/RESULTS.md, not
here: an untrained network's outputs say nothing about PQ.
"""
from __future__ import annotations

import argparse
import json
import struct

import numpy as np
import pytest
import torch

from hle_core.runtime.export import OnnxMetadataError, read_onnx_metadata
from hle_core.runtime.quantize import (CALIBRATION_SEED, QUANTIZATION_KEY, QuantizationError, calibration_images,
                                       quantization_info, quantize_onnx, read_tensorrt_calibration_cache,
                                       tensorrt_calibration_cache)

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

H, W, N_CAL = 64, 128, 2


def _cli(argv: list[str]) -> argparse.Namespace:
    from hle_core.commands.export import add_parser

    parser = argparse.ArgumentParser(prog="hle")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


@pytest.fixture(scope="module")
def quantized(tiny_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("int8")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)                                              # a relative --out, as users type it
        args = _cli(["export", "onnx", "--checkpoint", str(tiny_model), "--out", "small.int8.onnx", "--height",
                     str(H), "--width", str(W), "--int8", "--calibration", str(N_CAL)])
        assert args.func(args) == 0
    out = folder / "small.int8.onnx"
    return out, out.with_name("small.int8.fp32.onnx")


def _run(path, x: np.ndarray) -> dict[str, np.ndarray]:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"images": x})))


def test_cli_writes_fp32_and_qdq_int8_with_per_channel_weights(quantized):
    int8, fp32 = quantized
    assert fp32.is_file() and int8.is_file()
    ops = [n.op_type for n in onnx.load(str(int8)).graph.node]
    assert ops.count("QuantizeLinear") > 0 and ops.count("DequantizeLinear") > ops.count("QuantizeLinear")
    assert "QLinearConv" not in ops and "ConvInteger" not in ops            # QDQ format, not QOperator
    assert not any(op in ("QuantizeLinear", "DequantizeLinear") for op in
                   (n.op_type for n in onnx.load(str(fp32)).graph.node))
    # per-channel: the Conv weights' DequantizeLinear carries one scale per output channel
    graph = onnx.load(str(int8)).graph
    inits = {t.name: t for t in graph.initializer}
    weight_scales = [inits[n.input[1]] for n in graph.node
                     if n.op_type == "DequantizeLinear" and n.input[0] in inits and inits[n.input[0]].data_type == 3]
    assert weight_scales and all(len(s.dims) == 1 and s.dims[0] > 1 for s in weight_scales)
    # the output head stays float: its Conv reads a float weight, and nothing after it is quantized
    nodes = list(graph.node)
    head = max(i for i, n in enumerate(nodes) if n.op_type == "Conv")
    assert nodes[head].input[1] in inits and inits[nodes[head].input[1]].data_type == 1          # FLOAT
    assert not any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in nodes[head + 1:])
    assert head > 0 and sum(n.op_type == "Conv" and n.input[1] not in inits for n in nodes[:head]) > 10


def test_int8_file_keeps_the_hle_metadata_and_records_the_calibration(quantized):
    int8, fp32 = quantized
    a, b = read_onnx_metadata(fp32), read_onnx_metadata(int8)
    assert {k: v for k, v in b.props.items() if k != QUANTIZATION_KEY} == a.props
    assert (b.height, b.width) == (H, W)
    assert torch.equal(a.decode_params["class_means"], b.decode_params["class_means"])
    q = quantization_info(int8)
    assert q["format"] == "QDQ" and q["num_calibration"] == N_CAL and q["calibration_seed"] == CALIBRATION_SEED
    assert q["calibration_size"] == [H, W] and quantization_info(fp32) is None


def test_int8_outputs_follow_fp32(quantized):
    int8, fp32 = quantized
    x = next(calibration_images(1, (H, W), seed=77))                 # a scene not in the calibration set
    ref, got = _run(fp32, x), _run(int8, x)
    assert set(ref) == set(got)
    for name in ref:
        assert got[name].shape == ref[name].shape and np.isfinite(got[name]).all()
    cos = (ref["embedding"] * got["embedding"]).sum(1)               # both unit-norm per pixel
    assert np.median(cos) > 0.9, np.median(cos)
    assert np.abs(ref["seed"] - got["seed"]).mean() < 0.05            # seed scores in [0, 1]


def test_tensorrt_cache_holds_the_onnxruntime_ranges_of_fp32_tensors(quantized):
    int8, fp32 = quantized
    header, scales = read_tensorrt_calibration_cache(int8.with_name(int8.name + ".calibration.cache").read_bytes())
    assert header == "TRT-8601-EntropyCalibration2"
    doc = json.loads(int8.with_name(int8.name + ".calibration.json").read_text())
    text = json.dumps(doc)
    graph = onnx.load(str(fp32)).graph
    names = {v.name for v in graph.input} | {o for n in graph.node for o in n.output}
    assert "images" in scales and set(scales) <= names and len(scales) > 10
    assert not {"embedding", "sigma", "sigma_spatial", "seed"} & set(scales)     # the float head has no scales
    for name in ("images", sorted(scales)[len(scales) // 2]):
        assert json.dumps(name) in text                                # the same tensors as onnxruntime's cache
    x = np.concatenate(list(calibration_images(N_CAL, (H, W))))       # the input's range is the data's
    expect = np.float32(max(abs(x.min()), abs(x.max())) / 127.0)
    assert np.isclose(scales["images"], expect, rtol=1e-6), (scales["images"], expect)


def test_tensorrt_cache_format():
    text = tensorrt_calibration_cache({"b": (-1.27, 2.54), "a": (0.0, 0.0)}, tensorrt_version="10300")
    lines = text.splitlines()
    assert lines[0] == "TRT-10300-EntropyCalibration2"
    assert lines[2] == "b: 3ca3d70a"                                  # 2.54 / 127 = 0.02 = 0x3CA3D70A (float32, BE)
    assert lines[1].startswith("a: ") and struct.unpack(">f", bytes.fromhex(lines[1][3:]))[0] > 0   # never 0
    assert read_tensorrt_calibration_cache(text)[1]["b"] == pytest.approx(0.02)
    with pytest.raises(QuantizationError, match="non-finite"):
        tensorrt_calibration_cache({"x": (0.0, float("inf"))})
    with pytest.raises(ValueError, match="digits"):
        tensorrt_calibration_cache({"x": (0.0, 1.0)}, tensorrt_version="8.6")
    with pytest.raises(QuantizationError, match="bad TensorRT calibration cache line"):
        read_tensorrt_calibration_cache("TRT-8601-EntropyCalibration2\nx: zz\n")


def test_calibration_scenes_are_deterministic_and_not_the_evaluation_scenes():
    a = list(calibration_images(2, (64, 96)))
    b = list(calibration_images(2, (64, 96)))
    evaluation = list(calibration_images(2, (64, 96), seed=9090917))
    assert all(x.shape == (1, 3, 64, 96) and x.dtype == np.float32 for x in a)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not any(np.array_equal(x, y) for x, y in zip(a, evaluation))
    assert CALIBRATION_SEED not in (1, 1000003, 2000003, 9090917, 4242)
    with pytest.raises(ValueError, match="at least one"):
        next(calibration_images(0, (64, 96)))


def test_bad_inputs_are_refused(quantized, tmp_path):
    int8, fp32 = quantized
    with pytest.raises(QuantizationError, match="already quantized"):
        quantize_onnx(int8, tmp_path / "twice.onnx")
    with pytest.raises(ValueError, match="num_calibration"):
        quantize_onnx(fp32, tmp_path / "x.onnx", num_calibration=0)
    with pytest.raises(ValueError, match="differs"):
        quantize_onnx(fp32, tmp_path / "x.onnx", size=(128, 128))
    with pytest.raises(FileNotFoundError):
        quantize_onnx(tmp_path / "missing.onnx")
    plain = tmp_path / "plain.onnx"
    node = onnx.helper.make_node("Identity", ["images"], ["out"])
    vi = onnx.helper.make_tensor_value_info
    g = onnx.helper.make_graph([node], "g", [vi("images", 1, [1, 3, 32, 32])], [vi("out", 1, [1, 3, 32, 32])])
    onnx.save(onnx.helper.make_model(g), plain)
    with pytest.raises(OnnxMetadataError):
        quantize_onnx(plain)
    with pytest.raises(ValueError, match="only apply with --int8"):
        args = _cli(["export", "onnx", "--checkpoint", "x.pt", "--out", str(tmp_path / "y.onnx"), "--calibration", "4"])
        args.func(args)
