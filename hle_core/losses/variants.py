"""The Table-6 ablations of the hierarchical Lovász loss (paper §4.4), selected by the config alone.

:class:`~.hierarchical.HierarchicalLovaszLoss` computes the paper's loss; a config that departs from it along
any of these axes is computed by :func:`table6_loss` instead, from the same steps:

* ``loss.embedding_loss`` — what stands in for eq. 11 (instances, :data:`INSTANCE_TERMS`) and eq. 12
  (semantics, :data:`SEMANTIC_TERMS`): ``"lovasz"`` (the paper's terms); ``"ae"`` (eq. 1-2 used hierarchically,
  §3.2: an instance-level AE with (δ_pull, δ_push) that pushes only instances of the same image, and a
  class-level AE over the batch with both hinges × ``ae_semantic_scale``); ``"cross_entropy"`` (binary CE on
  φ_l, softmax CE on eq. 9's logits);
* ``loss.split_embedding`` — semantics on the first D/2 channels, instances on the last D/2, each renormalised
  (:func:`~hle_core.kernels.embedding_halves`); the class means may be given as ``(K, D)`` or ``(K, D/2)``;
* ``loss.use_vq`` — eq. 15 on or off (off: ``seg_mean`` = 0);
* ``model.separate_semantic_branch`` — ``seg`` = softmax CE on ``outputs["semantic_logits"]``, ``seg_mean`` = 0.

The seed (eq. 13) and variance (eq. 14) terms are the paper's in every variant.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, NamedTuple

import torch

from ..config import HLEConfig
from ..kernels import class_logits, embedding_halves
from .baselines import associative_embedding_loss, instance_binary_cross_entropy, semantic_cross_entropy
from .terms import (InstanceLayout, batch_class_means, class_mean_loss, instance_lovasz_loss, instance_rows,
                    seed_loss, semantic_lovasz_loss, semantic_scores)

if TYPE_CHECKING:                           # the loss hands itself to table6_loss; no import at run time
    from .hierarchical import HierarchicalLovaszLoss

__all__ = ["VariantBatch", "INSTANCE_TERMS", "SEMANTIC_TERMS", "is_paper_loss", "table6_loss"]


class VariantBatch(NamedTuple):
    """What the instance and semantic terms of a variant read.

    Attributes:
        loss: the loss module (its ``cfg`` and ``num_classes``).
        embedding: ``(B, D, H, W)`` the whole embedding.
        semantic_embedding: ``(B, D_sem, H, W)`` its semantic part (the embedding itself unless split).
        instance_embedding: ``(B, D_ins, N)`` its instance part, pixels flattened.
        class_means: ``(K, D_sem)`` raw μ̂_k over the semantic part; class_sigma: ``(K,)``.
        semantic: ``(B, H, W)`` labels; valid: ``(B, N)`` bool, pixel not ignored.
        layout: the batch's instances; phi: ``(B, L_max, N)`` their kernels (eq. 8).
    """

    loss: HierarchicalLovaszLoss
    embedding: torch.Tensor
    semantic_embedding: torch.Tensor
    instance_embedding: torch.Tensor
    class_means: torch.Tensor
    class_sigma: torch.Tensor
    semantic: torch.Tensor
    valid: torch.Tensor
    layout: InstanceLayout
    phi: torch.Tensor


def _graph_zero(*tensors: torch.Tensor) -> torch.Tensor:
    """A scalar 0 that depends on every tensor given (so ``backward`` works and grads are zeros)."""
    return sum(t.sum() * 0.0 for t in tensors)  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------------------------
# instance terms: eq. 11 and its stand-ins
# --------------------------------------------------------------------------------------------------------------
def _instance_lovasz(x: VariantBatch) -> torch.Tensor:
    """eq. 11, the paper's term."""
    return instance_lovasz_loss(x.phi, x.layout, x.valid)


def _instance_cross_entropy(x: VariantBatch) -> torch.Tensor:
    """Binary cross-entropy of φ_l against the instance masks over the image's valid pixels."""
    if x.layout.num_instances == 0:
        return _graph_zero(x.embedding)
    return instance_binary_cross_entropy(*instance_rows(x.phi, x.layout, x.valid))


def _instance_ae(x: VariantBatch) -> torch.Tensor:
    """§3.2 instance level: eq. 1-2 over the batch's instances, pushing only instances of the same image."""
    layout = x.layout
    if layout.num_instances == 0:
        return _graph_zero(x.instance_embedding)
    lc = x.loss.cfg.loss
    e_m = x.instance_embedding.permute(0, 2, 1)[layout.member]                # M x D
    same_image = layout.image.unsqueeze(0) == layout.image.unsqueeze(1)        # G x G
    return associative_embedding_loss(e_m, layout.pixel_instance[layout.member], layout.num_instances,
                                      lc.ae_delta_pull, lc.ae_delta_push, same_image)


# --------------------------------------------------------------------------------------------------------------
# semantic terms: eq. 12 and its stand-ins
# --------------------------------------------------------------------------------------------------------------
def _semantic_lovasz(x: VariantBatch) -> torch.Tensor:
    """eq. 9, 12, the paper's term."""
    return semantic_lovasz_loss(semantic_scores(x.semantic_embedding, x.class_means, x.class_sigma), x.semantic,
                                x.loss.cfg.loss.ignore_index)


def _semantic_cross_entropy(x: VariantBatch) -> torch.Tensor:
    """Softmax cross-entropy of eq. 9's logits ``log p_k``."""
    return semantic_cross_entropy(class_logits(x.semantic_embedding, x.class_means, x.class_sigma), x.semantic,
                                  x.loss.cfg.loss.ignore_index)


def _semantic_ae(x: VariantBatch) -> torch.Tensor:
    """§3.2 class level: eq. 1-2 over the batch's semantic classes, hinges × ``ae_semantic_scale``."""
    b, n = x.valid.shape
    e_sem = x.semantic_embedding.reshape(b, x.semantic_embedding.shape[1], n)   # B x D_sem x N
    if not bool(x.valid.any()):
        return _graph_zero(e_sem)
    lc = x.loss.cfg.loss
    s = lc.ae_semantic_scale
    return associative_embedding_loss(e_sem.permute(0, 2, 1)[x.valid], x.semantic.reshape(b, n)[x.valid],
                                      x.loss.num_classes, s * lc.ae_delta_pull, s * lc.ae_delta_push)


#: ``loss.embedding_loss`` → the instance term (``ins``).
INSTANCE_TERMS: dict[str, Callable[[VariantBatch], torch.Tensor]] = {
    "lovasz": _instance_lovasz, "cross_entropy": _instance_cross_entropy, "ae": _instance_ae}
#: ``loss.embedding_loss`` → the semantic term (``seg``) unless ``model.separate_semantic_branch``.
SEMANTIC_TERMS: dict[str, Callable[[VariantBatch], torch.Tensor]] = {
    "lovasz": _semantic_lovasz, "cross_entropy": _semantic_cross_entropy, "ae": _semantic_ae}


# --------------------------------------------------------------------------------------------------------------
def is_paper_loss(cfg: HLEConfig) -> bool:
    """True when ``cfg`` selects the paper's loss (eq. 16 with the Lovász terms, one embedding, eq. 15 on)."""
    lc = cfg.loss
    return (lc.embedding_loss == "lovasz" and not lc.split_embedding and lc.use_vq
            and not cfg.model.separate_semantic_branch)


def table6_loss(loss: HierarchicalLovaszLoss, outputs: dict[str, torch.Tensor], class_means: torch.Tensor,
                class_sigma: torch.Tensor, semantic: torch.Tensor, instance: torch.Tensor,
                input_stride: float = 1.0) -> dict[str, torch.Tensor]:
    """The loss of the variant ``loss.cfg`` selects; arguments and return value as
    :meth:`HierarchicalLovaszLoss.forward <.hierarchical.HierarchicalLovaszLoss.forward>` (inputs already checked)."""
    lc, separate = loss.cfg.loss, loss.cfg.model.separate_semantic_branch
    e, sigma, sigma_sp, seed = (outputs[k] for k in ("embedding", "sigma", "sigma_spatial", "seed"))
    b, _, h, w = e.shape
    n = h * w
    valid = (semantic != lc.ignore_index).reshape(b, n)                       # B x N
    e_sem, e_ins = embedding_halves(e) if lc.split_embedding else (e, e)
    means_sem = class_means[:, : e_sem.shape[1]]                              # K x D_sem
    # eq. 10, 7-8 on the instance part
    layout, stats, phi = loss.instance_kernels(e_ins, sigma, sigma_sp, instance, valid, input_stride)
    x = VariantBatch(loss, e, e_sem, e_ins.reshape(b, e_ins.shape[1], n), means_sem, class_sigma, semantic, valid,
                     layout, phi)
    ins = INSTANCE_TERMS[lc.embedding_loss](x)
    if separate:
        seg = semantic_cross_entropy(outputs["semantic_logits"], semantic, lc.ignore_index)
    else:
        seg = SEMANTIC_TERMS[lc.embedding_loss](x)
    seed_term = seed_loss(seed.reshape(b, n), phi, layout, valid)             # eq. 13
    ins_var = loss.variance_term(sigma, sigma_sp, layout, stats)               # eq. 14
    if lc.use_vq and not separate:                                            # eq. 15 on the semantic part
        mu_batch, present = batch_class_means(e_sem.reshape(b, e_sem.shape[1], n), semantic.reshape(b, n), valid,
                                              loss.num_classes)
        seg_mean = class_mean_loss(means_sem, mu_batch, present)
    else:
        seg_mean = _graph_zero(class_means)
    terms = {"seg": seg, "seg_mean": seg_mean, "ins": ins, "ins_var": ins_var, "seed": seed_term}
    return loss.weighted_total(terms, layout, stats, class_sigma, e)
