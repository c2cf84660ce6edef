"""hle_core.config: lossless round trips (dict, JSON, YAML), override precedence, and every validation error,
each raising ConfigError (a ValueError) whose message names the offending key and the value received."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from hle_core.config import (
    LABEL_DIVISOR,
    VOID_ID,
    ClassInfo,
    ClassTable,
    ConfigError,
    DecoderConfig,
    HLEConfig,
    LossConfig,
    ModelConfig,
    load_config,
    street_class_table,
)

ROOT = Path(__file__).resolve().parents[2]


def non_default_config() -> HLEConfig:
    """A config whose every section differs from the defaults (so a lost field cannot go unnoticed)."""
    classes = ClassTable((ClassInfo(3, "grass", False, (0, 255, 0)), ClassInfo(999, "robot", True, (1, 2, 3))))
    model = dataclasses.replace(ModelConfig(), backbone="resnet50", embedding_dim=8, output_stride=8,
                                pretrained="/weights/r50.pth", sigma_init=0.3, mean=(0.5, 0.5, 0.5),
                                separate_semantic_branch=True)
    loss = dataclasses.replace(LossConfig(), gamma=3.5, embedding_loss="ae", split_embedding=True, use_vq=False,
                               ignore_index=254)
    decoder = dataclasses.replace(DecoderConfig(), seed_threshold=0.2, nms_kernel=5, max_seeds=10,
                                  min_instance_area=0, fast_downsample=4)
    return HLEConfig(classes, model, loss, decoder)


def assert_same(a: HLEConfig, b: HLEConfig) -> None:
    assert a.classes == b.classes
    assert a.model == b.model and a.loss == b.loss and a.decoder == b.decoder


# ---- round trips --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [HLEConfig, non_default_config])
def test_dict_round_trip(make):
    cfg = make()
    assert_same(HLEConfig.from_dict(cfg.to_dict()), cfg)


@pytest.mark.parametrize("make", [HLEConfig, non_default_config])
def test_json_round_trip_and_json_is_plain(make):
    cfg = make()
    text = cfg.to_json()
    assert json.loads(text) == cfg.to_dict()           # only JSON types (tuples became lists)
    assert_same(HLEConfig.from_json(text), cfg)


@pytest.mark.parametrize("section", [None, "hle"])
def test_yaml_round_trip_through_load_config(tmp_path, section):
    cfg = non_default_config()
    data = cfg.to_dict() if section is None else {section: cfg.to_dict(), "train": {"steps": 5}}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(data))
    assert_same(load_config(path), cfg)


def test_tuples_come_back_as_tuples():
    cfg = HLEConfig.from_json(non_default_config().to_json())
    assert cfg.model.mean == (0.5, 0.5, 0.5) and isinstance(cfg.model.mean, tuple)
    assert cfg.classes.classes[1].color == (1, 2, 3) and isinstance(cfg.classes.classes[1].color, tuple)


def test_int_given_for_float_becomes_float():
    cfg = HLEConfig.from_dict({"loss": {"gamma": 3}})
    assert cfg.loss.gamma == 3.0 and isinstance(cfg.loss.gamma, float)


def test_copy_is_deep():
    cfg = HLEConfig()
    other = cfg.copy()
    other.model.embedding_dim = 99
    assert cfg.model.embedding_dim == ModelConfig().embedding_dim


# ---- defaults and class table -------------------------------------------------------------------------------
def test_defaults_validate_and_constants():
    HLEConfig().validate()
    assert (VOID_ID, LABEL_DIVISOR) == (0, 1000)


def test_class_table_views():
    table = street_class_table()
    names, ids, things = table.names, table.ids, table.thing_mask
    assert len(table) == len(names) == len(ids) == len(things)
    assert table.thing_indices == [k for k, t in enumerate(things) if t]
    assert table.stuff_indices == [k for k, t in enumerate(things) if not t]
    for k, cid in enumerate(ids):
        assert table.index_of_id(cid) == k


def test_class_table_unknown_id():
    with pytest.raises(KeyError, match=r"category id 5 not in class table"):
        street_class_table().index_of_id(5)


@pytest.mark.parametrize("classes, message", [
    ((), r"class table is empty"),
    ((ClassInfo(7, "a", False), ClassInfo(7, "b", True)), r"duplicate category ids in class table: \[7, 7\]"),
    ((ClassInfo(0, "void", False),), r"category ids must lie in 1\.\.999, got \[0\]"),
    ((ClassInfo(1000, "big", True),), r"category ids must lie in 1\.\.999, got \[1000\]"),
    ((ClassInfo(-3, "neg", True),), r"category ids must lie in 1\.\.999, got \[-3\]"),
])
def test_class_table_errors(classes, message):
    with pytest.raises(ConfigError, match=message):
        ClassTable(classes)


@pytest.mark.parametrize("entry", [{"name": "road", "isthing": False}, {"id": 7, "isthing": False},
                                   {"id": 7, "name": "x"}])
def test_class_entry_missing_key(entry):
    with pytest.raises(ConfigError, match=r"bad class table entry"):
        HLEConfig.from_dict({"classes": [entry]})


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


# ---- overrides ----------------------------------------------------------------------------------------------
def test_override_changes_only_the_given_keys():
    base = non_default_config()
    out = base.override({"model": {"embedding_dim": 16}, "decoder": {"mask_threshold": 0.9}})
    assert out.model == dataclasses.replace(base.model, embedding_dim=16)
    assert out.decoder == dataclasses.replace(base.decoder, mask_threshold=0.9)
    assert out.loss == base.loss and out.classes == base.classes
    assert base.model.embedding_dim == 8                 # the original is untouched


def test_override_replaces_the_class_table():
    out = HLEConfig().override({"classes": [{"id": 5, "name": "x", "isthing": True}]})
    assert out.classes.ids == [5] and out.classes.names == ["x"] and out.classes.thing_mask == [True]


def test_load_config_precedence(tmp_path):
    """defaults < YAML file < overrides argument; keys given nowhere keep their typed defaults."""
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"hle": {"model": {"embedding_dim": 24, "backbone": "resnet101"}},
                                    "train": {"lr": 1.0}}))
    cfg = load_config(path, overrides={"model": {"embedding_dim": 32}})
    assert cfg.model.embedding_dim == 32 and cfg.model.backbone == "resnet101"
    assert cfg.model.output_stride == ModelConfig().output_stride
    assert cfg.loss == LossConfig() and cfg.decoder == DecoderConfig() and cfg.classes == street_class_table()


def test_load_config_without_file_and_empty_file(tmp_path):
    assert_same(load_config(), HLEConfig())
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert_same(load_config(empty), HLEConfig())


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "config").glob("*.yaml")))
def test_shipped_yaml_configs_load(name, tmp_path, monkeypatch):
    """Every file in config/ loads and validates, and its hle: section is what the loaded config holds. A recipe
    whose classes come from a dataset's JSON (COCO, Vistas) gets a small categories file at that path."""
    path = ROOT / "config" / name
    section = (yaml.safe_load(path.read_text()) or {}).get("hle", {}) or {}
    expected_ids = None
    if isinstance(section.get("classes"), str):
        assert not Path(section["classes"]).is_absolute()
        monkeypatch.chdir(tmp_path)                          # relative to the CWD (e.g. the repository root)
        (tmp_path / section["classes"]).parent.mkdir(parents=True)
        (tmp_path / section["classes"]).write_text(json.dumps({"categories": COCO_CATEGORIES}))
        expected_ids = [c["id"] for c in COCO_CATEGORIES]
    elif "classes" in section:
        expected_ids = [c["id"] for c in section["classes"]]
    cfg = load_config(path)
    for key, value in (section.get("model") or {}).items():
        got = getattr(cfg.model, key)
        assert (list(got) if isinstance(got, tuple) else got) == value, f"{name}: model.{key}"
    if expected_ids is not None:
        assert cfg.classes.ids == expected_ids


# ---- every error path ---------------------------------------------------------------------------------------
def test_load_config_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"config file not found: .*nope\.yaml"):
        load_config(tmp_path / "nope.yaml")


def test_load_config_top_level_not_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match=r"list\.yaml: expected a mapping at top level, got list"):
        load_config(path)


def test_unknown_top_level_key():
    with pytest.raises(ConfigError, match=r"unknown top-level config keys: \['modle'\]"):
        HLEConfig.from_dict({"modle": {}})


def test_section_not_a_mapping():
    with pytest.raises(ConfigError, match=r"decoder: expected a mapping, got list"):
        HLEConfig.from_dict({"decoder": [1, 2]})


def test_unknown_key_in_section_lists_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown keys in loss: \['gama'\]; known: \[.*'gamma'.*\]"):
        HLEConfig.from_dict({"loss": {"gama": 1.0}})


def test_null_section_keeps_defaults():
    assert HLEConfig.from_dict({"model": None}).model == ModelConfig()


@pytest.mark.parametrize("section, key, value, message", [
    ("model", "thomson_init", 1, r"model\.thomson_init must be true/false, got 1"),
    ("model", "thomson_init", "yes", r"model\.thomson_init must be true/false, got 'yes'"),
    ("model", "embedding_dim", 12.0, r"model\.embedding_dim must be an integer, got 12\.0"),
    ("model", "embedding_dim", True, r"model\.embedding_dim must be an integer, got True"),
    ("model", "embedding_dim", "12", r"model\.embedding_dim must be an integer, got '12'"),
    ("loss", "gamma", "10", r"loss\.gamma must be a number, got '10'"),
    ("loss", "gamma", False, r"loss\.gamma must be a number, got False"),
    ("model", "mean", [0.5, 0.5], r"model\.mean must be a list of 3 values, got \[0\.5, 0\.5\]"),
    ("model", "mean", 0.5, r"model\.mean must be a list of 3 values, got 0\.5"),
    ("model", "std", ["a", 1, 1], r"model\.std: could not convert string to float: 'a'"),
    ("model", "backbone", 50, r"model\.backbone must be a string, got 50"),
])
def test_wrong_types(section, key, value, message):
    with pytest.raises(ConfigError, match=message):
        HLEConfig.from_dict({section: {key: value}})


@pytest.mark.parametrize("override, message", [
    ({"model": {"backbone": "vgg16"}}, r"model\.backbone must be resnet50\|resnet101\|mobilenet_v2, got 'vgg16'"),
    ({"model": {"embedding_dim": 1}}, r"model\.embedding_dim must be >= 2, got 1"),
    ({"model": {"embedding_dim": 7}, "loss": {"split_embedding": True}},
     r"loss\.split_embedding needs an even model\.embedding_dim"),
    ({"model": {"output_stride": 32}}, r"model\.output_stride must be 8 or 16, got 32"),
    ({"model": {"sigma_init": 0.0}}, r"model\.sigma_init must be > 0"),
    ({"model": {"sigma_spatial_init": -1.0}}, r"model\.sigma_spatial_init must be > 0"),
    ({"model": {"class_sigma_init": 0}}, r"model\.class_sigma_init must be > 0"),
    ({"model": {"coord_scale": -512.0}}, r"model\.coord_scale must be > 0"),
    ({"model": {"test_scale": 0.0}}, r"model\.test_scale must lie in \[0\.25, 4\], got 0\.0"),
    ({"model": {"test_scale": 5}}, r"model\.test_scale must lie in \[0\.25, 4\], got 5"),
    ({"loss": {"embedding_loss": "dice"}}, r"loss\.embedding_loss must be lovasz\|ae\|cross_entropy, got 'dice'"),
    ({"decoder": {"seed_threshold": 1.5}}, r"decoder\.seed_threshold must lie in \[0, 1\], got 1\.5"),
    ({"decoder": {"merge_threshold": -0.1}}, r"decoder\.merge_threshold must lie in \[0, 1\], got -0\.1"),
    ({"decoder": {"mask_threshold": 2}}, r"decoder\.mask_threshold must lie in \[0, 1\], got 2"),
    ({"decoder": {"stuff_threshold": -1}}, r"decoder\.stuff_threshold must lie in \[0, 1\], got -1"),
    ({"decoder": {"nms_kernel": 4}}, r"decoder\.nms_kernel must be odd and >= 1, got 4"),
    ({"decoder": {"nms_kernel": -1}}, r"decoder\.nms_kernel must be odd and >= 1, got -1"),
    ({"decoder": {"max_seeds": 0}}, r"decoder\.max_seeds/fast_downsample must be >= 1, areas >= 0"),
    ({"decoder": {"fast_downsample": 0}}, r"decoder\.max_seeds/fast_downsample must be >= 1, areas >= 0"),
    ({"decoder": {"min_instance_area": -1}}, r"decoder\.max_seeds/fast_downsample must be >= 1, areas >= 0"),
    ({"decoder": {"min_stuff_area": -5}}, r"decoder\.max_seeds/fast_downsample must be >= 1, areas >= 0"),
])
def test_out_of_range_values(override, message):
    with pytest.raises(ConfigError, match=message):
        HLEConfig.from_dict(override)
    with pytest.raises(ConfigError, match=message):     # the same check guards override() and load_config()
        HLEConfig().override(override)


def test_boundary_values_are_accepted():
    cfg = HLEConfig.from_dict({"model": {"embedding_dim": 2, "output_stride": 8},
                               "decoder": {"seed_threshold": 0.0, "merge_threshold": 1.0, "nms_kernel": 1,
                                           "max_seeds": 1, "min_instance_area": 0, "min_stuff_area": 0}})
    assert cfg.model.embedding_dim == 2 and cfg.decoder.nms_kernel == 1


def test_validate_catches_direct_mutation():
    cfg = HLEConfig()
    cfg.decoder.nms_kernel = 2
    with pytest.raises(ConfigError, match=r"decoder\.nms_kernel must be odd and >= 1, got 2"):
        cfg.validate()


# ---- class-table entries and optional fields: each error names the field -----------------------------------------
def test_null_hle_section(tmp_path):
    path = tmp_path / "null.yaml"
    path.write_text("hle: null\ntrain: {steps: 3}\n")
    assert_same(load_config(path), HLEConfig())


def test_hle_section_not_a_mapping(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("hle: [1, 2]\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: 'hle' must be a mapping, got list"):
        load_config(path)


def test_unknown_key_in_hle_section_is_refused(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump({"hle": {"modle": {"embedding_dim": 4}}}))
    with pytest.raises(ConfigError, match=r"unknown top-level config keys: \['modle'\]"):
        load_config(path)


def test_isthing_must_be_a_bool():
    with pytest.raises(ConfigError, match=r"classes\[0\]: isthing must be true/false \(or 0/1 as in COCO\), got 'no'"):
        HLEConfig.from_dict({"classes": [{"id": 3, "name": "x", "isthing": "no"}]})
    with pytest.raises(ConfigError, match=r"isthing .* got 2"):
        HLEConfig.from_dict({"classes": [{"id": 3, "name": "x", "isthing": 2}]})


def test_isthing_zero_one_as_in_coco_json():
    cfg = HLEConfig.from_dict({"classes": [{"id": 3, "name": "x", "isthing": 1}, {"id": 4, "name": "y", "isthing": 0}]})
    assert cfg.classes.thing_mask == [True, False]
    assert all(isinstance(c.isthing, bool) for c in cfg.classes.classes)


def test_class_id_must_be_an_integer():
    with pytest.raises(ConfigError, match=r"classes\[1\]: id must be an integer, got 'abc'"):
        HLEConfig.from_dict({"classes": [{"id": 2, "name": "y", "isthing": True},
                                         {"id": "abc", "name": "x", "isthing": False}]})


@pytest.mark.parametrize("color", [[1], [1, 2, 3, 4], [0, 0, 256], [0, -1, 0], "red", [1.5, 2, 3]])
def test_class_color_must_have_three_channels(color):
    with pytest.raises(ConfigError, match=r"color must be 3 integers in 0\.\.255"):
        HLEConfig.from_dict({"classes": [{"id": 3, "name": "x", "isthing": False, "color": color}]})


def test_class_name_must_be_a_string_and_classes_a_list():
    with pytest.raises(ConfigError, match=r"classes\[0\]: name must be a string, got 5"):
        HLEConfig.from_dict({"classes": [{"id": 3, "name": 5, "isthing": False}]})
    with pytest.raises(ConfigError, match=r"classes must be a list .* got 5"):
        HLEConfig.from_dict({"classes": 5})
    with pytest.raises(ConfigError, match=r"classes\[0\]: expected a mapping, got 7"):
        HLEConfig.from_dict({"classes": [7]})


def test_pretrained_must_be_a_string_or_null():
    with pytest.raises(ConfigError, match=r"model\.pretrained must be a string or null, got 5"):
        HLEConfig.from_dict({"model": {"pretrained": 5}})
    assert HLEConfig.from_dict({"model": {"pretrained": "w.pth"}}).model.pretrained == "w.pth"
    assert HLEConfig.from_dict({"model": {"pretrained": None}}).model.pretrained is None


def test_null_for_a_required_field_is_refused():
    with pytest.raises(ConfigError, match=r"model\.embedding_dim must not be null \(expected an integer\)"):
        HLEConfig.from_dict({"model": {"embedding_dim": None}})


# ---- hle.classes as a path to a COCO-style categories JSON ---------------------------------------------------
COCO_CATEGORIES = [   # a few real COCO panoptic categories (ids, names, thing flags and colours as in panopticapi)
    {"supercategory": "person", "isthing": 1, "id": 1, "name": "person", "color": [220, 20, 60]},
    {"supercategory": "vehicle", "isthing": 1, "id": 3, "name": "car", "color": [0, 0, 142]},
    {"supercategory": "sky", "isthing": 0, "id": 187, "name": "sky-other-merged", "color": [106, 154, 176]},
    {"supercategory": "ground", "isthing": 0, "id": 149, "name": "road"},
]


def _check_coco_classes(cfg: HLEConfig) -> None:
    assert cfg.classes.ids == [1, 3, 187, 149]
    assert cfg.classes.names == ["person", "car", "sky-other-merged", "road"]
    assert cfg.classes.thing_mask == [True, True, False, False]
    assert cfg.classes.classes[0].color == (220, 20, 60) and cfg.classes.classes[3].color == (128, 128, 128)


@pytest.mark.parametrize("layout", ["panoptic_json", "categories_list"])
def test_classes_from_a_json_next_to_the_yaml(tmp_path, layout):
    """A COCO panoptic annotation file (its `categories`) or panopticapi's categories list, relative to the YAML."""
    data = ({"images": [], "annotations": [], "categories": COCO_CATEGORIES} if layout == "panoptic_json"
            else COCO_CATEGORIES)
    (tmp_path / "ann").mkdir()
    (tmp_path / "ann" / "cats.json").write_text(json.dumps(data))
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({"hle": {"classes": "ann/cats.json", "model": {"embedding_dim": 16}}}))
    cfg = load_config(path)
    _check_coco_classes(cfg)
    assert cfg.model.embedding_dim == 16
    assert_same(HLEConfig.from_json(cfg.to_json()), cfg)         # checkpoints carry the resolved table


def test_classes_path_falls_back_to_the_cwd(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "cats.json").write_text(json.dumps(COCO_CATEGORIES))
    (tmp_path / "cfg").mkdir()
    path = tmp_path / "cfg" / "recipe.yaml"
    path.write_text(yaml.safe_dump({"hle": {"classes": "data/cats.json"}}))
    monkeypatch.chdir(tmp_path)
    _check_coco_classes(load_config(path))
    _check_coco_classes(HLEConfig().override({"classes": "data/cats.json"}))     # --set hle.classes=... (CWD)
    _check_coco_classes(load_config(None, {"classes": str(tmp_path / "data" / "cats.json")}))   # absolute


def test_classes_path_next_to_the_yaml_wins_over_the_cwd(tmp_path, monkeypatch):
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "cats.json").write_text(json.dumps(COCO_CATEGORIES))
    (tmp_path / "cats.json").write_text(json.dumps(COCO_CATEGORIES[:1]))
    path = tmp_path / "cfg" / "recipe.yaml"
    path.write_text(yaml.safe_dump({"hle": {"classes": "cats.json"}}))
    monkeypatch.chdir(tmp_path)
    _check_coco_classes(load_config(path))


def test_classes_path_errors_name_the_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({"hle": {"classes": "missing.json"}}))
    with pytest.raises(ConfigError, match=r"recipe\.yaml: hle\.classes: class file 'missing\.json' not found"):
        load_config(path)
    (tmp_path / "nocats.json").write_text(json.dumps({"images": []}))
    with pytest.raises(ConfigError, match=r"nocats\.json: a mapping without 'categories'"):
        HLEConfig().override({"classes": "nocats.json"})
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"broken\.json: not valid JSON"):
        HLEConfig().override({"classes": "broken.json"})
    (tmp_path / "badentry.json").write_text(json.dumps([{"id": 1, "name": "person", "isthing": "yes"}]))
    with pytest.raises(ConfigError, match=r"badentry\.json: categories\[0\]: isthing"):
        HLEConfig().override({"classes": "badentry.json"})


def test_test_scale_defaults_to_one_for_model_files_written_before_it():
    """A model file's embedded config from before ``model.test_scale`` existed reads as scale 1 (as it ran)."""
    old = HLEConfig().to_dict()
    del old["model"]["test_scale"]
    assert HLEConfig.from_dict(old).model.test_scale == 1.0
    assert HLEConfig().override({"model": {"test_scale": 1.5}}).model.test_scale == 1.5


def test_scaled_size_rounds_each_side():
    from hle_core.config import scaled_size

    assert scaled_size((256, 512), 1.5) == (384, 768) and scaled_size((480, 640), 1.0) == (480, 640)
    assert scaled_size((3, 5), 0.25) == (1, 1) and scaled_size((101, 99), 1.5) == (152, 148)
