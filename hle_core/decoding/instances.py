"""§3.5, instance masks: threshold Φ(e_seed, e_k) for every pixel, conflicts go to the most probable seed.

Only the argmax of Φ over the seeds and the comparison with a threshold are needed, so the masks are decided
on log Φ, which for eq. 8's kernel is an affine function of the pixel features (e_k, ρ_k, |ρ_k|², 1):

    log Φ_l(k) = -(1 - μ_l·e_k)/(2σ_l²) - (|ρ_k|² - 2ρ_l·ρ_k + |ρ_l|²)/(2σ_{l,spatial}²)
               = [μ_l/(2σ_l²)]·e_k + [ρ_l/σ_{l,spatial}²]·ρ_k - |ρ_k|²/(2σ_{l,spatial}²)
                 - 1/(2σ_l²) - |ρ_l|²/(2σ_{l,spatial}²)

— one S × (D+4) by (D+4) × N matrix product and no exponential per pixel (``kernels.instance_kernel`` is
the same Φ written out; the tests check one against the other).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["kernel_features", "kernel_weights", "instance_masks"]

#: Largest S × N block of log Φ evaluated at once (float32: 64 MiB); bigger problems are split along pixels.
_MAX_KERNEL_ELEMENTS = 1 << 24


def kernel_features(embedding: torch.Tensor, rho: torch.Tensor) -> torch.Tensor:
    """Pixel side of the affine form of log Φ: ``(D, N)`` embeddings and ``(2, N)`` ρ → ``(D+4, N)``
    rows ``[e; ρ; |ρ|²; 1]``."""
    n = embedding.shape[1]
    return torch.cat((embedding, rho, rho.pow(2).sum(0, keepdim=True), embedding.new_ones(1, n)))


def kernel_weights(seed_embedding: torch.Tensor, seed_rho: torch.Tensor, sigma: torch.Tensor,
                   sigma_spatial: torch.Tensor) -> torch.Tensor:
    """Seed side of the affine form of log Φ (eq. 8 centred on each seed): ``(S, D)`` μ_l (normalised here),
    ``(S, 2)`` ρ_l, ``(S,)`` σ_l and σ_{l,spatial} → ``(S, D+4)`` so that ``weights @ features = log Φ``."""
    a = 1.0 / (2.0 * sigma**2)                                                   # S
    b = 1.0 / (2.0 * sigma_spatial**2)                                           # S
    mu = F.normalize(seed_embedding, dim=1, eps=1e-8)
    const = -a - b * seed_rho.pow(2).sum(1)                                      # S
    return torch.cat((mu * a[:, None], seed_rho * (2.0 * b)[:, None], -b[:, None], const[:, None]), dim=1)


def instance_masks(embedding: torch.Tensor, rho: torch.Tensor, seed_embedding: torch.Tensor,
                   seed_rho: torch.Tensor, sigma: torch.Tensor, sigma_spatial: torch.Tensor,
                   mask_threshold: float) -> torch.Tensor:
    """§3.5 step 4: "estimate the instance mask by thresholding Φ(e_i, e_k), for all remaining pixel embeddings
    e_k, resolving mask disagreement by assigning each pixel to the instance with the highest probability".

    Φ is eq. 8's kernel centred on each kept seed (its embedding, position, σ and σ_spatial), evaluated as
    log Φ for all S seeds and N pixels in one batched S × N product (split along N only above
    ``_MAX_KERNEL_ELEMENTS``); ``Φ > t`` is decided as ``log Φ > log t``.

    Args:
        embedding: ``(D, N)`` unit-norm embeddings of the pixels that may join an instance (thing pixels).
        rho: ``(2, N)`` their positions ρ.
        seed_embedding: ``(S, D)`` embeddings at the kept seeds.
        seed_rho: ``(S, 2)`` seed positions.
        sigma: ``(S,)`` σ at the seeds.
        sigma_spatial: ``(S,)`` σ_spatial at the seeds.
        mask_threshold: a pixel joins its most probable seed only when that Φ exceeds this.
    Returns:
        ``(N,)`` int64 index of the owning seed (0..S-1), -1 for pixels no seed claims.
    """
    n, s = embedding.shape[1], seed_embedding.shape[0]
    if s == 0 or n == 0:
        return torch.full((n,), -1, dtype=torch.long, device=embedding.device)
    weights = kernel_weights(seed_embedding, seed_rho, sigma, sigma_spatial)      # S x (D+4)
    log_t = math.log(mask_threshold) if mask_threshold > 0 else -math.inf
    chunk = max(1, _MAX_KERNEL_ELEMENTS // s)
    owners = []
    for e, r in zip(embedding.split(chunk, dim=1), rho.split(chunk, dim=1)):
        log_phi = kernel_features(e, r).T @ weights.T                            # n_chunk x S (max along rows:
        best, owner = log_phi.max(dim=1)                                          # faster on CPU than down columns)
        owners.append(torch.where(best > log_t, owner, torch.full_like(owner, -1)))
    return torch.cat(owners)
