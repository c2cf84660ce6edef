"""Table-6 baselines: associative embedding (eq. 1-2) and cross-entropy variants."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from hle_core.config import HLEConfig
from hle_core.losses import (HierarchicalLovaszLoss, ae_pull, ae_push, associative_embedding_loss,
                             group_mean_embeddings, instance_binary_cross_entropy, semantic_cross_entropy)


def _l1(a, b):
    return sum(abs(float(x) - float(y)) for x, y in zip(a, b))


def pull_oracle(emb, groups, delta):
    """eq. 1 by loops: (1/L) Σ_l (1/|I_l|) Σ_j [||ê_l - e_j||_1 - δ]_+²."""
    total, labels = 0.0, sorted(set(groups))
    for l in labels:
        members = [emb[j] for j in range(len(groups)) if groups[j] == l]
        mean = [sum(m[c] for m in members) / len(members) for c in range(len(emb[0]))]
        total += sum(max(0.0, _l1(mean, m) - delta) ** 2 for m in members) / len(members)
    return total / len(labels)


def push_oracle(emb, groups, delta, allowed=lambda l, k: True):
    """eq. 2 by loops over ordered pairs l != k (restricted by ``allowed``)."""
    labels = sorted(set(groups))
    means = {}
    for l in labels:
        members = [emb[j] for j in range(len(groups)) if groups[j] == l]
        means[l] = [sum(m[c] for m in members) / len(members) for c in range(len(emb[0]))]
    pairs = [(l, k) for l in labels for k in labels if l != k and allowed(l, k)]
    if not pairs:
        return 0.0
    return sum(max(0.0, delta - _l1(means[l], means[k])) ** 2 for l, k in pairs) / len(pairs)


def test_ae_pull_and_push_match_loop_oracles():
    gen = torch.Generator().manual_seed(0)
    emb = torch.randn(12, 3, generator=gen, dtype=torch.float64)
    group = torch.tensor([0, 0, 1, 1, 1, 3, 3, 0, 1, 3, 3, 0])             # group 2 empty: skipped
    means, counts = group_mean_embeddings(emb, group, 4)
    assert counts.tolist() == [4, 4, 0, 4]
    e, g = emb.tolist(), group.tolist()
    for delta in (0.0, 0.5, 1.5):
        assert ae_pull(emb, group, means, counts, delta).item() == pytest.approx(pull_oracle(e, g, delta), abs=1e-12)
    for delta in (0.5, 2.0, 6.0):
        assert ae_push(means, counts, delta).item() == pytest.approx(push_oracle(e, g, delta), abs=1e-12)
    mask = torch.tensor([[True, True, True, False], [True, True, True, True],
                         [True, True, True, True], [False, True, True, True]])
    got = ae_push(means, counts, 6.0, mask).item()
    assert got == pytest.approx(push_oracle(e, g, 6.0, lambda l, k: bool(mask[l, k])), abs=1e-12)
    total = associative_embedding_loss(emb, group, 4, 0.5, 2.0).item()
    assert total == pytest.approx(pull_oracle(e, g, 0.5) + push_oracle(e, g, 2.0), abs=1e-12)


def test_ae_degenerate_cases_are_attached_zeros():
    emb = torch.randn(3, 2, requires_grad=True)
    one = torch.zeros(3, dtype=torch.long)
    means, counts = group_mean_embeddings(emb, one, 1)
    push = ae_push(means, counts, 1.0)                                     # a single group: no pair
    assert push.item() == 0.0 and push.requires_grad
    empty = torch.zeros(0, 2, requires_grad=True)
    m0, c0 = group_mean_embeddings(empty, torch.zeros(0, dtype=torch.long), 2)
    assert ae_pull(empty, torch.zeros(0, dtype=torch.long), m0, c0, 0.1).item() == 0.0


def _cfg(**loss) -> HLEConfig:
    cfg = HLEConfig()
    cfg.model.embedding_dim = 3
    cfg.model.coord_scale = 4.0
    for k, v in loss.items():
        setattr(cfg.loss, k, v)
    return cfg


def _batch(dtype=torch.float64):
    gen = torch.Generator().manual_seed(1)
    semantic = torch.tensor([[[0, 6, 6], [6, 6, 4]], [[6, 6, 255], [0, 0, 6]]])
    instance = torch.tensor([[[0, 1, 1], [2, 2, 0]], [[5, 5, 0], [0, 0, 7]]])
    e = F.normalize(torch.randn(2, 3, 2, 3, generator=gen, dtype=dtype), dim=1)
    outputs = {"embedding": e, "sigma": torch.full((2, 1, 2, 3), 0.5, dtype=dtype),
               "sigma_spatial": torch.full((2, 1, 2, 3), 0.5, dtype=dtype),
               "seed": torch.rand(2, 1, 2, 3, generator=gen, dtype=dtype)}
    class_means = torch.randn(8, 3, generator=gen, dtype=dtype)
    return outputs, class_means, torch.full((8,), 0.5, dtype=dtype), semantic, instance


def test_hierarchical_ae_variant_matches_two_level_oracle():
    cfg = _cfg(embedding_loss="ae", ae_delta_pull=0.1, ae_delta_push=1.5, ae_semantic_scale=4.0)
    outputs, means, sig, semantic, instance = _batch()
    out = HierarchicalLovaszLoss(cfg)(outputs, means, sig, semantic, instance)
    e = outputs["embedding"]
    # instance level: groups = (image, id); push only between instances of the same image
    emb, grp = [], []
    for b in range(2):
        for y in range(2):
            for x in range(3):
                if instance[b, y, x] > 0 and semantic[b, y, x] != 255:
                    emb.append(e[b, :, y, x].tolist())
                    grp.append((b, int(instance[b, y, x])))
    ins = pull_oracle(emb, grp, 0.1) + push_oracle(emb, grp, 1.5, lambda l, k: l[0] == k[0])
    assert out["ins"].item() == pytest.approx(ins, abs=1e-12)
    # class level over the whole batch, hinges x 4
    valid = semantic != 255
    emb = e.permute(0, 2, 3, 1)[valid].tolist()
    grp = semantic[valid].tolist()
    seg = pull_oracle(emb, grp, 0.4) + push_oracle(emb, grp, 6.0)
    assert out["seg"].item() == pytest.approx(seg, abs=1e-12)


def test_cross_entropy_helpers_match_direct_formulas():
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(1, 4, 2, 2, generator=gen, dtype=torch.float64)
    sem = torch.tensor([[[0, 3], [255, 1]]])
    lp = torch.log_softmax(logits, 1)
    expected = -(lp[0, 0, 0, 0] + lp[0, 3, 0, 1] + lp[0, 1, 1, 1]) / 3
    assert semantic_cross_entropy(logits, sem, 255).item() == pytest.approx(expected.item(), abs=1e-12)
    all_ignored = semantic_cross_entropy(logits.requires_grad_(), torch.full_like(sem, 255), 255)
    assert all_ignored.item() == 0.0 and all_ignored.requires_grad
    phi = torch.tensor([[0.9, 0.2, 0.5], [0.1, 0.7, 0.3]], dtype=torch.float64)
    lab = torch.tensor([[True, False, True], [False, True, False]])
    val = torch.tensor([[True, True, False], [True, True, True]])
    row0 = -(math.log(0.9) + math.log(0.8)) / 2
    row1 = -(math.log(0.9) + math.log(0.7) + math.log(0.7)) / 3
    got = instance_binary_cross_entropy(phi, lab, val).item()
    assert got == pytest.approx((row0 + row1) / 2, abs=1e-12)


@pytest.mark.parametrize("variant", ["cross_entropy", "ae"])
def test_variant_is_finite_and_decreases_under_sgd(variant):
    torch.manual_seed(0)
    cfg = _cfg(embedding_loss=variant)
    outputs, means, sig, semantic, instance = _batch(torch.float32)
    raw = outputs["embedding"].clone().requires_grad_()
    means.requires_grad_()
    loss = HierarchicalLovaszLoss(cfg)
    opt = torch.optim.SGD([raw, means], lr=0.1)
    values = []
    for _ in range(15):
        opt.zero_grad()
        out = loss({**outputs, "embedding": F.normalize(raw, dim=1)}, means, sig, semantic, instance)
        assert all(torch.isfinite(v) for v in out.values())
        (out["seg"] + out["ins"]).backward()
        opt.step()
        values.append((out["seg"] + out["ins"]).item())
    assert values[-1] < values[0]
