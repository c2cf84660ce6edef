"""The terms of the hierarchical Lovász loss (paper §3.4, eq. 7-15) as pure tensor functions.

:class:`~.hierarchical.HierarchicalLovaszLoss` composes them in the paper's order (eq. 16) and the Table-6
ablations of :mod:`.variants` reuse them; both import this module, neither imports the other at run time.

Instances are laid out as a padded ``B × L_max`` table so one batched matmul computes all kernels and one sort
computes all Lovász terms. Memory is O(L·H·W): the kernel map is ``B × L_max × H × W``; at 50 instances and
512 × 1024 one float32 map is 50 · 524288 · 4 B ≈ 105 MB, and several maps of that size (exponent terms, φ,
sorted values, the int64 permutation, sorted labels, Δ) live between forward and backward. Time grows linearly
in the number of instances; the sort of eq. 11 dominates (docs/RESULTS.md, "Cost of the hierarchical loss").
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from ..kernels import class_logits, instance_kernel
from .lovasz import lovasz_binary_rows, lovasz_softmax

__all__ = [
    "LOSS_TERMS",
    "LossInputError",
    "InstanceLayout",
    "InstanceStatistics",
    "instance_layout",
    "instance_statistics",
    "instance_scores",
    "instance_rows",
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
    rows, labels, row_valid = instance_rows(phi, layout, valid)
    return lovasz_binary_rows(rows, labels, row_valid).mean()


def instance_rows(phi: torch.Tensor, layout: InstanceLayout,
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
