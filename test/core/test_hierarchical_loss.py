"""The hierarchical Lovász loss (paper eq. 7-16) against a naive per-instance loop implementation."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from hle_core.config import HLEConfig
from hle_core.losses import (LOSS_TERMS, HierarchicalLovaszLoss, LossInputError, instance_layout,
                             instance_variance_loss)


IGN = 255
THING = 6            # "car" in the street class table
STUFF_A, STUFF_B = 0, 4   # road, sky


def jaccard_loss_of_mistakes(mistakes: set[int], gt: list[int]) -> float:
    """Δ(M) = 1 - IoU(prediction, ground truth) when exactly the pixels in M are predicted wrong."""
    truth = {i for i, t in enumerate(gt) if t == 1}
    pred = {i for i, t in enumerate(gt) if (t == 1) != (i in mistakes)}
    union = pred | truth
    return 0.0 if not union else 1.0 - len(pred & truth) / len(union)


def lovasz_extension(errors: list[float], gt: list[int]) -> float:
    """Lovász extension of Δ at non-negative errors: the exact threshold integral ∫_0^∞ Δ({i : ξ_i ≥ t}) dt."""
    total, prev = 0.0, 0.0
    for v in sorted({e for e in errors if e > 0}):
        total += (v - prev) * jaccard_loss_of_mistakes({i for i, e in enumerate(errors) if e >= v}, gt)
        prev = v
    return total


def binary_errors(probs: list[float], gt: list[int]) -> list[float]:
    return [1.0 - p if t == 1 else p for p, t in zip(probs, gt)]      # paper eq. 4


def _cfg(d: int = 4, coord_scale: float = 4.0, **loss) -> HLEConfig:
    cfg = HLEConfig()
    cfg.model.embedding_dim = d
    cfg.model.coord_scale = coord_scale
    for k, v in loss.items():
        setattr(cfg.loss, k, v)
    return cfg


def _batch(dtype=torch.float64, d=4, seed=0, requires_grad=False):
    """Tiny 2-image batch (3 x 4): stuff, ignored pixels, crowd, 2 instances in image 0, 1 in image 1."""
    gen = torch.Generator().manual_seed(seed)
    b, h, w, k = 2, 3, 4, 8
    semantic = torch.tensor([[[0, 0, 6, 6], [6, 6, 6, 4], [IGN, 1, 6, 4]],
                             [[4, 4, 4, 4], [6, 6, IGN, 7], [6, 0, 0, 7]]])
    instance = torch.tensor([[[0, 0, 3, 3], [1, 1, 3, 0], [0, 0, 0, 0]],       # 6 at (2,2) is crowd
                             [[0, 0, 0, 0], [9, 9, 9, 0], [9, 0, 0, 0]]])       # 9 at ignored pixel: dropped
    e = F.normalize(torch.randn(b, d, h, w, generator=gen, dtype=dtype), dim=1)
    outputs = {
        "embedding": e,
        "sigma": (0.3 + 0.5 * torch.rand(b, 1, h, w, generator=gen, dtype=dtype)),
        "sigma_spatial": (0.3 + 0.5 * torch.rand(b, 1, h, w, generator=gen, dtype=dtype)),
        "seed": torch.rand(b, 1, h, w, generator=gen, dtype=dtype),
    }
    class_means = torch.randn(k, d, generator=gen, dtype=dtype)
    class_sigma = 0.4 + torch.rand(k, generator=gen, dtype=dtype)
    if requires_grad:
        for t in (*outputs.values(), class_means, class_sigma):
            t.requires_grad_()
    return outputs, class_means, class_sigma, semantic, instance


def naive_terms(outputs, class_means, class_sigma, semantic, instance, cfg) -> dict[str, float]:
    """eq. 7-15 with explicit loops over images, instances and pixels, float64 Python numbers."""
    e = outputs["embedding"].detach().double()
    sig = outputs["sigma"].detach().double()[:, 0]
    sig_sp = outputs["sigma_spatial"].detach().double()[:, 0]
    seed = outputs["seed"].detach().double()[:, 0]
    mu_hat = class_means.detach().double()
    sk = class_sigma.detach().double()
    b_, d, h, w = e.shape
    cs, gamma = cfg.model.coord_scale, cfg.loss.gamma

    def dot(a, b):
        return sum(float(x) * float(y) for x, y in zip(a, b))

    def unit(v):
        n = math.sqrt(dot(v, v))
        return [float(x) / n for x in v]

    ins_losses, var_sq, own_phi = [], [], {}
    for b in range(b_):
        valid = [(y, x) for y in range(h) for x in range(w) if semantic[b, y, x] != IGN]
        ids = sorted({int(instance[b, y, x]) for y, x in valid if instance[b, y, x] > 0})
        for l in ids:
            pix = [(y, x) for y, x in valid if instance[b, y, x] == l]
            mu = unit([sum(float(e[b, c, y, x]) for y, x in pix) / len(pix) for c in range(d)])
            s_l = sum(float(sig[b, y, x]) for y, x in pix) / len(pix)
            ssp_l = sum(float(sig_sp[b, y, x]) for y, x in pix) / len(pix)
            cx = sum(x / cs for y, x in pix) / len(pix)
            cy = sum(y / cs for y, x in pix) / len(pix)
            phis, labels = [], []
            for y, x in valid:
                p = math.exp(-(1.0 - dot(mu, e[b, :, y, x])) / (2 * s_l**2))            # eq. 7
                phi = p * math.exp(-((x / cs - cx) ** 2 + (y / cs - cy) ** 2) / (2 * ssp_l**2))  # eq. 8
                phis.append(phi)
                labels.append(int(instance[b, y, x] == l))
                if instance[b, y, x] == l:
                    own_phi[(b, y, x)] = phi
            ins_losses.append(lovasz_extension(binary_errors(phis, labels), labels))   # eq. 11
            for y, x in pix:
                var_sq.append((float(sig[b, y, x]) - s_l) ** 2 + (float(sig_sp[b, y, x]) - ssp_l) ** 2)

    all_valid = [(b, y, x) for b in range(b_) for y in range(h) for x in range(w) if semantic[b, y, x] != IGN]
    seed_term = sum((float(seed[p]) - own_phi.get(p, 0.0)) ** 2 for p in all_valid) / len(all_valid)  # eq. 13

    mus = [unit(mu_hat[k].tolist()) for k in range(mu_hat.shape[0])]
    probs, labels = [], []
    for b, y, x in all_valid:
        pk = [math.exp(-(1.0 - dot(mus[k], e[b, :, y, x])) / (2 * float(sk[k]) ** 2)) for k in range(len(mus))]
        z = sum(pk)
        probs.append([v / z for v in pk])                                                   # eq. 9
        labels.append(int(semantic[b, y, x]))
    present = sorted(set(labels))
    seg = sum(lovasz_extension([abs(int(t == c) - p[c]) for p, t in zip(probs, labels)],
                               [int(t == c) for t in labels]) for c in present) / len(present)  # eq. 12
    seg_mean = 0.0
    for c in present:                                                                       # eq. 15
        pts = [p for p, t in zip(all_valid, labels) if t == c]
        mb = unit([sum(float(e[b, ch, y, x]) for b, y, x in pts) for ch in range(d)])
        seg_mean += sum((float(mu_hat[c, ch]) - mb[ch]) ** 2 for ch in range(d))
    seg_mean /= len(present)
    return {"seg": seg, "seg_mean": seg_mean, "ins": sum(ins_losses) / len(ins_losses),
            "ins_var": gamma * sum(var_sq) / len(var_sq), "seed": seed_term}


# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("balanced", [False, True])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 2e-5)])
def test_terms_match_naive_loop_oracle(dtype, tol, balanced):
    cfg = _cfg(w_seg=0.5, w_seg_mean=2.0, w_ins=1.5, w_ins_var=0.25, w_seed=3.0)
    batch = _batch(dtype)
    if balanced:                                  # 2 instances in each image: the unpadded instance table
        batch[4][1, 2, 3] = 2
    out = HierarchicalLovaszLoss(cfg)(*batch)
    expected = naive_terms(*batch, cfg)
    for name in LOSS_TERMS:
        assert out[name].dtype == dtype and out[name].dim() == 0
        assert out[name].item() == pytest.approx(expected[name], abs=tol, rel=tol), name
    lc = cfg.loss
    total = (lc.w_seg * expected["seg"] + lc.w_seg_mean * expected["seg_mean"] + lc.w_ins * expected["ins"]
             + lc.w_ins_var * expected["ins_var"] + lc.w_seed * expected["seed"])
    assert out["total"].item() == pytest.approx(total, abs=tol, rel=tol)
    assert out["num_instances"].item() == (4.0 if balanced else 3.0)
    assert out["total"].device == batch[0]["embedding"].device


def test_instance_layout_numbers_instances_per_image():
    instance = torch.tensor([[0, 5, 5, 2, 0], [7, 0, 7, 7, 0], [0, 0, 0, 0, 0]])
    valid = torch.ones_like(instance, dtype=torch.bool)
    valid[0, 3] = False                                                  # instance 2 only on an ignored pixel
    lay = instance_layout(instance, valid)
    assert lay.num_instances == 2 and lay.num_slots == 1
    assert lay.image.tolist() == [0, 1] and lay.slot.tolist() == [0, 0] and lay.count.tolist() == [2, 3]
    assert lay.pixel_instance.tolist() == [[-1, 0, 0, -1, -1], [1, -1, 1, 1, -1], [-1] * 5]


def test_seed_loss_gives_no_gradient_to_embedding_or_sigmas():
    outputs, *rest = _batch(requires_grad=True)
    out = HierarchicalLovaszLoss(_cfg())(outputs, *rest)
    grads = torch.autograd.grad(out["seed"], [outputs["embedding"], outputs["sigma"], outputs["sigma_spatial"],
                                              outputs["seed"]], allow_unused=True)
    assert all(g is None or not g.any() for g in grads[:3])
    assert grads[3] is not None and grads[3].abs().sum() > 0


def test_variance_loss_stops_gradient_through_instance_mean():
    sigma = torch.tensor([0.2, 0.4, 0.9], dtype=torch.float64, requires_grad=True)
    sigma_hat = torch.tensor([0.3, 0.9], dtype=torch.float64, requires_grad=True)
    loss = instance_variance_loss(sigma, sigma_hat, torch.tensor([0, 0, 1]), gamma=10.0)
    assert loss.item() == pytest.approx(10.0 * (0.1**2 + 0.1**2 + 0.0) / 3)
    g_sigma, g_hat = torch.autograd.grad(loss, [sigma, sigma_hat], allow_unused=True)
    assert g_hat is None
    torch.testing.assert_close(g_sigma, torch.tensor([-2 / 3, 2 / 3, 0.0], dtype=torch.float64))


def test_class_mean_loss_gives_no_gradient_to_embeddings():
    outputs, class_means, *rest = _batch(requires_grad=True)
    out = HierarchicalLovaszLoss(_cfg())(outputs, class_means, *rest)
    g_e, g_mu = torch.autograd.grad(out["seg_mean"], [outputs["embedding"], class_means], allow_unused=True)
    assert g_e is None or not g_e.any()
    assert g_mu is not None and g_mu.abs().sum() > 0


def test_use_vq_off_zeroes_seg_mean():
    out = HierarchicalLovaszLoss(_cfg(use_vq=False))(*_batch())
    assert out["seg_mean"].item() == 0.0


def test_no_instances():
    outputs, means, sig, semantic, instance = _batch(requires_grad=True)
    out = HierarchicalLovaszLoss(_cfg())(outputs, means, sig, semantic, torch.zeros_like(instance))
    assert out["ins"].item() == 0.0 and out["ins_var"].item() == 0.0
    valid = semantic != IGN
    seed = outputs["seed"].detach()[:, 0]
    assert out["seed"].item() == pytest.approx((seed[valid] ** 2).mean().item())   # everything regressed to 0
    out["total"].backward()
    assert outputs["embedding"].grad is not None and torch.isfinite(outputs["embedding"].grad).all()


def test_all_pixels_ignored():
    outputs, means, sig, semantic, instance = _batch(requires_grad=True)
    out = HierarchicalLovaszLoss(_cfg())(outputs, means, sig, torch.full_like(semantic, IGN), instance)
    for name in (*LOSS_TERMS, "total"):
        assert out[name].item() == 0.0, name
    out["total"].backward()
    assert not outputs["embedding"].grad.any() and not means.grad.any()


def test_single_pixel_instance():
    outputs, means, sig, semantic, instance = _batch(requires_grad=True)
    instance = torch.zeros_like(instance)
    instance[1, 2, 0] = 4                                                  # one thing pixel
    cfg = _cfg()
    out = HierarchicalLovaszLoss(cfg)(outputs, means, sig, semantic, instance)
    expected = naive_terms(outputs, means, sig, semantic, instance, cfg)
    for name in LOSS_TERMS:
        assert out[name].item() == pytest.approx(expected[name], abs=1e-10), name
    assert out["ins_var"].item() == pytest.approx(0.0, abs=1e-15)          # σ_i equals its own mean
    out["total"].backward()
    assert all(torch.isfinite(t.grad).all() for t in outputs.values())


def test_empty_image():
    e = torch.zeros(1, 4, 0, 5, requires_grad=True)
    outputs = {"embedding": e, "sigma": torch.ones(1, 1, 0, 5), "sigma_spatial": torch.ones(1, 1, 0, 5),
               "seed": torch.zeros(1, 1, 0, 5)}
    out = HierarchicalLovaszLoss(_cfg())(outputs, torch.randn(8, 4), torch.ones(8),
                                         torch.zeros(1, 0, 5, dtype=torch.long), torch.zeros(1, 0, 5, dtype=torch.long))
    assert out["total"].item() == 0.0
    out["total"].backward()


def test_split_embedding_routes_halves():
    cfg = _cfg(d=4, split_embedding=True)
    outputs, means, sig, semantic, instance = _batch(d=4)
    loss = HierarchicalLovaszLoss(cfg)
    base = loss(outputs, means, sig, semantic, instance)
    e = outputs["embedding"].clone()
    e_sem_changed = e.clone()
    e_sem_changed[:, :2] = torch.randn_like(e[:, :2])
    e_ins_changed = e.clone()
    e_ins_changed[:, 2:] = torch.randn_like(e[:, 2:])
    a = loss({**outputs, "embedding": e_sem_changed}, means, sig, semantic, instance)
    b = loss({**outputs, "embedding": e_ins_changed}, means, sig, semantic, instance)
    assert a["ins"].item() == pytest.approx(base["ins"].item()) and a["seg"].item() != pytest.approx(base["seg"].item())
    assert b["seg"].item() == pytest.approx(base["seg"].item()) and b["ins"].item() != pytest.approx(base["ins"].item())
    assert b["seg_mean"].item() == pytest.approx(base["seg_mean"].item())
    # the semantic half alone, renormalised, is what the paper's loss sees (oracle on a 2-D problem)
    half_cfg = _cfg(d=2)
    half = {**outputs, "embedding": F.normalize(e[:, :2], dim=1)}
    ref = naive_terms(half, means[:, :2], sig, semantic, instance, half_cfg)
    assert base["seg"].item() == pytest.approx(ref["seg"], abs=1e-10)
    assert base["seg_mean"].item() == pytest.approx(ref["seg_mean"], abs=1e-10)
    # class means given as (K, D/2) are accepted too
    assert loss(outputs, means[:, :2], sig, semantic, instance)["seg"].item() == pytest.approx(base["seg"].item())


def test_separate_semantic_branch_uses_cross_entropy():
    cfg = _cfg()
    cfg.model.separate_semantic_branch = True
    outputs, means, sig, semantic, instance = _batch()
    logits = torch.randn(2, 8, 3, 4, dtype=torch.float64)
    out = HierarchicalLovaszLoss(cfg)({**outputs, "semantic_logits": logits}, means, sig, semantic, instance)
    valid = semantic != IGN
    lp = torch.log_softmax(logits, 1).permute(0, 2, 3, 1)[valid]          # P x K
    expected = -lp[torch.arange(lp.shape[0]), semantic[valid]].mean()
    assert out["seg"].item() == pytest.approx(expected.item(), abs=1e-12)
    assert out["seg_mean"].item() == 0.0
    with pytest.raises(LossInputError, match="semantic_logits"):
        HierarchicalLovaszLoss(cfg)(outputs, means, sig, semantic, instance)


@pytest.mark.parametrize("variant", ["ae", "cross_entropy"])
def test_table6_variants_are_selected_by_config(variant):
    batch = _batch()
    lovasz = HierarchicalLovaszLoss(_cfg())(*batch)
    out = HierarchicalLovaszLoss(_cfg(embedding_loss=variant))(*batch)
    assert torch.isfinite(out["total"])
    assert out["seg"].item() != pytest.approx(lovasz["seg"].item())
    assert out["ins"].item() != pytest.approx(lovasz["ins"].item())
    for name in ("seed", "ins_var", "seg_mean"):                           # shared terms are unchanged
        assert out[name].item() == pytest.approx(lovasz[name].item())


def test_bad_inputs_raise():
    loss = HierarchicalLovaszLoss(_cfg())
    outputs, means, sig, semantic, instance = _batch()
    with pytest.raises(LossInputError, match="embedding_dim"):
        HierarchicalLovaszLoss(_cfg(d=6))(outputs, means, sig, semantic, instance)
    with pytest.raises(LossInputError, match="int64"):
        loss(outputs, means, sig, semantic.int(), instance)
    with pytest.raises(LossInputError, match=r"0\.\.7"):
        loss(outputs, means, sig, semantic.masked_fill(semantic == 4, 9), instance)
    with pytest.raises(LossInputError, match="class_sigma"):
        loss(outputs, means, sig[:5], semantic, instance)
    with pytest.raises(LossInputError, match="sigma_spatial"):
        loss({**outputs, "sigma_spatial": outputs["sigma"][:, :, :2]}, means, sig, semantic, instance)
    with pytest.raises(LossInputError, match=">= 0"):
        loss(outputs, means, sig, semantic, instance - 1)


# ---------------------------------------------------------------------------------------------------------------
def _toy_scene(h: int = 16, w: int = 16):
    """Two stuff classes (sky above, road below) and two car instances standing on the road."""
    semantic = torch.full((1, h, w), STUFF_B)
    semantic[:, h // 2:] = STUFF_A
    instance = torch.zeros(1, h, w, dtype=torch.long)
    instance[:, 9:14, 2:6] = 1
    instance[:, 9:14, 10:14] = 2
    semantic[instance > 0] = THING
    return semantic, instance


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gradient_descent_on_free_embeddings_builds_the_hierarchy(dtype):
    torch.manual_seed(0)
    d, h, w = 4, 16, 16          # a crowded space (8 classes in 4-D), like the paper's 19 classes in 12-D
    cfg = _cfg(d=d, coord_scale=16.0)
    semantic, instance = _toy_scene(h, w)
    raw_e = torch.randn(1, d, h, w, dtype=dtype, requires_grad=True)
    raw_s = torch.zeros(1, 1, h, w, dtype=dtype, requires_grad=True)
    raw_ssp = torch.zeros(1, 1, h, w, dtype=dtype, requires_grad=True)
    raw_seed = torch.zeros(1, 1, h, w, dtype=dtype, requires_grad=True)
    means = F.normalize(torch.randn(8, d, dtype=dtype), dim=1).requires_grad_()
    log_cs = torch.full((8,), math.log(0.5), dtype=dtype, requires_grad=True)
    params = [raw_e, raw_s, raw_ssp, raw_seed, means, log_cs]
    opt = torch.optim.Adam(params, lr=0.05)
    loss = HierarchicalLovaszLoss(cfg)

    def step():
        outputs = {"embedding": F.normalize(raw_e, dim=1), "sigma": 0.5 * raw_s.exp(),
                   "sigma_spatial": 0.25 * raw_ssp.exp(), "seed": torch.sigmoid(raw_seed)}
        return loss(outputs, means, log_cs.exp(), semantic, instance)

    first = step()["total"].item()
    for _ in range(100):
        opt.zero_grad()
        out = step()
        out["total"].backward()
        opt.step()
    last = step()
    assert last["total"].item() < 0.5 * first
    assert last["ins"].item() < 0.2 and last["seg"].item() < 0.2      # instances told apart, classes right

    e = F.normalize(raw_e.detach(), dim=1)[0]                              # D x H x W

    def region_mean(mask):
        return F.normalize(e[:, mask].mean(1), dim=0)

    car1, car2 = region_mean(instance[0] == 1), region_mean(instance[0] == 2)
    sky, road = region_mean(semantic[0] == STUFF_B), region_mean(semantic[0] == STUFF_A)
    same_class = car1 @ car2
    assert same_class > max(car1 @ sky, car1 @ road, car2 @ sky, car2 @ road)
    # both instances sit inside the car class: their nearest persistent class mean is μ̂_car
    mu_hat = F.normalize(means.detach(), dim=1)
    assert int((mu_hat @ car1).argmax()) == THING and int((mu_hat @ car2).argmax()) == THING
