"""The hierarchical Lovász loss (paper §3.4, eq. 7-16), term by term.

:class:`HierarchicalLovaszLoss` follows the paper's order (the terms are the pure functions of :mod:`.terms`):

1. eq. 10 — per-instance statistics in each image: mean embedding μ_l (renormalised), σ̂_l and σ̂_spatial,l
   (mean of the predicted per-pixel values over the instance, SpatialEmbeddings style), centre ρ_l;
2. eq. 7-8 — instance kernels φ_l(e_i) for every instance and every pixel of its image;
3. eq. 11 — Lovász binary of φ_l against the instance mask over the image's non-ignored pixels;
4. eq. 9, 12 — class scores ψ_k (softmax of the class kernels) and Lovász-softmax against the semantics;
5. eq. 13 — seed regression to sg[φ_l] on instance pixels, to 0 elsewhere;
6. eq. 14 — γ ||σ_i - sg[σ̂_l]||² on instance pixels, for σ and σ_spatial;
7. eq. 15 — ||μ̂_k - sg[μ_k^batch]||² for the classes present in the batch (VQ-VAE style);
8. eq. 16 — the weighted sum.

The Table-6 ablations (other embedding losses, split embedding, no eq. 15, a separate semantic head) live in
:mod:`.variants`; :class:`HierarchicalLovaszLoss` hands a config that selects one of them over to it.
Memory and time: :mod:`.terms` and docs/RESULTS.md, "Cost of the hierarchical loss".
"""
from __future__ import annotations

import torch
from torch import nn

from ..config import HLEConfig
from ..kernels import pixel_coordinates
from .terms import (InstanceLayout, InstanceStatistics, LossInputError, batch_class_means,
                    class_mean_loss, instance_layout, instance_lovasz_loss, instance_scores,
                    instance_statistics, instance_variance_loss, seed_loss, semantic_lovasz_loss, semantic_scores)
from .variants import is_paper_loss, table6_loss

__all__ = ["HierarchicalLovaszLoss"]


class HierarchicalLovaszLoss(nn.Module):
    """eq. 16: ``L = L_seg + L_seg-mean + L_ins + L_ins-var + L_seed`` (each weighted by ``cfg.loss.w_*``).

    :meth:`forward` is the paper's loss. A config that selects a Table-6 ablation (``loss.embedding_loss`` other
    than ``"lovasz"``, ``loss.split_embedding``, ``loss.use_vq`` off or ``model.separate_semantic_branch``) is
    computed by :func:`.variants.table6_loss` instead, from the same steps (:meth:`instance_kernels`,
    :meth:`variance_term`, :meth:`weighted_total`).

    Stateless apart from the config: the device and dtype come from the inputs.
    """

    def __init__(self, cfg: HLEConfig) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.num_classes = len(cfg.classes)
        self.embedding_dim = cfg.model.embedding_dim
        self._ablation = None if is_paper_loss(cfg) else table6_loss

    # ----------------------------------------------------------------------------------------------------------
    def forward(self, outputs: dict[str, torch.Tensor], class_means: torch.Tensor, class_sigma: torch.Tensor,
                semantic: torch.Tensor, instance: torch.Tensor, input_stride: float = 1.0) -> dict[str, torch.Tensor]:
        """Args:
            outputs: network dict — ``embedding`` ``(B, D, H, W)`` unit norm, ``sigma``, ``sigma_spatial``, ``seed``
                ``(B, 1, H, W)``; ``semantic_logits`` ``(B, K, H, W)`` in the separate-branch variant.
            class_means: ``(K, D)`` raw persistent means μ̂_k (with ``split_embedding`` also ``(K, D/2)``).
            class_sigma: ``(K,)`` positive class bandwidths σ_k.
            semantic: ``(B, H, W)`` int64 class index, ``cfg.loss.ignore_index`` = ignored.
            instance: ``(B, H, W)`` int64, 0 = no instance, > 0 = instance id unique within its image.
            input_stride: input-image pixels per map cell, when the maps are a strided subsample of the image
                (``TrainConfig.loss_stride``); ρ of eq. 8 stays in input-pixel units.
        Returns:
            ``seg`` (eq. 12), ``seg_mean`` (eq. 15), ``ins`` (eq. 11), ``ins_var`` (γ · eq. 14), ``seed`` (eq. 13),
            ``total`` (eq. 16, weighted), and detached diagnostics ``num_instances``, ``mean_instance_sigma``,
            ``mean_instance_sigma_spatial``, ``mean_class_sigma``.
        """
        e, sigma, sigma_sp, seed = self._check_inputs(outputs, class_means, class_sigma, semantic, instance)
        if self._ablation is not None:                                        # Table 6: losses/variants.py
            return self._ablation(self, outputs, class_means, class_sigma, semantic, instance, input_stride)
        ignore = self.cfg.loss.ignore_index
        b, d, h, w = e.shape
        n = h * w
        valid = (semantic != ignore).reshape(b, n)                            # B x N
        # eq. 10, 7-8: instances of each image, their statistics, their kernels over the image
        layout, stats, phi = self.instance_kernels(e, sigma, sigma_sp, instance, valid, input_stride)
        # eq. 11
        ins = instance_lovasz_loss(phi, layout, valid)
        # eq. 9, 12
        seg = semantic_lovasz_loss(semantic_scores(e, class_means, class_sigma), semantic, ignore)
        # eq. 13
        seed_term = seed_loss(seed.reshape(b, n), phi, layout, valid)
        # eq. 14
        ins_var = self.variance_term(sigma, sigma_sp, layout, stats)
        # eq. 15
        mu_batch, present = batch_class_means(e.reshape(b, d, n), semantic.reshape(b, n), valid, self.num_classes)
        seg_mean = class_mean_loss(class_means, mu_batch, present)
        # eq. 16
        terms = {"seg": seg, "seg_mean": seg_mean, "ins": ins, "ins_var": ins_var, "seed": seed_term}
        return self.weighted_total(terms, layout, stats, class_sigma, e)

    # ----------------------------------------------------------------------------------------------------------
    # steps shared with the Table-6 variants
    # ----------------------------------------------------------------------------------------------------------
    def instance_kernels(self, e: torch.Tensor, sigma: torch.Tensor, sigma_spatial: torch.Tensor,
                         instance: torch.Tensor, valid: torch.Tensor,
                         input_stride: float) -> tuple[InstanceLayout, InstanceStatistics, torch.Tensor]:
        """eq. 10 then eq. 7-8: the instances of each image, their statistics and their kernels φ_l.

        Args:
            e: ``(B, D, H, W)`` unit-norm (instance) embeddings; sigma, sigma_spatial: ``(B, 1, H, W)``;
            instance: ``(B, H, W)``; valid: ``(B, H·W)`` bool; input_stride: as in :meth:`forward`.
        Returns:
            :func:`instance_layout`, :func:`instance_statistics` and φ ``(B, L_max, H·W)``.
        """
        b, d, h, w = e.shape
        n = h * w
        layout = instance_layout(instance.reshape(b, n), valid)
        rho = pixel_coordinates(h, w, self.cfg.model.coord_scale, stride=input_stride, device=e.device,
                                dtype=e.dtype).reshape(2, n)
        e_flat = e.reshape(b, d, n)                                           # B x D x N
        stats = instance_statistics(e_flat, sigma.reshape(b, n), sigma_spatial.reshape(b, n), rho, layout)
        return layout, stats, instance_scores(e_flat, rho, stats)

    def variance_term(self, sigma: torch.Tensor, sigma_spatial: torch.Tensor, layout: InstanceLayout,
                      stats: InstanceStatistics) -> torch.Tensor:
        """eq. 14 for σ plus eq. 14 for σ_spatial, each weighted by γ; sigma, sigma_spatial: ``(B, 1, H, W)``."""
        b, n = layout.member.shape
        gamma = self.cfg.loss.gamma
        idx = layout.pixel_instance[layout.member]
        return (instance_variance_loss(sigma.reshape(b, n)[layout.member], stats.sigma_hat, idx, gamma)
                + instance_variance_loss(sigma_spatial.reshape(b, n)[layout.member], stats.sigma_spatial_hat, idx,
                                         gamma))

    def weighted_total(self, terms: dict[str, torch.Tensor], layout: InstanceLayout, stats: InstanceStatistics,
                       class_sigma: torch.Tensor, e: torch.Tensor) -> dict[str, torch.Tensor]:
        """eq. 16: ``terms`` (named as :data:`LOSS_TERMS`), their weighted sum ``total`` and the detached
        diagnostics of :meth:`forward`'s return value (``e``: the embedding, for device and dtype)."""
        lc = self.cfg.loss
        total = (lc.w_seg * terms["seg"] + lc.w_seg_mean * terms["seg_mean"] + lc.w_ins * terms["ins"]
                 + lc.w_ins_var * terms["ins_var"] + lc.w_seed * terms["seed"])
        with torch.no_grad():
            diag = {
                "num_instances": torch.tensor(float(layout.num_instances), device=e.device, dtype=e.dtype),
                "mean_instance_sigma": stats.sigma_hat.mean() if layout.num_instances else e.new_zeros(()),
                "mean_instance_sigma_spatial": (stats.sigma_spatial_hat.mean() if layout.num_instances
                                                else e.new_zeros(())),
                "mean_class_sigma": class_sigma.detach().mean().to(e.dtype),
            }
        return {**terms, "total": total, **{k: v.detach() for k, v in diag.items()}}

    # ----------------------------------------------------------------------------------------------------------
    def _check_inputs(self, outputs, class_means, class_sigma, semantic, instance):
        """Validate shapes and dtypes; returns (embedding, sigma, sigma_spatial, seed)."""
        if not isinstance(outputs, dict):
            raise LossInputError(f"outputs must be the network's dict of tensors, got {type(outputs).__name__}")
        need = ["embedding", "sigma", "sigma_spatial", "seed"]
        if self.cfg.model.separate_semantic_branch:
            need.append("semantic_logits")
        missing = [k for k in need if k not in outputs]
        if missing:
            raise LossInputError(f"outputs lacks {missing}; got keys {sorted(outputs)}")
        e = outputs["embedding"]
        if e.dim() != 4:
            raise LossInputError(f"outputs['embedding'] must be (B, D, H, W), got shape {tuple(e.shape)}")
        if not e.is_floating_point():
            raise LossInputError(f"outputs['embedding'] must be floating point, got {e.dtype}")
        b, d, h, w = e.shape
        if d != self.embedding_dim:
            raise LossInputError(f"embedding has D={d} channels but cfg.model.embedding_dim={self.embedding_dim}")
        for key in ("sigma", "sigma_spatial", "seed"):
            if tuple(outputs[key].shape) != (b, 1, h, w):
                raise LossInputError(f"outputs[{key!r}] must have shape {(b, 1, h, w)}, "
                                     f"got {tuple(outputs[key].shape)}")
        k = self.num_classes
        if "semantic_logits" in need and tuple(outputs["semantic_logits"].shape) != (b, k, h, w):
            raise LossInputError(f"outputs['semantic_logits'] must have shape {(b, k, h, w)}, "
                                 f"got {tuple(outputs['semantic_logits'].shape)}")
        d_sem = d // 2 if self.cfg.loss.split_embedding else d
        if class_means.dim() != 2 or class_means.shape[0] != k or class_means.shape[1] not in (d, d_sem):
            raise LossInputError(f"class_means must be (K={k}, D={d}){' or (K, D/2)' if d_sem != d else ''}, "
                                 f"got {tuple(class_means.shape)}")
        if tuple(class_sigma.shape) != (k,):
            raise LossInputError(f"class_sigma must have shape ({k},), got {tuple(class_sigma.shape)}")
        for name, t in (("semantic", semantic), ("instance", instance)):
            if tuple(t.shape) != (b, h, w):
                raise LossInputError(f"{name} must have shape {(b, h, w)}, got {tuple(t.shape)}")
            if t.dtype != torch.int64:
                raise LossInputError(f"{name} must be int64, got {t.dtype}")
        ignore = self.cfg.loss.ignore_index
        bad = (semantic != ignore) & ((semantic < 0) | (semantic >= k))
        if bool(bad.any()):
            raise LossInputError(f"semantic labels must lie in 0..{k - 1} or be ignore_index={ignore}, "
                                 f"got values {semantic[bad].unique().tolist()[:8]}")
        if bool((instance < 0).any()):
            raise LossInputError(f"instance ids must be >= 0, got minimum {int(instance.min())}")
        return e, outputs["sigma"], outputs["sigma_spatial"], outputs["seed"]
