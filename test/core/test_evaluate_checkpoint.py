"""``hle evaluate --checkpoint C --data DIR``: predictions written as valid COCO panoptic files, scored by
``pq_compute``; flip test-time augmentation; bad inputs.

Oracles: ``hle evaluate pq`` re-reading the written files; the in-memory evaluation of the same network
(:func:`hle_core.evaluation.predict.evaluate_model`, which never touches the files); flip-equivariant networks
built by hand, for which flip averaging must change nothing.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from hle_core.cli import build_parser, main
from hle_core.config import HLEConfig
from hle_core.data import PanopticDataset
from hle_core.panoptic_io import read_panoptic_png
from hle_core.evaluation.predict import evaluate_model, flip_average, infer_outputs
from hle_core.model import build_model, load_model, save_checkpoint

SIZE = "64x128"
TOL = 1e-12


def tiny_config() -> HLEConfig:
    cfg = HLEConfig()
    cfg.model.backbone, cfg.model.pretrained = "mobilenet_v2", None
    cfg.model.aspp_channels, cfg.model.decoder_channels, cfg.model.embedding_dim = 16, 16, 8
    cfg.decoder.min_instance_area, cfg.decoder.min_stuff_area = 8, 16
    cfg.validate()
    return cfg


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A tiny untrained checkpoint and 3 synthetic 64x128 validation images in COCO and Cityscapes layout."""
    root = tmp_path_factory.mktemp("eval_ckpt")
    torch.manual_seed(0)
    ckpt = save_checkpoint(root / "tiny.pt", build_model(tiny_config()))
    for fmt in ("coco", "cityscapes"):
        assert main(["synth", "--out", str(root / fmt), "--num", "3", "--seed", "5", "--size", SIZE,
                     "--format", fmt, "--split", "val"]) == 0
    return {"ckpt": ckpt, "coco": root / "coco", "cityscapes": root / "cityscapes", "root": root}


def evaluate(files, out: Path, *extra: str, fmt: str = "coco", data: Path | None = None) -> int:
    return main(["evaluate", "--checkpoint", str(files["ckpt"]), "--data", str(data or files[fmt]), "--format", fmt,
                 "--split", "val", "--out", str(out), "--workers", "1", "--no-progress", *extra])


def assert_same_numbers(a: dict, b: dict) -> None:
    for name in ("All", "Things", "Stuff"):
        assert a[name]["n"] == b[name]["n"]
        for k in ("pq", "sq", "rq"):
            assert a[name][k] == pytest.approx(b[name][k], abs=TOL), (name, k)
    assert a["miou"]["miou"] == pytest.approx(b["miou"]["miou"], abs=TOL)
    assert a["pq_dagger"]["All"]["pq_dagger"] == pytest.approx(b["pq_dagger"]["All"]["pq_dagger"], abs=TOL)
    assert a["pc"]["All"]["pc"] == pytest.approx(b["pc"]["All"]["pc"], abs=TOL)
    pa = {str(k): v for k, v in a["per_class"].items()}
    pb = {str(k): v for k, v in b["per_class"].items()}
    assert pa.keys() == pb.keys()
    for cid in pa:
        for k in ("tp", "fp", "fn"):
            assert pa[cid][k] == pb[cid][k], (cid, k)
        assert pa[cid]["pq"] == pytest.approx(pb[cid]["pq"], abs=TOL)


# ---- argument layout ----------------------------------------------------------------------------------------
def test_parser_accepts_checkpoint_mode_and_pq_mode():
    parser = build_parser()
    a = parser.parse_args(["evaluate", "--checkpoint", "c.pt", "--data", "d"])
    assert (a.evaluate_command, str(a.checkpoint), str(a.data), a.flip, a.split) == (None, "c.pt", "d", False, "val")
    b = parser.parse_args(["evaluate", "pq", "--gt-json", "g.json", "--pred-json", "p.json"])
    assert (b.evaluate_command, str(b.gt_json), b.checkpoint) == ("pq", "g.json", None)


# ---- end to end ---------------------------------------------------------------------------------------------
def test_predictions_are_valid_coco_panoptic_and_read_back_with_the_same_numbers(files, tmp_path, capsys):
    out = tmp_path / "eval"
    assert evaluate(files, out) == 0
    printed = capsys.readouterr().out
    assert "All" in printed and "Things" in printed and "PQ†" in printed and "mIoU" in printed
    results = json.loads((out / "results.json").read_text())
    info = results["evaluation"]
    assert info["images"] == 3 and info["flip"] is False and info["ground_truth_written"] is False
    assert Path(info["ground_truth_json"]) == files["coco"] / "annotations" / "panoptic_val.json"

    # valid COCO panoptic: every PNG id is listed once in segments_info and vice versa, known categories, no crowd
    pred = json.loads((out / "predictions.json").read_text())
    gt = json.loads(Path(info["ground_truth_json"]).read_text())
    assert [a["image_id"] for a in pred["annotations"]] == [a["image_id"] for a in gt["annotations"]]
    cat_ids = {c["id"] for c in gt["categories"]}
    for ann in pred["annotations"]:
        ids = read_panoptic_png(out / "predictions" / ann["file_name"]).copy()
        assert ids.shape == (64, 128)
        present = set(np.unique(ids).tolist()) - {0}
        listed = [s["id"] for s in ann["segments_info"]]
        assert sorted(listed) == sorted(present) and len(set(listed)) == len(listed)
        for s in ann["segments_info"]:
            assert s["category_id"] in cat_ids and s["iscrowd"] == 0
            assert s["area"] == int((ids == s["id"]).sum())

    # `hle evaluate pq` on the written files gives the same numbers
    again = tmp_path / "again.json"
    assert main(["evaluate", "pq", "--gt-json", info["ground_truth_json"], "--gt-folder", info["ground_truth_folder"],
                 "--pred-json", str(out / "predictions.json"), "--workers", "1", "--out", str(again)]) == 0
    assert_same_numbers(results, json.loads(again.read_text()))

    # and so does the in-memory evaluation of the same network on the same data set (no files involved)
    model = load_model(files["ckpt"])
    ds = PanopticDataset(files["coco"], "coco", model.cfg.classes, split="val")
    assert_same_numbers(results, json.loads(json.dumps(evaluate_model(model, model.cfg, ds))))


def test_cityscapes_without_panoptic_json_scores_against_written_ground_truth(files, tmp_path):
    data = tmp_path / "cs"
    shutil.copytree(files["cityscapes"], data)
    (data / "gtFine" / "cityscapes_panoptic_val.json").unlink()       # gtFine instanceIds only
    out = tmp_path / "eval"
    assert evaluate(files, out, fmt="cityscapes", data=data) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["evaluation"]["ground_truth_written"] is True
    assert (out / "ground_truth.json").is_file()
    model = load_model(files["ckpt"])
    ds = PanopticDataset(data, "cityscapes", model.cfg.classes, split="val")
    assert_same_numbers(results, json.loads(json.dumps(evaluate_model(model, model.cfg, ds))))


def test_limit_scores_only_the_first_images(files, tmp_path):
    out = tmp_path / "eval"
    assert evaluate(files, out, "--limit", "2") == 0
    results = json.loads((out / "results.json").read_text())
    assert results["evaluation"]["images"] == 2 and results["images"] == 2
    assert len(json.loads((out / "ground_truth.json").read_text())["annotations"]) == 2


def test_flip_tta_runs_end_to_end(files, tmp_path):
    out = tmp_path / "eval_flip"
    assert evaluate(files, out, "--flip") == 0
    assert json.loads((out / "results.json").read_text())["evaluation"]["flip"] is True


def test_test_scale_runs_the_network_larger_and_scores_at_the_image_size(files, tmp_path):
    out = tmp_path / "eval_scaled"
    assert evaluate(files, out, "--test-scale", "1.5") == 0
    results = json.loads((out / "results.json").read_text())
    assert results["evaluation"]["test_scale"] == 1.5
    pred = json.loads((out / "predictions.json").read_text())
    for ann in pred["annotations"]:                                   # predictions at the ground truth's size
        assert read_panoptic_png(out / "predictions" / ann["file_name"]).shape == (64, 128)
    plain = tmp_path / "eval_plain"
    assert evaluate(files, plain) == 0
    assert json.loads((plain / "results.json").read_text())["evaluation"]["test_scale"] == 1.0
    # the in-memory path (tune-decoder, validation) decodes the scaled maps and scores them the same way
    model = load_model(files["ckpt"])
    cfg = model.cfg.override({"model": {"test_scale": 1.5}})
    ds = PanopticDataset(files["coco"], "coco", cfg.classes, split="val")
    assert_same_numbers(results, json.loads(json.dumps(evaluate_model(model, cfg, ds))))


def test_a_test_scale_out_of_range_is_a_clear_error(files, tmp_path, capsys):
    assert evaluate(files, tmp_path / "bad", "--test-scale", "0") == 2
    assert "model.test_scale must lie in [0.25, 4]" in capsys.readouterr().err


def test_decoder_yaml_overrides_the_checkpoint_thresholds(files, tmp_path):
    yaml_path = tmp_path / "decoder.yaml"
    yaml_path.write_text("hle:\n  decoder:\n    stuff_threshold: 1.0\n    min_stuff_area: 0\n")
    out = tmp_path / "eval"
    assert evaluate(files, out, "--decoder", str(yaml_path)) == 0
    info = json.loads((out / "results.json").read_text())["evaluation"]
    assert info["decoder"]["stuff_threshold"] == 1.0 and info["decoder"]["min_instance_area"] == 8
    pred = json.loads((out / "predictions.json").read_text())
    stuff = {c["id"] for c in pred["categories"] if not c["isthing"]}
    # psi <= 1 on every pixel: a threshold of 1 voids all stuff
    assert not any(s["category_id"] in stuff for a in pred["annotations"] for s in a["segments_info"])


# ---- flip test-time augmentation ----------------------------------------------------------------------------
class MirrorNet(torch.nn.Module):
    """Outputs of the HLENet contract from a 3x3 convolution: width-symmetric kernels (``symmetric``) make it
    flip-equivariant, f(flip x) = flip f(x); a 1x1 kernel is equivariant at any width."""

    def __init__(self, k: int = 3, symmetric: bool = True, dim: int = 4):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        w = torch.randn(dim + 3, 3, k, k, generator=g)
        if symmetric:
            w = 0.5 * (w + w.flip(-1))
        self.conv = torch.nn.Conv2d(3, dim + 3, k, padding=k // 2, bias=False)
        self.conv.weight.data.copy_(w)
        self.dim = dim

    def forward(self, x):
        y = self.conv(x)
        return {"embedding": torch.nn.functional.normalize(y[:, :self.dim], dim=1),
                "sigma": torch.nn.functional.softplus(y[:, self.dim:self.dim + 1]),
                "sigma_spatial": torch.nn.functional.softplus(y[:, self.dim + 1:self.dim + 2]),
                "seed": torch.sigmoid(y[:, self.dim + 2:])}


class ImageList:
    def __init__(self, images):
        self.images = images

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        h, w = self.images[i].shape[-2:]
        return {"image": self.images[i], "panoptic": torch.zeros(h, w, dtype=torch.int32)}


def test_flip_average_of_a_flip_equivariant_network_is_its_plain_output():
    x = torch.randn(1, 3, 64, 128, generator=torch.Generator().manual_seed(1))
    net = MirrorNet().eval()
    with torch.no_grad():
        plain, mirrored = net(x), net(x.flip(-1))
    avg = flip_average(plain, mirrored)
    for k in plain:
        torch.testing.assert_close(avg[k], plain[k], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("k,width", [(3, 128), (1, 100)])   # 100: padded to 128, 1x1 kernel stays equivariant
def test_infer_outputs_with_flip_equals_without_for_equivariant_networks(k, width):
    images = [torch.randn(3, 64, width, generator=torch.Generator().manual_seed(s)) for s in range(2)]
    cfg = HLEConfig()
    net = MirrorNet(k=k)
    plain = list(infer_outputs(net, cfg, ImageList(images), flip=False))
    flipped = list(infer_outputs(net, cfg, ImageList(images), flip=True))
    for a, b in zip(plain, flipped):
        assert a.maps["embedding"].shape == (4, 64, width)
        for key in a.maps:
            torch.testing.assert_close(b.maps[key], a.maps[key], atol=1e-5, rtol=1e-5)


def test_flip_changes_the_outputs_of_a_network_that_is_not_equivariant():
    """The flip path really runs the mirror image: an asymmetric kernel gives different maps."""
    images = [torch.randn(3, 64, 128, generator=torch.Generator().manual_seed(3))]
    net = MirrorNet(symmetric=False)
    plain = next(infer_outputs(net, HLEConfig(), ImageList(images), flip=False))
    flipped = next(infer_outputs(net, HLEConfig(), ImageList(images), flip=True))
    assert (flipped.maps["sigma"] - plain.maps["sigma"]).abs().max() > 1e-3
    # and equals the hand-made average of the two passes
    with torch.no_grad():
        a, b = net(images[0][None]), net(images[0].flip(-1)[None])
    torch.testing.assert_close(flipped.maps["sigma"], (0.5 * (a["sigma"] + b["sigma"].flip(-1)))[0])
    e = a["embedding"] + b["embedding"].flip(-1)
    torch.testing.assert_close(flipped.maps["embedding"], (e / e.norm(dim=1, keepdim=True))[0])


# ---- bad inputs ---------------------------------------------------------------------------------------------
def test_missing_checkpoint(files, tmp_path, capsys):
    assert main(["evaluate", "--checkpoint", str(tmp_path / "nope.pt"), "--data", str(files["coco"]),
                 "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "checkpoint not found" in err and "nope.pt" in err


def test_corrupt_checkpoint(files, tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(files["ckpt"].read_bytes()[:5000])                  # truncated
    assert main(["evaluate", "--checkpoint", str(bad), "--data", str(files["coco"]), "--out", str(tmp_path / "o"),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "bad.pt" in err and "corrupt" in err


def test_missing_data_dir(files, tmp_path, capsys):
    assert main(["evaluate", "--checkpoint", str(files["ckpt"]), "--data", str(tmp_path / "nodata"),
                 "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    assert "nodata" in capsys.readouterr().err


def test_data_dir_without_the_split(files, tmp_path, capsys):
    assert main(["evaluate", "--checkpoint", str(files["ckpt"]), "--data", str(files["coco"]), "--split", "test",
                 "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    assert "panoptic_test.json" in capsys.readouterr().err


def test_missing_arguments_and_mixed_modes(files, capsys):
    assert main(["evaluate", "--checkpoint", str(files["ckpt"])]) == 2
    assert "--data" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", str(files["ckpt"]), "pq", "--gt-json", "g", "--pred-json", "p"]) == 2
    assert "no MODE" in capsys.readouterr().err
