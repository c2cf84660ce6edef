"""The hierarchical Lovász loss (paper §3.4, eq. 7-16), term by term.

:class:`HierarchicalLovaszLoss` follows the paper's order:

1. eq. 10 — per-instance statistics in each image: mean embedding μ_l (renormalised), σ̂_l and σ̂_spatial,l
   (mean of the predicted per-pixel values over the instance, SpatialEmbeddings style), centre ρ_l;
2. eq. 7-8 — instance kernels φ_l(e_i) for every instance and every pixel of its image;
3. eq. 11 — Lovász binary of φ_l against the instance mask over the image's non-ignored pixels;
4. eq. 9, 12 — class scores ψ_k (softmax of the class kernels) and Lovász-softmax against the semantics;
5. eq. 13 — seed regression to sg[φ_l] on instance pixels, to 0 elsewhere;
6. eq. 14 — γ ||σ_i - sg[σ̂_l]||² on instance pixels, for σ and σ_spatial;
7. eq. 15 — ||μ̂_k - sg[μ_k^batch]||² for the classes present in the batch (VQ-VAE style);
8. eq. 16 — the weighted sum.

Instances are laid out as a padded ``B × L_max`` table so one batched matmul computes all kernels and one sort
computes all Lovász terms. Memory is O(L·H·W): the kernel map is ``B × L_max × H × W``; at 50 instances and
512 × 1024 one float32 map is 50 · 524288 · 4 B ≈ 105 MB, and several maps of that size (exponent terms, φ,
sorted values, the int64 permutation, sorted labels, Δ) live between forward and backward. Measured on CPU
(float32, B = 1, 512 × 1024, D = 12): 1.0 GB retained after the forward pass and 1.6 GB peak through the
backward pass with 50 instances, 0.28 GB peak with 1 instance. Time grows linearly in the number of instances
(``bench/bench_loss.py``); the sort of eq. 11 dominates.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..config import HLEConfig
from ..kernels import class_logits, instance_kernel, pixel_coordinates
from .baselines import associative_embedding_loss, instance_binary_cross_entropy, semantic_cross_entropy
from .lovasz import lovasz_binary_rows, lovasz_softmax

__all__ = [
    "LOSS_TERMS",
    "LossInputError",
    "InstanceLayout",
    "InstanceStatistics",
    "HierarchicalLovaszLoss",
    "split_embedding",
    "instance_layout",
    "instance_statistics",
    "instance_scores",
    "instance_lovasz_loss",
    "semantic_scores",
    "semantic_lovasz_loss",
    "seed_loss",
    "instance_variance_loss",
    "batch_class_means",
    "class_mean_loss",
]

#: Names of the loss terms returned by :class:`HierarchicalLovaszLoss` (their weighted sum is ``total``).
LOSS_TERMS = ("seg", "seg_mean", "ins", "ins_var", "seed")


class LossInputError(ValueError):
    """The network outputs, class parameters or targets handed to the loss do not fit together."""


class InstanceLayout(NamedTuple):
    """Where the G instances of a batch live. Instance g is slot ``slot[g]`` of image ``image[g]``.

    Attributes:
        member: ``(B, N)`` bool, pixel belongs to an instance (instance id > 0 and semantic label not ignored).
        pixel_instance: ``(B, N)`` int64 batch-wide instance index g of each pixel, -1 where none.
        pixel_slot: ``(B, N)`` int64 slot of each pixel's instance within its image, -1 where none.
        image: ``(G,)`` int64 image of each instance.
        slot: ``(G,)`` int64 position of each instance within its image (0..L_max-1).
        count: ``(G,)`` int64 pixels per instance.
        num_slots: L_max, the largest number of instances in one image (0 when G = 0).
    """

    member: torch.Tensor
    pixel_instance: torch.Tensor
    pixel_slot: torch.Tensor
    image: torch.Tensor
    slot: torch.Tensor
    count: torch.Tensor
    num_slots: int

    @property
    def num_instances(self) -> int:
        return int(self.image.numel())


class InstanceStatistics(NamedTuple):
    """eq. 10 per instance, padded to ``B × L_max`` (padding: μ = 0, σ = σ_spatial = 1, ρ = 0).

    Attributes:
        mu: ``(B, L_max, D)`` unit-norm mean embeddings μ_l.
        sigma: ``(B, L_max)`` σ̂_l; sigma_spatial: ``(B, L_max)`` σ̂_spatial,l; rho: ``(B, L_max, 2)`` centres ρ_l.
        sigma_hat: ``(G,)`` σ̂_l and sigma_spatial_hat ``(G,)`` σ̂_spatial,l unpadded (for eq. 14).
    """

    mu: torch.Tensor
    sigma: torch.Tensor
    sigma_spatial: torch.Tensor
    rho: torch.Tensor
    sigma_hat: torch.Tensor
    sigma_spatial_hat: torch.Tensor


def _graph_zero(*tensors: torch.Tensor) -> torch.Tensor:
    """A scalar 0 that depends on every tensor given (so ``backward`` works and grads are zeros)."""
    return sum(t.sum() * 0.0 for t in tensors)  # type: ignore[return-value]


def split_embedding(e: torch.Tensor, split: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Table-6 split variant: ``(semantic part, instance part)`` of ``e`` ``(B, D, ...)``.

    With ``split`` the first D/2 channels (renormalised) carry the semantics and the last D/2 (renormalised)
    the instances; otherwise both are ``e`` itself.
    """
    if not split:
        return e, e
    half = e.shape[1] // 2
    return F.normalize(e[:, :half], dim=1, eps=1e-8), F.normalize(e[:, half:], dim=1, eps=1e-8)


# --------------------------------------------------------------------------------------------------------------
# eq. 10: instances and their statistics
# --------------------------------------------------------------------------------------------------------------
def instance_layout(instance: torch.Tensor, valid: torch.Tensor) -> InstanceLayout:
    """Number the instances of a batch (ids are unique only within an image) and lay them out ``B × L_max``.

    Args:
        instance: ``(B, N)`` int64, 0 = no instance, > 0 = instance id.
        valid: ``(B, N)`` bool, pixel not ignored.
    """
    b, n = instance.shape
    member = (instance > 0) & valid                                     # B x N
    pixel_instance = torch.full_like(instance, -1)
    pixel_slot = torch.full_like(instance, -1)
    empty = instance.new_zeros(0)
    if not bool(member.any()):
        return InstanceLayout(member, pixel_instance, pixel_slot, empty, empty, empty, 0)
    stride = int(instance.max()) + 1
    img_of_pixel = torch.arange(b, device=instance.device).unsqueeze(1).expand(b, n)
    key = img_of_pixel[member] * stride + instance[member]              # M, unique per (image, id)
    uniq, inverse = torch.unique(key, return_inverse=True)              # G sorted: images are contiguous
    image = uniq // stride                                              # G
    per_image = torch.bincount(image, minlength=b)                      # B
    first = torch.cumsum(per_image, 0) - per_image
    slot = torch.arange(uniq.numel(), device=instance.device) - first[image]
    count = torch.bincount(inverse, minlength=uniq.numel())
    pixel_instance[member] = inverse
    pixel_slot[member] = slot[inverse]
    return InstanceLayout(member, pixel_instance, pixel_slot, image, slot, count, int(per_image.max()))


def instance_statistics(e: torch.Tensor, sigma: torch.Tensor, sigma_spatial: torch.Tensor, rho: torch.Tensor,
                        layout: InstanceLayout) -> InstanceStatistics:
    """eq. 10: μ_l = normalised mean embedding of instance l in its image; σ̂_l, σ̂_spatial,l, ρ_l = means.

    Args:
        e: ``(B, D, N)`` unit-norm embeddings; sigma, sigma_spatial: ``(B, N)`` positive; rho: ``(2, N)``.
        layout: from :func:`instance_layout`.
    Returns:
        :class:`InstanceStatistics` (differentiable: the Lovász term of eq. 11 learns μ_l and σ_l through them).
    """
    b, d, _ = e.shape
    g, l_max = layout.num_instances, layout.num_slots
    idx = layout.pixel_instance[layout.member]                          # M
    cnt = layout.count.clamp_min(1).to(e.dtype)                         # G
    e_m = e.permute(0, 2, 1)[layout.member]                             # M x D
    mu = F.normalize(e.new_zeros(g, d).index_add(0, idx, e_m), dim=-1, eps=1e-8)
    sig = e.new_zeros(g).index_add(0, idx, sigma[layout.member]) / cnt
    sig_sp = e.new_zeros(g).index_add(0, idx, sigma_spatial[layout.member]) / cnt
    rho_m = rho.t().unsqueeze(0).expand(b, -1, -1)[layout.member]       # M x 2
    rho_l = e.new_zeros(g, 2).index_add(0, idx, rho_m) / cnt.unsqueeze(1)
    at = (layout.image, layout.slot)
    return InstanceStatistics(
        mu=e.new_zeros(b, l_max, d).index_put(at, mu),
        sigma=e.new_ones(b, l_max).index_put(at, sig),
        sigma_spatial=e.new_ones(b, l_max).index_put(at, sig_sp),
        rho=e.new_zeros(b, l_max, 2).index_put(at, rho_l),
        sigma_hat=sig,
        sigma_spatial_hat=sig_sp,
    )


def instance_scores(e: torch.Tensor, rho: torch.Tensor, stats: InstanceStatistics) -> torch.Tensor:
    """eq. 7-8: ``φ_l(e_i)`` of every instance slot against every pixel of the same image.

    Args:
        e: ``(B, D, N)`` unit-norm; rho: ``(2, N)``; stats: :func:`instance_statistics`.
    Returns:
        ``(B, L_max, N)`` in (0, 1] (padded slots are meaningless and never read).
    """
    return instance_kernel(e, rho, stats.mu, stats.rho, stats.sigma, stats.sigma_spatial)


def instance_lovasz_loss(phi: torch.Tensor, layout: InstanceLayout, valid: torch.Tensor) -> torch.Tensor:
    """eq. 11: mean over the batch's instances of LovászBinary(φ_l, 1[i ∈ I_l]) over their image's valid pixels.

    Args:
        phi: ``(B, L_max, N)``; layout: :func:`instance_layout`; valid: ``(B, N)`` bool.
    Returns:
        scalar; a zero attached to ``phi`` without instances. All instance rows go through one sort.
    """
    if layout.num_instances == 0:
        return phi.sum() * 0.0
    rows, labels, row_valid = _instance_rows(phi, layout, valid)
    return lovasz_binary_rows(rows, labels, row_valid).mean()


def _instance_rows(phi: torch.Tensor, layout: InstanceLayout,
                   valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The G real rows of the padded kernel table: φ ``(G, N)``, instance masks ``(G, N)``, valid ``(G, N)``."""
    b, l_max, n = phi.shape
    slots = torch.arange(l_max, device=phi.device).view(1, l_max, 1)
    labels = layout.pixel_slot.unsqueeze(1) == slots                    # B x L_max x N
    valid = valid.unsqueeze(1).expand(b, l_max, n)
    if layout.num_instances == b * l_max:                               # no padding: rows are a view
        return phi.reshape(-1, n), labels.reshape(-1, n), valid.reshape(-1, n)
    at = (layout.image, layout.slot)
    return phi[at], labels[at], valid[at]                               # G x N each


# --------------------------------------------------------------------------------------------------------------
# eq. 9, 12: semantics
# --------------------------------------------------------------------------------------------------------------
def semantic_scores(e: torch.Tensor, class_means: torch.Tensor, class_sigma: torch.Tensor) -> torch.Tensor:
    """eq. 9: ``ψ_k(e_i)``, softmax over the class kernels with the persistent means μ̂_k (eq. 10).

    Args:
        e: ``(B, D, H, W)`` unit-norm; class_means: ``(K, D)`` raw μ̂_k; class_sigma: ``(K,)`` positive.
    Returns:
        ``(B, K, H, W)`` probabilities.
    """
    return torch.softmax(class_logits(e, class_means, class_sigma), dim=1)


def semantic_lovasz_loss(psi: torch.Tensor, semantic: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """eq. 12: Lovász-softmax of ψ against the semantic labels over the flattened batch, classes present."""
    return lovasz_softmax(psi, semantic, classes="present", per_image=False, ignore=ignore_index)


# --------------------------------------------------------------------------------------------------------------
# eq. 13-15: auxiliary terms
# --------------------------------------------------------------------------------------------------------------
def seed_loss(seed: torch.Tensor, phi: torch.Tensor, layout: InstanceLayout, valid: torch.Tensor) -> torch.Tensor:
    """eq. 13: ``||s_i - sg[φ_l(e_i)]||²`` on pixels of instance l, ``||s_i||²`` on every other valid pixel.

    Args:
        seed: ``(B, N)`` in (0, 1); phi: ``(B, L_max, N)``; layout; valid: ``(B, N)`` bool.
    Returns:
        scalar mean over the valid pixels of the batch (0 attached to ``seed`` when none is valid).
    """
    target = torch.zeros_like(seed)
    if layout.num_instances:
        slot = layout.pixel_slot.clamp_min(0).unsqueeze(1)              # B x 1 x N
        own = phi.detach().gather(1, slot).squeeze(1)                   # B x N: φ of the pixel's instance
        target = torch.where(layout.member, own, target)
    sq = (seed - target) ** 2 * valid
    return sq.sum() / valid.sum().clamp_min(1).to(seed.dtype)


def instance_variance_loss(sigma_pixels: torch.Tensor, sigma_hat: torch.Tensor, pixel_instance: torch.Tensor,
                           gamma: float) -> torch.Tensor:
    """eq. 14: ``γ ||σ_i - sg[σ̂_l]||²`` averaged over the instance pixels.

    Args:
        sigma_pixels: ``(M,)`` predicted σ_i of the instance pixels; sigma_hat: ``(G,)`` σ̂_l (detached here);
        pixel_instance: ``(M,)`` int64 instance index of each pixel; gamma: weight γ.
    Returns:
        scalar; a zero attached to ``sigma_pixels`` when ``M == 0``.
    """
    if sigma_pixels.numel() == 0:
        return sigma_pixels.sum() * 0.0
    return gamma * ((sigma_pixels - sigma_hat.detach()[pixel_instance]) ** 2).mean()


def batch_class_means(e: torch.Tensor, semantic: torch.Tensor, valid: torch.Tensor,
                      num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """μ_k^batch of eq. 15: normalised mean embedding of the class-k pixels of the whole batch.

    Args:
        e: ``(B, D, N)`` unit-norm; semantic: ``(B, N)`` int64; valid: ``(B, N)`` bool; num_classes: K.
    Returns:
        means ``(K, D)`` (zero for absent classes) and ``present`` ``(K,)`` bool.
    """
    e_v = e.permute(0, 2, 1)[valid]                                     # P x D
    cls = semantic[valid]                                               # P
    sums = e.new_zeros(num_classes, e.shape[1]).index_add(0, cls, e_v)
    present = torch.bincount(cls, minlength=num_classes)[:num_classes] > 0
    return F.normalize(sums, dim=-1, eps=1e-8), present


def class_mean_loss(class_means: torch.Tensor, batch_means: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """eq. 15: ``||μ̂_k - sg[μ_k^batch]||²`` averaged over the classes present in the batch.

    μ̂_k is the raw parameter (the regression also holds it near the unit sphere, as in VQ-VAE's codebook).

    Args:
        class_means: ``(K, D)`` μ̂_k; batch_means: ``(K, D)``; present: ``(K,)`` bool.
    Returns:
        scalar; a zero attached to ``class_means`` when no class is present.
    """
    if not bool(present.any()):
        return class_means.sum() * 0.0
    sq = ((class_means - batch_means.detach()) ** 2).sum(-1)            # K
    return sq[present].mean()


# --------------------------------------------------------------------------------------------------------------
# eq. 16: the whole loss
# --------------------------------------------------------------------------------------------------------------
class HierarchicalLovaszLoss(nn.Module):
    """eq. 16: ``L = L_seg + L_seg-mean + L_ins + L_ins-var + L_seed`` (each weighted by ``cfg.loss.w_*``).

    Variants selected by the config alone (Table 6): ``loss.embedding_loss`` = ``"lovasz"`` (the paper),
    ``"ae"`` (eq. 1-2 used hierarchically: instance AE with (δ_pull, δ_push), class AE with both hinges ×
    ``ae_semantic_scale``; they replace eq. 12 and eq. 11), ``"cross_entropy"`` (softmax CE on eq. 9's logits
    for ``seg``, binary CE on φ_l for ``ins``); ``loss.split_embedding`` (semantics on the first D/2 channels,
    instances on the last D/2, each renormalised); ``loss.use_vq`` (eq. 15 on or off);
    ``model.separate_semantic_branch`` (``seg`` = CE on ``outputs["semantic_logits"]``, ``seg_mean`` = 0).
    The seed (eq. 13) and variance (eq. 14) terms are computed in every variant.

    Stateless apart from the config: the device and dtype come from the inputs.
    """

    def __init__(self, cfg: HLEConfig) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.num_classes = len(cfg.classes)
        self.embedding_dim = cfg.model.embedding_dim

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
        lc = self.cfg.loss
        e, sigma, sigma_sp, seed = self._check_inputs(outputs, class_means, class_sigma, semantic, instance)
        b, d, h, w = e.shape
        n = h * w
        valid = semantic != lc.ignore_index                                   # B x H x W
        e_sem, e_ins = split_embedding(e, lc.split_embedding)
        means_sem = class_means[:, : e_sem.shape[1]]                          # K x D_sem

        # eq. 10: instances of each image and their statistics
        valid_f = valid.reshape(b, n)
        layout = instance_layout(instance.reshape(b, n), valid_f)
        rho = pixel_coordinates(h, w, self.cfg.model.coord_scale, stride=input_stride, device=e.device,
                                dtype=e.dtype).reshape(2, n)
        e_ins_f = e_ins.reshape(b, e_ins.shape[1], n)                                     # B x D_ins x N
        sigma_f, sigma_sp_f = sigma.reshape(b, n), sigma_sp.reshape(b, n)
        stats = instance_statistics(e_ins_f, sigma_f, sigma_sp_f, rho, layout)
        # eq. 7-8: kernels of every instance over its image
        phi = instance_scores(e_ins_f, rho, stats)                            # B x L_max x N

        # eq. 11 (or the Table-6 stand-ins)
        if lc.embedding_loss == "lovasz":
            ins = instance_lovasz_loss(phi, layout, valid_f)
        elif lc.embedding_loss == "cross_entropy":
            ins = (instance_binary_cross_entropy(*_instance_rows(phi, layout, valid_f))
                   if layout.num_instances else _graph_zero(e))
        else:
            ins = self._instance_ae(e_ins_f, layout)

        # eq. 9, 12 (or the Table-6 stand-ins)
        if self.cfg.model.separate_semantic_branch:
            seg = semantic_cross_entropy(outputs["semantic_logits"], semantic, lc.ignore_index)
        elif lc.embedding_loss == "lovasz":
            seg = semantic_lovasz_loss(semantic_scores(e_sem, means_sem, class_sigma), semantic, lc.ignore_index)
        elif lc.embedding_loss == "cross_entropy":
            seg = semantic_cross_entropy(class_logits(e_sem, means_sem, class_sigma), semantic, lc.ignore_index)
        else:
            seg = self._semantic_ae(e_sem.reshape(b, e_sem.shape[1], n), semantic.reshape(b, n), valid_f)

        # eq. 13-15
        seed_term = seed_loss(seed.reshape(b, n), phi, layout, valid_f)
        idx = layout.pixel_instance[layout.member]
        ins_var = (instance_variance_loss(sigma_f[layout.member], stats.sigma_hat, idx, lc.gamma)
                   + instance_variance_loss(sigma_sp_f[layout.member], stats.sigma_spatial_hat, idx, lc.gamma))
        if lc.use_vq and not self.cfg.model.separate_semantic_branch:
            mu_batch, present = batch_class_means(e_sem.reshape(b, e_sem.shape[1], n), semantic.reshape(b, n), valid_f,
                                                  self.num_classes)
            seg_mean = class_mean_loss(means_sem, mu_batch, present)
        else:
            seg_mean = _graph_zero(class_means)

        terms = {"seg": seg, "seg_mean": seg_mean, "ins": ins, "ins_var": ins_var, "seed": seed_term}
        total = (lc.w_seg * seg + lc.w_seg_mean * seg_mean + lc.w_ins * ins + lc.w_ins_var * ins_var
                 + lc.w_seed * seed_term)
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
    def _instance_ae(self, e_ins: torch.Tensor, layout: InstanceLayout) -> torch.Tensor:
        """§3.2 instance level: eq. 1-2 over the batch's instances, pushing only instances of the same image."""
        if layout.num_instances == 0:
            return _graph_zero(e_ins)
        lc = self.cfg.loss
        e_m = e_ins.permute(0, 2, 1)[layout.member]                          # M x D
        same_image = layout.image.unsqueeze(0) == layout.image.unsqueeze(1)   # G x G
        return associative_embedding_loss(e_m, layout.pixel_instance[layout.member], layout.num_instances,
                                          lc.ae_delta_pull, lc.ae_delta_push, same_image)

    def _semantic_ae(self, e_sem: torch.Tensor, semantic: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """§3.2 class level: eq. 1-2 over the batch's semantic classes, hinges × ``ae_semantic_scale``."""
        if not bool(valid.any()):
            return _graph_zero(e_sem)
        lc = self.cfg.loss
        s = lc.ae_semantic_scale
        return associative_embedding_loss(e_sem.permute(0, 2, 1)[valid], semantic[valid], self.num_classes,
                                          s * lc.ae_delta_pull, s * lc.ae_delta_push)

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
