"""Table-6 variants of the loss (hle_core/losses/variants.py): selection by config and pinned values.

The pinned numbers were computed on this fixed random batch by the loss before its variants moved out of
``HierarchicalLovaszLoss.forward``; they hold the values of every variant, including the ones no oracle covers.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hle_core.config import HLEConfig
from hle_core.losses import HierarchicalLovaszLoss, is_paper_loss

IGN = 255


def _cfg(embedding_loss: str = "lovasz", split: bool = False, use_vq: bool = True,
         separate: bool = False) -> HLEConfig:
    cfg = HLEConfig()
    cfg.model.embedding_dim = 4
    cfg.model.coord_scale = 4.0
    cfg.model.separate_semantic_branch = separate
    cfg.loss.embedding_loss, cfg.loss.split_embedding, cfg.loss.use_vq = embedding_loss, split, use_vq
    return cfg


def _batch():
    """2 images of 9 × 11, D = 4, K = 8, float64: random classes (10 % ignored), things with ids 1..3."""
    g = torch.Generator().manual_seed(0)
    b, h, w, k, d, dt = 2, 9, 11, 8, 4, torch.float64
    semantic = torch.randint(0, k, (b, h, w), generator=g)
    semantic[torch.rand(b, h, w, generator=g) < 0.1] = IGN
    instance = torch.randint(0, 4, (b, h, w), generator=g) * (semantic >= 5)
    outputs = {"embedding": F.normalize(torch.randn(b, d, h, w, generator=g, dtype=dt), dim=1),
               "sigma": 0.3 + 0.5 * torch.rand(b, 1, h, w, generator=g, dtype=dt),
               "sigma_spatial": 0.3 + 0.5 * torch.rand(b, 1, h, w, generator=g, dtype=dt),
               "seed": torch.rand(b, 1, h, w, generator=g, dtype=dt),
               "semantic_logits": torch.randn(b, k, h, w, generator=g, dtype=dt)}
    class_means = torch.randn(k, d, generator=g, dtype=dt)
    class_sigma = 0.4 + torch.rand(k, generator=g, dtype=dt)
    return outputs, class_means, class_sigma, semantic, instance


# (embedding_loss, split_embedding, use_vq, separate_semantic_branch) -> seg, seg_mean, ins, ins_var, seed, total
PINNED = {
    ("lovasz", False, True, False): (0.8742167481720353, 6.117540605951451, 0.8828014691623881,
                                     0.35198934626329936, 0.2666600400247575, 8.493208209573929),
    ("ae", False, True, False): (3.8607553313536105, 6.117540605951451, 2.1212407697065156,
                                 0.35198934626329936, 0.2666600400247575, 12.718186093299632),
    ("cross_entropy", False, True, False): (2.156494691263109, 6.117540605951451, 0.2739437132176462,
                                            0.35198934626329936, 0.2666600400247575, 9.166628396720261),
    ("lovasz", True, True, False): (0.8769873108504576, 4.1859749150410375, 0.8752025101894101,
                                    0.35198934626329936, 0.26502889745415303, 6.555182979798357),
    ("ae", True, True, False): (3.4121108756853094, 4.1859749150410375, 1.1220935600151156,
                                0.35198934626329936, 0.26502889745415303, 9.337197594458914),
    ("cross_entropy", True, True, False): (2.232365522429097, 4.1859749150410375, 0.31294447188200847,
                                           0.35198934626329936, 0.26502889745415303, 7.348303153069595),
    ("lovasz", False, False, False): (0.8742167481720353, 0.0, 0.8828014691623881,
                                      0.35198934626329936, 0.2666600400247575, 2.3756676036224804),
    ("lovasz", False, True, True): (2.509509764218875, 0.0, 0.8828014691623881,
                                    0.35198934626329936, 0.2666600400247575, 4.01096061966932),
    ("ae", True, False, True): (2.509509764218875, 0.0, 1.1220935600151156,
                                0.35198934626329936, 0.26502889745415303, 4.248621567951443),
}


@pytest.mark.parametrize("variant", list(PINNED), ids=lambda v: "-".join(map(str, v)))
def test_variant_values_are_pinned(variant):
    out = HierarchicalLovaszLoss(_cfg(*variant))(*_batch())
    got = [out[k].item() for k in ("seg", "seg_mean", "ins", "ins_var", "seed", "total")]
    assert got == pytest.approx(list(PINNED[variant]), rel=1e-12, abs=1e-12)


def test_only_the_paper_config_takes_the_paper_path():
    assert is_paper_loss(_cfg())
    for variant in PINNED:
        if variant != ("lovasz", False, True, False):
            assert not is_paper_loss(_cfg(*variant)), variant
