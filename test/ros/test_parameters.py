"""The node's parameter table against config/panoptic.yaml (generated from it) and hle_core's defaults and
ranges, and validation without ROS."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from hle_core.config import ConfigError, DecoderConfig, setting_range
from hle_core.tracking import TrackerConfig
from hle_ros.parameters import (
    PARAMETERS,
    PARAMETERS_BY_NAME,
    RESIZE_MODES,
    USE_MODEL_VALUE,
    ParameterError,
    default_parameters,
    load_yaml_parameters,
    render_yaml,
    validate_parameters,
)

YAML = Path(__file__).resolve().parents[2] / "config" / "panoptic.yaml"


@pytest.fixture()
def model_file(tmp_path: Path) -> str:
    path = tmp_path / "model.pt"
    path.write_bytes(b"not read by validation")
    return str(path)


def test_yaml_is_the_table_exactly() -> None:
    yaml_values = load_yaml_parameters(YAML)
    table = default_parameters()
    assert sorted(yaml_values) == sorted(table)
    for name, value in yaml_values.items():
        spec = PARAMETERS_BY_NAME[name]
        assert value == table[name], name
        # same ROS type: an int written for a float parameter would be declared as an integer by ROS
        assert type(value) is spec.type, f"{name}: YAML has {type(value).__name__}, table {spec.type.__name__}"


def test_yaml_file_is_the_generated_one() -> None:
    assert YAML.read_text(encoding="utf-8") == render_yaml(), \
        "config/panoptic.yaml is not what the table generates: run python -m hle_ros.parameters --write-yaml"


def test_decoder_and_tracker_ranges_come_from_the_library(model_file: str) -> None:
    for cls, prefix in ((DecoderConfig, "decoder"), (TrackerConfig, "tracking")):
        for f in dataclasses.fields(cls):
            spec = PARAMETERS_BY_NAME.get(f"{prefix}.{f.name}")
            if spec is not None:
                assert (spec.lo, spec.hi, spec.open_lo, spec.open_hi) == setting_range(cls, f.name), spec.name
                assert f.metadata["description"] in spec.description, spec.name
    # an open bound is refused by the node exactly where the library refuses it
    with pytest.raises(ParameterError, match=r"tracking\.max_birth_overlap: expected a value in \(0, 1\]"):
        validate_parameters({"model": model_file, "tracking.max_birth_overlap": 0.0})
    with pytest.raises(ConfigError, match=r"tracker\.max_birth_overlap must lie in \(0, 1\]"):
        TrackerConfig(max_birth_overlap=0.0).validate()
    assert validate_parameters({"model": model_file, "tracking.momentum": 0.9999999})["tracking.momentum"] == 0.9999999


def test_tracker_defaults_come_from_the_library() -> None:
    ref = TrackerConfig()
    for f in dataclasses.fields(TrackerConfig):
        assert PARAMETERS_BY_NAME[f"tracking.{f.name}"].default == getattr(ref, f.name)


def test_decoder_parameters_cover_the_decoder_config() -> None:
    names = {p.name.split(".", 1)[1] for p in PARAMETERS if p.name.startswith("decoder.")}
    # nms_kernel is a property of the trained decoder layout, not a run-time knob
    assert names == {f.name for f in dataclasses.fields(DecoderConfig)} - {"nms_kernel"}


def test_every_parameter_is_described() -> None:
    for spec in PARAMETERS:
        assert spec.description.strip(), spec.name
        assert type(spec.default) is spec.type, spec.name


def test_defaults_are_valid_once_a_model_is_given(model_file: str) -> None:
    p = validate_parameters({"model": model_file})
    assert p.input_size is None
    assert p.decoder_config(DecoderConfig(seed_threshold=0.123)).seed_threshold == 0.123   # model value kept
    assert p.tracker_config() == TrackerConfig()


def test_explicit_model_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ParameterError, match="model: file not found: '.*nope.pt'"):
        validate_parameters({"model": str(tmp_path / "nope.pt")})


def test_empty_model_is_the_shipped_default_at_its_training_size() -> None:
    from hle_core.config import SIZE_MULTIPLE, scaled_size
    from hle_core.model import load_checkpoint
    from hle_ros.default_model import DEFAULT_MODEL_INPUT_SIZE, find_default_model

    p = validate_parameters({})
    assert p.uses_default_model and Path(p.model_path) == find_default_model().path
    assert Path(p.model_path).is_file() and Path(p.model_path).name == "hle_street.pt"
    assert p.input_size == DEFAULT_MODEL_INPUT_SIZE and p["resize_mode"] == "letterbox"
    # which is the model's own test resolution of its training scenes, padded as the pipeline pads
    payload = load_checkpoint(p.model_path)
    train_size = payload["extra"]["train"]["data"]["image_size"]
    expected = scaled_size(tuple(train_size), payload["config"].model.test_scale)
    assert DEFAULT_MODEL_INPUT_SIZE == tuple(-(-v // SIZE_MULTIPLE) * SIZE_MULTIPLE for v in expected)
    # an explicit input size, or an explicit model, is taken as given
    assert validate_parameters({"input_height": 128, "input_width": 256}).input_size == (128, 256)
    assert validate_parameters({"model": p.model_path}).input_size is None


def test_default_model_lookup_order_and_missing_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hle_ros import default_model as dm

    share, checkout, empty = tmp_path / "share" / "models", tmp_path / "checkout" / "models", tmp_path / "none"
    for d in (share, checkout):
        d.mkdir(parents=True)
        (d / dm.DEFAULT_MODEL_FILE).write_bytes(b"x")
    found = dm.find_default_model([("ament index", share), ("source checkout", checkout)])
    assert found.path == share / dm.DEFAULT_MODEL_FILE and found.source == "ament index"
    found = dm.find_default_model([("ament index", empty), ("source checkout", checkout)])
    assert found.path == checkout / dm.DEFAULT_MODEL_FILE and found.source == "source checkout"
    assert found.searched == (empty / dm.DEFAULT_MODEL_FILE, checkout / dm.DEFAULT_MODEL_FILE)
    # nothing anywhere: the empty model parameter is a configure error naming every place looked at
    monkeypatch.setattr(dm, "default_model_candidates", lambda: [("ament index", empty)])
    with pytest.raises(ParameterError, match=r"model: no model file given and the shipped default model "
                                             r"hle_street.pt was not found \(looked in: .*none/hle_street.pt\)"):
        validate_parameters({})


def test_cameras_are_ros_names_given_once(model_file: str) -> None:
    assert validate_parameters({"model": model_file, "cameras": None}).cameras == ()      # YAML [] arrives as None
    assert validate_parameters({"model": model_file, "cameras": ["front", "left"]}).cameras == ("front", "left")
    with pytest.raises(ParameterError) as err:
        validate_parameters({"model": model_file, "cameras": ["front", "front", "2nd", "a/b"]})
    assert "cameras: names must be ROS name tokens" in str(err.value) and "['2nd', 'a/b']" in str(err.value)
    assert "cameras: each name once, got ['front']" in str(err.value)
    with pytest.raises(ParameterError, match="cameras: expected a list of names"):
        validate_parameters({"model": model_file, "cameras": "front"})


def test_integers_are_accepted_for_floats(model_file: str) -> None:
    p = validate_parameters({"model": model_file, "decoder.seed_threshold": 1, "overlay_alpha": 0})
    assert p["decoder.seed_threshold"] == 1.0 and isinstance(p["decoder.seed_threshold"], float)
    assert p.decoder_config(DecoderConfig()).seed_threshold == 1.0


@pytest.mark.parametrize("name,value,expected", [
    ("backend", "tensorflow",
     "backend: expected one of \\['auto', 'tensorrt', 'onnxruntime', 'torch'\\], got 'tensorflow'"),
    ("qos.depth", 0, "qos.depth: expected a value in \\[1, 1000\\], got 0"),
    ("qos.depth", True, "qos.depth: expected an integer, got True"),
    ("qos.reliability", "sometimes", "qos.reliability: expected one of"),
    ("decoder.seed_threshold", 1.5, "decoder.seed_threshold: expected a value in \\[0, 1\\], or -1.0"),
    ("decoder.seed_threshold", "high", "decoder.seed_threshold: expected a number, got 'high'"),
    ("decoder.max_seeds", 0, "decoder.max_seeds: expected a value in \\[1, 100000\\], or -1"),
    ("tracking.momentum", 1.0, "tracking.momentum: expected a value in"),
    ("fp16", "yes", "fp16: expected true/false, got 'yes'"),
    ("device", "gpu", "device: expected auto | cpu | cuda | cuda:N, got 'gpu'"),
    ("embedding_mode", "tsne", "embedding_mode: expected one of \\['pca', 'first3'\\]"),
    ("resize_mode", "crop", "resize_mode: expected one of \\['letterbox', 'stretch'\\], got 'crop'"),
    ("resize_mode", 1, "resize_mode: expected a string, got 1"),
    ("model", 5, "model: expected a string, got 5"),
    ("max_pixels", -1, "max_pixels: expected a value in"),
    ("overlay_alpha", float("nan"), "overlay_alpha: expected a finite number"),
])
def test_invalid_values_are_refused_with_a_clear_message(model_file, name, value, expected) -> None:
    with pytest.raises(ParameterError, match=expected):
        validate_parameters({"model": model_file, name: value})


def test_input_size_rules(model_file: str) -> None:
    params = validate_parameters({"model": model_file, "input_height": 512, "input_width": 1024})
    assert params.input_size == (512, 1024)
    with pytest.raises(ParameterError, match="set both or neither"):
        validate_parameters({"model": model_file, "input_height": 512})
    with pytest.raises(ParameterError, match="multiples of 32, got 500 x 1024"):
        validate_parameters({"model": model_file, "input_height": 500, "input_width": 1024})


def test_resize_mode_rules(model_file: str) -> None:
    from hle_core.pipeline import RESIZE_MODES as PIPELINE_MODES

    assert RESIZE_MODES == PIPELINE_MODES                       # the table repeats the pipeline's modes
    assert validate_parameters({"model": model_file})["resize_mode"] == "letterbox"
    p = validate_parameters({"model": model_file, "input_height": 256, "input_width": 512, "resize_mode": "stretch"})
    assert (p.input_size, p["resize_mode"]) == ((256, 512), "stretch")
    with pytest.raises(ParameterError, match="resize_mode: expected one of"):
        validate_parameters({"model": model_file, "resize_mode": "Letterbox"})


def test_all_errors_are_reported_at_once(tmp_path: Path) -> None:
    with pytest.raises(ParameterError) as info:
        validate_parameters({"backend": "x", "qos.depth": 0, "bogus": 1, "device": "tpu",
                             "model": str(tmp_path / "missing.pt")})
    text = str(info.value)
    for fragment in ("unknown parameter(s) ['bogus']", "backend:", "qos.depth:", "device:", "model:"):
        assert fragment in text


def test_decoder_sentinel_keeps_model_values_and_overrides_apply(model_file: str) -> None:
    tuned = DecoderConfig(seed_threshold=0.31, mask_threshold=0.62, min_stuff_area=100, fast_downsample=2)
    p = validate_parameters({"model": model_file, "decoder.mask_threshold": 0.7, "decoder.fast_downsample": 4})
    got = p.decoder_config(tuned)
    assert got == dataclasses.replace(tuned, mask_threshold=0.7, fast_downsample=4)
    assert PARAMETERS_BY_NAME["decoder.min_stuff_area"].default == USE_MODEL_VALUE


def test_tracking_switch_and_values(model_file: str) -> None:
    assert validate_parameters({"model": model_file, "tracking.enabled": False}).tracker_config() is None
    cfg = validate_parameters({"model": model_file, "tracking.min_hits": 1, "tracking.iou_gate": 0.3}).tracker_config()
    assert (cfg.min_hits, cfg.iou_gate) == (1, 0.3)


def test_yaml_loader_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_yaml_parameters(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("hle_panoptic:\n  other: 1\n")
    with pytest.raises(ParameterError, match="no '/\\*\\*' section"):
        load_yaml_parameters(bad)
