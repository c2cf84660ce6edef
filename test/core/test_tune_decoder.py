"""``hle tune-decoder`` and :func:`hle_core.evaluation.tune.tune_decoder`: trial 0 is the checkpoint's decoder, the
best is never worse, the output YAML loads as a config, same seed -> same search, bad inputs.

Oracle for "tuning improves PQ": network outputs built from the ground truth (embeddings at the class means plus
noise), decoded with a deliberately bad starting configuration (stuff threshold above every ψ, so all stuff
is void); any stuff threshold below ψ recovers the stuff segments.
"""
from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import pytest
import torch

from hle_core.cli import main
from hle_core.config import ClassTable, HLEConfig, load_config
from hle_core.data import SyntheticDataset, cityscapes_class_table
from hle_core.evaluation.predict import CachedOutputs, decode_and_score
from hle_core.evaluation.tune import SEARCH_SPACE, parse_space, tune_decoder
from hle_core.model import build_model, load_model, save_checkpoint

TUNED = list(SEARCH_SPACE)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    cfg = HLEConfig()
    cfg.model.backbone, cfg.model.pretrained = "mobilenet_v2", None
    cfg.model.aspp_channels, cfg.model.decoder_channels, cfg.model.embedding_dim = 16, 16, 8
    cfg.decoder.min_instance_area, cfg.decoder.min_stuff_area, cfg.decoder.stuff_threshold = 8, 16, 0.2
    cfg.validate()
    torch.manual_seed(0)
    return save_checkpoint(tmp_path_factory.mktemp("tune") / "tiny.pt", build_model(cfg))


def tune_cli(ckpt: Path, out: Path, *extra: str, seed: int = 0, trials: int = 6) -> int:
    return main(["tune-decoder", "--checkpoint", str(ckpt), "--synthetic", "2", "--size", "64x128",
                 "--trials", str(trials), "--seed", str(seed), "--out", str(out), "--no-progress", *extra])


def read_table(path: Path) -> list[dict]:
    with open(path) as f:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]


@pytest.mark.slow  # ~20 s on the 2-core machine
def test_cli_writes_a_loadable_best_config_and_the_trial_table(ckpt, tmp_path, capsys):
    out = tmp_path / "best.yaml"
    assert tune_cli(ckpt, out, "--save-checkpoint", str(tmp_path / "tuned.pt")) == 0
    printed = capsys.readouterr().out
    assert "checkpoint" in printed and "best (trial" in printed

    base = load_model(ckpt).cfg.decoder
    table = json.loads((tmp_path / "best.trials.json").read_text())
    rows = table["trials"]
    assert [r["trial"] for r in rows] == list(range(6))
    assert {k: rows[0][k] for k in TUNED} == {k: getattr(base, k) for k in TUNED}       # trial 0 = checkpoint
    assert table["best"]["pq"] == max(r["pq"] for r in rows) >= rows[0]["pq"] == table["baseline"]["pq"]
    assert len(read_table(tmp_path / "best.trials.csv")) == 6

    # the YAML is an `hle: decoder:` section: load_config applies it over the defaults, every field present
    best = load_config(out).decoder
    assert dataclasses.asdict(best) == table["best"]["decoder"]
    best_row = rows[table["best"]["trial"]]
    assert {k: getattr(best, k) for k in TUNED} == {k: best_row[k] for k in TUNED}
    # the checkpoint copy carries the tuned decoder and the same weights
    tuned = load_model(tmp_path / "tuned.pt")
    assert tuned.cfg.decoder == best
    for (k, a), b in zip(load_model(ckpt).state_dict().items(), tuned.state_dict().values()):
        assert torch.equal(a, b), k


@pytest.mark.slow  # ~16 s
def test_same_seed_same_search_other_seed_other_search(ckpt, tmp_path):
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        assert tune_cli(ckpt, tmp_path / f"{name}.yaml", seed=seed, trials=4) == 0
    a, b, c = (read_table(tmp_path / f"{n}.trials.csv") for n in "abc")
    assert a == b
    assert a[0] == c[0] and a[1:] != c[1:]                                            # trial 0 is not sampled


def oracle_outputs(num: int = 3) -> tuple[list[CachedOutputs], dict[str, torch.Tensor], HLEConfig]:
    """Cached 'network outputs' made from the ground truth of synthetic scenes: e = normalise(onehot(class) +
    noise) with class means = the unit vectors, σ_k = 0.5, so ψ of the true class is about 0.5; no seeds."""
    cfg = HLEConfig()
    cfg.model.embedding_dim = len(cfg.classes)
    ds = SyntheticDataset(num, seed=11, size=(64, 128), classes=cfg.classes)
    g = torch.Generator().manual_seed(0)
    cached = []
    for i in range(num):
        item = ds[i]
        sem = item["semantic"].clamp_max(len(cfg.classes) - 1)                          # H x W, ignore -> last class
        e = torch.nn.functional.one_hot(sem, len(cfg.classes)).permute(2, 0, 1).float()  # K x H x W
        e = torch.nn.functional.normalize(e + 0.05 * torch.randn(e.shape, generator=g), dim=0)
        ones = torch.ones(1, *sem.shape)
        cached.append(CachedOutputs(i, item["panoptic"].numpy(), None,
                                    {"embedding": e, "sigma": 0.5 * ones, "sigma_spatial": 0.5 * ones,
                                     "seed": 0 * ones}))
    params = {"class_means": torch.eye(len(cfg.classes)), "class_sigma": torch.full((len(cfg.classes),), 0.5)}
    return cached, params, cfg


def test_tuning_recovers_from_a_bad_starting_configuration():
    cached, params, cfg = oracle_outputs()
    cfg.decoder = dataclasses.replace(cfg.decoder, stuff_threshold=0.95, min_stuff_area=16)
    start = decode_and_score(cached, params, cfg).results()
    assert start["Stuff"]["pq"] == 0.0                                                # all stuff void
    space = {**SEARCH_SPACE, "min_stuff_area": (0, 256)}                           # areas of 64x128 images
    result = tune_decoder(cached, params, cfg, trials=8, seed=0, space=space)
    assert result.trials[0]["stuff_threshold"] == 0.95 and result.trials[0]["pq"] == start["All"]["pq"]
    assert result.best_results["Stuff"]["pq"] > 0.5 and result.best_results["All"]["pq"] > start["All"]["pq"]
    assert result.best.stuff_threshold < 0.5
    # the best configuration, decoded again, gives the PQ the search recorded
    again = decode_and_score(cached, params, cfg, result.best).results()
    assert again["All"]["pq"] == result.best_results["All"]["pq"]


def test_ties_go_to_trial_zero_and_ranges_widen_to_hold_the_start():
    cached, params, cfg = oracle_outputs(1)
    # every value of this space decodes the same (stuff ψ ≈ 0.5 > 0.3, no seeds at all): all trials tie
    space = {**SEARCH_SPACE, "stuff_threshold": (0.0, 0.3), "min_stuff_area": (0, 16)}
    cfg.decoder = dataclasses.replace(cfg.decoder, stuff_threshold=0.1, min_stuff_area=32)
    result = tune_decoder(cached, params, cfg, trials=5, seed=0, space=space)
    assert result.space["min_stuff_area"] == (0, 32)                                  # widened to hold the start
    assert len({r["pq"] for r in result.trials}) == 1
    assert result.best_trial == 0 and result.best == cfg.decoder


def test_parse_space():
    assert parse_space(["min_stuff_area=0:100"])["min_stuff_area"] == (0.0, 100.0)
    for bad in ("nope=0:1", "seed_threshold=0.5", "seed_threshold=a:b", "seed_threshold=0.9:0.1"):
        with pytest.raises(ValueError):
            parse_space([bad])


def test_bad_inputs_exit_2(ckpt, tmp_path, capsys):
    assert tune_cli(tmp_path / "missing.pt", tmp_path / "o.yaml") == 2
    assert "missing.pt" in capsys.readouterr().err
    assert tune_cli(ckpt, tmp_path / "o.yaml", "--space", "seed_threshold=0:2") == 2
    assert "[0, 1]" in capsys.readouterr().err
    assert tune_cli(ckpt, tmp_path / "o.yaml", trials=0) == 2
    assert "--trials" in capsys.readouterr().err
    assert main(["tune-decoder", "--checkpoint", str(ckpt), "--data", str(tmp_path / "nodata"), "--trials", "2",
                 "--out", str(tmp_path / "o.yaml"), "--no-progress"]) == 2
    assert "nodata" in capsys.readouterr().err


def test_synthetic_scenes_need_the_street_classes(tmp_path, capsys):
    classes = ClassTable(tuple(c for c in cityscapes_class_table().classes if c.name != "sky"))
    cfg = HLEConfig(classes=classes)
    cfg.model.backbone, cfg.model.pretrained = "mobilenet_v2", None
    cfg.model.aspp_channels, cfg.model.decoder_channels, cfg.model.embedding_dim = 8, 8, 4
    ckpt = save_checkpoint(tmp_path / "cs.pt", build_model(cfg))
    assert tune_cli(ckpt, tmp_path / "o.yaml") == 2
    err = capsys.readouterr().err
    assert "--synthetic" in err and "class table lacks" in err


def test_synthetic_scenes_default_to_the_checkpoints_training_data(tmp_path, ckpt):
    """--synthetic without --size/--generator uses the scene size and generator options the checkpoint was
    trained with (recorded in its extra), so tuning sees the training distribution; explicit flags win."""
    import argparse

    from hle_core.commands.tune_decoder import _synthetic_settings
    from hle_core.config import ConfigError
    from hle_core.model import load_checkpoint

    payload = load_checkpoint(ckpt)
    model = load_model(ckpt)
    trained = save_checkpoint(tmp_path / "trained.pt", model, extra={"train": {"data": {
        "format": "synthetic", "image_size": [64, 96], "generator": {"min_area": 32, "density": 0.5}}}})
    ns = lambda **kw: argparse.Namespace(**{"checkpoint": trained, "size": None, "generator": None, **kw})  # noqa: E731
    assert _synthetic_settings(ns()) == ((64, 96), {"min_area": 32, "density": 0.5})
    assert _synthetic_settings(ns(size=(32, 64), generator="{density: 2.0}")) == ((32, 64), {"density": 2.0})
    with pytest.raises(ConfigError, match="YAML mapping"):
        _synthetic_settings(ns(generator="[1, 2]"))
    plain = argparse.Namespace(checkpoint=ckpt, size=None, generator=None)   # no training record: defaults
    assert payload["extra"].get("train") is None and _synthetic_settings(plain) == ((256, 512), {})


@pytest.mark.parametrize("scale", [None, "1.5"])
def test_the_recorded_command_reproduces_the_run_test_scale_included(scale):
    """The command written into the tuned YAML must carry every option that changes the result (a release tuned
    at --test-scale 1.5 once recorded a command without it, which tunes at scale 1)."""
    import argparse
    import shlex

    from hle_core.commands.tune_decoder import add_parser, command_line

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command", required=True))
    argv = ["tune-decoder", "--checkpoint", "m.pt", "--synthetic", "32", "--synthetic-seed", "2000003",
            "--size", "256x512", "--trials", "40", "--seed", "0", "--out", "d.yaml"]
    argv += ["--test-scale", scale] if scale is not None else []
    args = parser.parse_args(argv)
    recorded = parser.parse_args(shlex.split(command_line(args))[1:])
    assert recorded.test_scale == args.test_scale == (None if scale is None else 1.5)
    for name in ("checkpoint", "synthetic", "synthetic_seed", "size", "trials", "seed", "out"):
        assert getattr(recorded, name) == getattr(args, name), name
