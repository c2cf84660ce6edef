"""Issue 11, "nothing lost, nothing unbounded": one regression test (or a few) per case of the adversarial pass.

Each test failed on the code before its fix; docs/results/reliability_issue11.md lists case, before, after, test.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from hle_core.cli import main

SIZE = (32, 64)
IMG = "/camera/image_raw"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def tiny_bag(synthetic_bag) -> Path:
    return synthetic_bag(num_clips=1, frames=1, size=SIZE, seed=3)


# --- case 1: data loss: --output-bag / --overwrite never delete an input or a non-bag ----------------------------
def test_case01_bag_eval_output_bag_never_replaces_the_input_bag(tiny_bag: Path, tiny_model: Path, tmp_path: Path,
                                                                   capsys) -> None:
    before = digest(tiny_bag)
    base = ["bag-eval", "--bag", str(tiny_bag), "--image-topic", IMG, "--model", str(tiny_model), "--backend",
            "torch", "--device", "cpu", "--out", str(tmp_path / "o"), "--no-progress", "--no-plots"]
    for extra in ([], ["--overwrite"]):
        assert main(base + ["--output-bag", str(tiny_bag)] + extra) == 2
        err = capsys.readouterr().err
        assert "--output-bag" in err and "input bag" in err and "Traceback" not in err
        assert digest(tiny_bag) == before
    # a directory that holds the input bag is not replaced either
    assert main(base + ["--output-bag", str(tiny_bag.parent), "--overwrite"]) == 2
    assert digest(tiny_bag) == before


def test_case01_bag_eval_output_bag_never_replaces_a_non_bag(tiny_bag: Path, tiny_model: Path, tmp_path: Path,
                                                               capsys) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    base = ["bag-eval", "--bag", str(tiny_bag), "--image-topic", IMG, "--model", str(tiny_model), "--backend",
            "torch", "--device", "cpu", "--out", str(tmp_path / "o"), "--no-progress", "--no-plots",
            "--output-bag", str(notes)]
    assert main(base) == 2
    assert "exists already" in capsys.readouterr().err
    assert main(base + ["--overwrite"]) == 2
    assert "not a bag" in capsys.readouterr().err
    assert notes.read_text() == "my notes\n"
    assert not (tmp_path / "o").exists()                     # refused before any work


def test_case01_synth_overwrite_only_replaces_a_bag(tmp_path: Path, capsys) -> None:
    pytest.importorskip("rosbags")
    data = tmp_path / "file.dat"
    data.write_bytes(b"\x00precious" * 10)
    args = ["synth", "--video", "--bag", str(data), "--num", "1", "--frames", "1", "--size", "32x64", "--overwrite"]
    assert main(args) == 2
    assert "not a bag" in capsys.readouterr().err and data.read_bytes() == b"\x00precious" * 10
    renamed = tmp_path / "file.mcap"                          # a non-bag with a bag's suffix: refused too
    renamed.write_bytes(b"not mcap")
    assert main(args[:3] + [str(renamed)] + args[4:]) == 2 and renamed.read_bytes() == b"not mcap"
    folder = tmp_path / "bagdir"                              # a bag directory with a user's file in it
    folder.mkdir()
    (folder / "metadata.yaml").write_text("rosbag2_bagfile_information: {}\n")
    (folder / "thesis.tex").write_text("x")
    assert main(args[:3] + [str(folder)] + args[4:]) == 2
    assert "holds more than a bag" in capsys.readouterr().err and (folder / "thesis.tex").is_file()
    # a real bag is replaced with --overwrite (and refused without)
    bag = tmp_path / "real.mcap"
    assert main(args[:3] + [str(bag)] + args[4:-1]) == 0
    assert main(args[:3] + [str(bag)] + args[4:-1]) == 2
    assert main(args[:3] + [str(bag)] + args[4:]) == 0


def test_case01_check_target_refuses_a_symlink_and_protects_inputs(tiny_bag: Path, tmp_path: Path) -> None:
    from hle_core.bags import check_target

    link = tmp_path / "link.mcap"
    link.symlink_to(tiny_bag)
    with pytest.raises(FileExistsError, match="input bag"):
        check_target(link, overwrite=True, protect=[tiny_bag])        # resolves to the input
    with pytest.raises(FileExistsError, match="symbolic link"):
        check_target(link, overwrite=True)
    with pytest.raises(FileExistsError, match="input bag"):           # the output inside an input bag directory
        check_target(tiny_bag.parent / "sub" / "out.mcap", protect=[tiny_bag.parent])
    assert check_target(tmp_path / "new.mcap", protect=[tiny_bag])[1:] == ("mcap", True)


# --- case 2: max_pixels bounds the tensor actually computed, and the aspect ratio --------------------------------
def raw_image(height: int, width: int, encoding: str = "mono8", data: bytes = b""):
    from types import SimpleNamespace

    channels = 1 if encoding == "mono8" else 3
    return SimpleNamespace(height=height, width=width, encoding=encoding, is_bigendian=0, step=width * channels,
                           data=data)


def test_case02_padding_and_resizing_count_against_max_pixels() -> None:
    from hle_core.image_codec import ImageConversionError, image_to_rgb

    limit = 4096 * 4096
    # 1 x 400000 (a 400 KB message): padded to 32 x 400000 it would cost 32x its pixels
    with pytest.raises(ImageConversionError) as info:
        image_to_rgb(raw_image(1, 400_000), limit)             # no data needed: refused before it is touched
    assert info.value.reason == "aspect" and "16 times" in str(info.value)
    # under max_pixels itself, over it once padded to multiples of 32 (4128 x 4096)
    with pytest.raises(ImageConversionError) as info:
        image_to_rgb(raw_image(4097, 4090), limit)
    assert info.value.reason == "too_large" and "4096x4128" in str(info.value) and "padded" in str(info.value)
    # a fixed input size bounds the resized tensor instead of the padded one (letterbox and stretch alike)
    img = raw_image(100, 100, data=bytes(100 * 100))
    with pytest.raises(ImageConversionError, match="padded"):
        image_to_rgb(img, 100 * 100)                           # 128 x 128 padded
    assert image_to_rgb(img, 100 * 100, input_size=(64, 64)).shape == (100, 100)
    with pytest.raises(ImageConversionError, match="resized to the input size 256x512") as info:
        image_to_rgb(img, 100_000, input_size=(256, 512))
    assert info.value.reason == "too_large"
    assert image_to_rgb(raw_image(1, 1, data=b"\x07"), limit).shape == (1, 1)   # tiny but not thin: fine


def test_case02_pad_multiple_matches_the_pipeline() -> None:
    from hle_core.image_codec import PAD_MULTIPLE, computed_size
    from hle_core.pipeline import SIZE_MULTIPLE

    assert PAD_MULTIPLE == SIZE_MULTIPLE and computed_size(33, 64) == (64, 64) and computed_size(5, 5, (32, 64)) \
        == (32, 64)


def test_case02_max_pixels_bounds_the_network_input_of_a_test_scale() -> None:
    """A model with ``test_scale`` runs images larger than they are: the guard counts the scaled, padded input."""
    from hle_core.image_codec import ImageConversionError, computed_size, image_to_rgb

    assert computed_size(256, 512, 1.5) == (384, 768) and computed_size(100, 150, 1.5) == (160, 256)
    assert computed_size(100, 150, 1.0) == computed_size(100, 150) == (128, 160)
    img = raw_image(200, 200, data=bytes(200 * 200))
    assert image_to_rgb(img, 240 * 240, input_size=1.0).shape == (200, 200)          # 224 x 224 padded: fits
    with pytest.raises(ImageConversionError, match="scaled by the model's test_scale 1.5") as info:
        image_to_rgb(img, 240 * 240, input_size=1.5)                                 # 320 x 320: refused
    assert info.value.reason == "too_large"


class _NoopPipeline:
    """Enough of a Pipeline for evaluate_bag: no segments, records the image sizes it was given."""

    def __init__(self, input_size=None) -> None:
        from types import SimpleNamespace

        from hle_core.config import street_class_table

        self.classes, self.embedding_dim, self.device = street_class_table(), 8, "cpu"
        self.backend, self.tracker, self.input_size, self.seen = SimpleNamespace(name="noop"), None, input_size, []

    def reset_tracks(self) -> None:
        pass

    def process(self, image: np.ndarray):
        from hle_core.pipeline import FrameResult

        self.seen.append(image.shape[:2])
        z = np.zeros(0, np.int64)
        return FrameResult(panoptic=np.zeros(image.shape[:2], np.int32), ids=z, category_ids=z,
                           is_thing=z.astype(bool), scores=z.astype(np.float32), areas=z, boxes=z.reshape(0, 4),
                           embeddings=np.zeros((0, 8), np.float32), track_ids=z, timings_ms={"total": 1.0})


def test_case02_bag_eval_counts_thin_and_padded_oversize_images(tmp_path: Path) -> None:
    pytest.importorskip("rosbags")
    from hle_core.bags import BagWriter, evaluate_bag
    from hle_core.bags.types import IMAGE_TYPE
    from hle_core.bags.writer import image_message
    from hle_core.image_codec import encode_array

    path = tmp_path / "thin.mcap"
    with BagWriter(path) as bag:
        bag.add_topic(IMG, IMAGE_TYPE)
        for k, shape in enumerate([(1, 4000), (40, 40), (100, 100)]):
            bag.write(IMG, k + 1, image_message(bag.typestore, encode_array(np.zeros(shape, np.uint8), "mono8"),
                                                k + 1, "cam"))
    pipe = _NoopPipeline()
    m = evaluate_bag(path, IMG, pipeline=pipe, max_pixels=100 * 100, progress=False, warmup=0)
    assert m["rejected_by_reason"] == {"aspect": 1, "too_large": 1} and pipe.seen == [(40, 40)]
    pipe = _NoopPipeline(input_size=(64, 64))                   # resized to 64 x 64: the 100 x 100 image fits
    m = evaluate_bag(path, IMG, pipeline=pipe, max_pixels=100 * 100, progress=False, warmup=0)
    assert m["rejected_by_reason"] == {"aspect": 1} and pipe.seen == [(40, 40), (100, 100)]


# --- case 3: compressed images are refused on their header's size, before decoding ------------------------------
def big_png(height: int, width: int) -> bytes:
    """A valid mono8 PNG of ``height`` x ``width`` zeros, compressed row by row (never held in memory)."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    comp, row, parts = zlib.compressobj(9), bytes(width + 1), []
    for _ in range(height):
        parts.append(comp.compress(row))
    parts.append(comp.flush())
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b""))


def test_case03_compressed_bomb_is_refused_before_decoding(monkeypatch) -> None:
    import cv2

    from hle_core.image_codec import ImageConversionError, compressed_size, compressed_to_rgb

    png = big_png(5000, 5000)                                  # 25 M pixels in a few KB
    assert len(png) < 100_000 and compressed_size(png) == (5000, 5000)
    ok, jpg = cv2.imencode(".jpg", np.zeros((16, 16, 3), np.uint8))
    jpg = bytearray(jpg.tobytes())
    sof = jpg.index(b"\xff\xc0")
    jpg[sof + 5:sof + 9] = (6000).to_bytes(2, "big") + (6000).to_bytes(2, "big")   # declares 6000 x 6000

    def no_decoding(*a, **k):
        raise AssertionError("decoded before the size check")

    monkeypatch.setattr(cv2, "imdecode", no_decoding)
    from types import SimpleNamespace

    for fmt, data in (("png", png), ("jpeg", bytes(jpg))):
        with pytest.raises(ImageConversionError) as info:
            compressed_to_rgb(SimpleNamespace(format=fmt, data=data), 4096 * 4096)
        assert info.value.reason == "too_large" and "header" in str(info.value)
    with pytest.raises(ImageConversionError) as info:          # size unknown without decoding: not decoded
        compressed_to_rgb(SimpleNamespace(format="raw", data=b"\x00\x01garbage"), 4096 * 4096)
    assert info.value.reason == "decode"


# --- case 4: the checkpoint -> ONNX cache verifies the cached file's own bytes ----------------------------------
@pytest.mark.slow  # ONNX exports of the checkpoint: ~40 s on the 2-core machine
def test_case04_tampered_cached_onnx_with_the_right_label_is_re_exported(tiny_model: Path, tmp_path: Path,
                                                                           caplog) -> None:
    onnx = pytest.importorskip("onnx")
    from hle_core.runtime import cached_onnx_for_checkpoint, read_onnx_metadata
    from hle_core.runtime.engine_cache import file_sha256, sidecar_path

    out = cached_onnx_for_checkpoint(tiny_model, tmp_path, input_size=(64, 64))
    good = file_sha256(out)
    assert sidecar_path(out).is_file()
    proto = onnx.load(str(out))
    zeroed = 0
    for init in proto.graph.initializer:                        # zero weight tensors, keep every metadata label
        if init.raw_data and zeroed < 20:
            init.raw_data = bytes(len(init.raw_data))
            zeroed += 1
    onnx.save(proto, str(out))
    assert read_onnx_metadata(out).props["hle.source_sha256"] == file_sha256(tiny_model) and file_sha256(out) != good
    with caplog.at_level("WARNING", logger="hle_core.runtime"):
        again = cached_onnx_for_checkpoint(tiny_model, tmp_path, input_size=(64, 64))
    assert again == out and file_sha256(out) == good            # re-exported (the export is deterministic)
    assert "content changed after it was cached" in caplog.text
    caplog.clear()
    cached_onnx_for_checkpoint(tiny_model, tmp_path, input_size=(64, 64))      # intact: reused silently
    assert "not reused" not in caplog.text


# --- case 5: any malformed engine sidecar is a cache miss with a reason, and the cache repairs itself -------------
@pytest.mark.parametrize("sidecar", ["[1, 2, 3]", '"text"', "null", '{"format": "hle-engine", "version": 1, '
                                     '"key": [], "engine_sha256": 5, "metadata": {}, "onnx_io": {}}'])
def test_case05_malformed_engine_sidecar_is_a_logged_miss(tmp_path: Path, sidecar: str, caplog) -> None:
    from hle_core.runtime.engine_cache import EngineCache, EngineCacheError, EngineKey, read_sidecar, sidecar_path

    key = EngineKey(tensorrt_version="10.3.0", gpu_name="GPU", compute_capability=(9, 0), onnx_sha256="a" * 64,
                    precision="fp16", input_shapes=((1, 3, 64, 64),) * 3, workspace_mb=256)
    cache, calls = EngineCache(tmp_path), []

    def build() -> bytes:
        calls.append(1)
        return b"engine" + bytes([len(calls)])

    path, _ = cache.get_or_build(key, build, metadata={}, onnx_io={"inputs": {}, "outputs": {}})
    sidecar_path(path).write_text(sidecar)
    with pytest.raises(EngineCacheError):
        read_sidecar(path)
    with caplog.at_level("WARNING", logger="hle_core.runtime"):
        assert cache.lookup(key) is None
    assert "not reused" in caplog.text
    _, built = cache.get_or_build(key, build, metadata={}, onnx_io={"inputs": {}, "outputs": {}})
    assert built and len(calls) == 2 and read_sidecar(path)["key"] == key     # repaired


# --- case 6: half-written checkpoints of a killed save are removed at the next start of the run -----------------
def test_case06_partial_checkpoints_are_removed_at_the_next_start(tmp_path: Path, monkeypatch) -> None:
    from hle_core.config import HLEConfig
    from hle_core.training import trainer
    from hle_core.training.config import TrainConfig

    out = tmp_path / "run"
    out.mkdir()
    stale = [out / ".last.pt.k2j_9xq0.tmp", out / ".final.pt.abcdefgh.tmp"]
    keep = [out / "last.pt", out / ".other.pt.abcdefgh.tmp", out / "notes.tmp", out / ".last.pt.tmp"]
    for f in stale + keep:
        f.write_bytes(b"\0" * 1024)

    class Stop(Exception):
        pass

    def stop(cfg):                                              # the run starts, then stops before any training
        raise Stop

    monkeypatch.setattr(trainer, "build_model", stop)
    with pytest.raises(Stop):
        trainer.train(HLEConfig(), TrainConfig(out_dir=str(out), device="cpu"), progress=False)
    assert not any(f.exists() for f in stale) and all(f.exists() for f in keep)


# --- case 13: disk full during a checkpoint save: one clear error, the previous checkpoint kept -------------------
def test_case13_disk_full_during_save_names_the_file_and_keeps_the_old_one(tmp_path: Path, monkeypatch,
                                                                            tiny_config) -> None:
    import os

    from hle_core.model import CheckpointError, build_model, load_checkpoint, save_checkpoint

    model = build_model(tiny_config())
    path = save_checkpoint(tmp_path / "last.pt", model, step=1)
    before = digest(path)
    real_fdopen = os.fdopen

    def full_disk(fd, *args, **kwargs):                        # every write of the temporary file: ENOSPC
        os.close(fd)
        return real_fdopen(os.open("/dev/full", os.O_WRONLY), *args, **kwargs)

    monkeypatch.setattr(os, "fdopen", full_disk)
    with pytest.raises(CheckpointError, match=r"disk full while writing .*last\.pt.*previous last\.pt is unchanged"):
        save_checkpoint(path, model, step=2)
    monkeypatch.undo()
    assert digest(path) == before and load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]   # no temporary file left behind


# --- case 10: every expected error of every command is one line and exit status 2 --------------------------------
def one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err
    assert err.startswith(f"hle {command}: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_case10_expected_errors_are_one_line_and_exit_2(tiny_model: Path, tiny_bag: Path, tmp_path: Path,
                                                        capsys) -> None:
    trunc, rand, rand_onnx = tmp_path / "trunc.pt", tmp_path / "rand.pt", tmp_path / "rand.onnx"
    data = tiny_model.read_bytes()
    trunc.write_bytes(data[:len(data) // 2])
    rng = np.random.default_rng(0)
    rand.write_bytes(rng.bytes(4096))
    rand_onnx.write_bytes(rng.bytes(4096))
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    export = ["export", "onnx", "--height", "64", "--width", "64", "--out", str(tmp_path / "m.onnx"), "--checkpoint"]
    cases = [
        (export + [str(tmp_path / "missing.pt")], "export", "missing.pt"),
        (export + [str(trunc)], "export", "trunc.pt"),
        (export + [str(rand)], "export", "rand.pt"),
        (export[:-2] + [str(a_file / "m.onnx"), "--checkpoint", str(tiny_model)], "export", "a_file"),
        (["synth", "--out", str(tmp_path / "s"), "--num", "0"], "synth", "--num"),
        (["synth", "--out", str(tmp_path / "s"), "--num", "-2"], "synth", "--num"),
        (["bag-eval", "--bag", str(tiny_bag), "--image-topic", IMG, "--model", str(rand_onnx), "--out",
          str(tmp_path / "e")], "bag-eval", "rand.onnx"),
        (["bag-eval", "--bag", str(a_file), "--image-topic", IMG, "--model", str(tiny_model), "--out",
          str(tmp_path / "e")], "bag-eval", "not a rosbag2 bag"),
    ]
    bad_yaml = tmp_path / "recipe.yaml"
    bad_yaml.write_text("train:\n  steps: [1\n")
    cases.append((["train", "--config", str(bad_yaml)], "train", "recipe.yaml, line 3"))
    for argv, command, needle in cases:
        assert main(argv) == 2, argv
        assert needle in one_line_error(capsys, command), argv
    with pytest.raises(ValueError):                             # --debug: the traceback, before or after COMMAND
        main(["synth", "--out", str(tmp_path / "s"), "--num", "0", "--debug"])


def test_case10_read_yaml_names_file_line_and_column(tmp_path: Path) -> None:
    from hle_core.config import ConfigError, load_config, read_yaml

    bad = tmp_path / "c.yaml"
    bad.write_text("hle:\n  model: {embedding_dim: 8\n")
    with pytest.raises(ConfigError, match=r"c\.yaml, line \d+, column \d+: invalid YAML"):
        load_config(bad)
    bad.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ConfigError, match="not a UTF-8 text file"):
        read_yaml(bad)


# --- case 11: the whole recipe is range-checked before the first step, every error at once ------------------------
def test_case11_recipe_values_are_range_checked_all_at_once(tmp_path: Path, capsys) -> None:
    from hle_core.config import ConfigError
    from hle_core.training import load_recipe

    bad = {"log_every": 0, "lr": float("nan"), "crop_size": [-32, 64], "thing_crop_prob": 5.0, "num_workers": -1,
           "color_jitter": -0.1, "warmup_steps": -5, "grad_clip": -1.0, "poly_power": -0.9,
           "batch_size": "eight", "data": {"num_train": 0, "generator": {"density": 0}}}
    with pytest.raises(ConfigError) as info:
        load_recipe(None, {"train": bad})
    msg = str(info.value)
    for key in ("log_every", "lr", "crop_size", "thing_crop_prob", "num_workers", "color_jitter", "warmup_steps",
                "grad_clip", "poly_power", "batch_size", "data.num_train", "data.generator.density"):
        assert f"train.{key}" in msg, key
    assert "12 invalid value(s)" in msg
    # the CLI: one line, exit 2, before any training starts (no output folder, no traceback)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("train:\n  log_every: 0\n  steps: 2\n")
    assert main(["train", "--config", str(recipe), "--out", str(tmp_path / "run")]) == 2
    assert "train.log_every must be >= 1, got 0" in one_line_error(capsys, "train")
    assert not (tmp_path / "run").exists()


def test_case11_train_checks_a_hand_built_config_too(tmp_path: Path) -> None:
    from hle_core.config import ConfigError, HLEConfig
    from hle_core.training import train
    from hle_core.training.config import TrainConfig

    with pytest.raises(ConfigError, match=r"train\.log_every must be >= 1"):
        train(HLEConfig(), TrainConfig(out_dir=str(tmp_path / "run"), log_every=0, device="cpu"), progress=False)
    assert not (tmp_path / "run").exists()


# --- case 12: a model file's embedded config never makes the loader read a file -----------------------------------
def test_case12_embedded_class_path_is_refused_not_read(tmp_path: Path, monkeypatch) -> None:
    import json

    import torch

    import hle_core.config as config_mod
    from hle_core.config import HLEConfig
    from hle_core.model import CheckpointError, load_checkpoint
    from hle_core.runtime.export import OnnxMetadataError, info_from_props

    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps([{"id": 1, "name": "x", "isthing": True}]))
    doc = HLEConfig().to_dict()
    assert isinstance(doc["classes"], list)                       # exports and checkpoints embed the table itself
    doc["classes"] = str(secret)
    reads = []
    monkeypatch.setattr(config_mod, "load_class_table", lambda p: reads.append(p))
    ckpt = tmp_path / "evil.pt"
    torch.save({"format": "hle-checkpoint", "version": 1, "config": json.dumps(doc), "model": {}, "optimizer": None,
                "scheduler": None, "step": 0, "extra": "{}"}, ckpt)
    with pytest.raises(CheckpointError, match="class table itself"):
        load_checkpoint(ckpt)
    with pytest.raises(OnnxMetadataError, match="class table itself"):
        info_from_props({"hle.format": "hle-onnx", "hle.version": "1", "hle.config": json.dumps(doc),
                         "hle.decode_params": "{}", "hle.input": "{}", "hle.outputs": "[]"}, "evil.onnx")
    assert reads == []
    # a path the user names is still read: a recipe's hle.classes, --set hle.classes=...
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    assert HLEConfig().override({"classes": "secret.json"}).classes.names == ["x"]
