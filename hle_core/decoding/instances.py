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

__all__ = ["kernel_features", "kernel_weights", "seed_reach", "instance_masks"]

#: Largest S × N block of log Φ evaluated at once (float32: 64 MiB); bigger problems are split along pixels.
_MAX_KERNEL_ELEMENTS = 1 << 24
#: Pixels sorted by row are cut into this many blocks for the spatial pruning of seeds (:func:`instance_masks`):
#: more blocks fit the seeds' reach more tightly, each costs a few tensor operations of fixed overhead, so
#: problems of fewer than ``_MIN_ELEMENTS_TO_PRUNE`` pixel-seed pairs are not pruned.
_PRUNE_BLOCKS = 8
_MIN_ELEMENTS_TO_PRUNE = 1 << 21
#: Margin of the pruning radius (:func:`_rounding_margin`, log units): float32 rounding of a sum of D+4
#: products is below (D+4)·2⁻²⁴ of the sum of their absolute values, far inside this relative margin.
_REACH_MARGIN = 0.1
_REACH_RELATIVE_MARGIN = 1e-4


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


def seed_reach(sigma_spatial: torch.Tensor, mask_threshold: float,
               margin: torch.Tensor | float = 0.0) -> torch.Tensor:
    """How far from its seed eq. 8's kernel can still exceed ``mask_threshold``: ``(S,)`` radii in ρ units.

    The embedding factor exp(-(1 - μ_l·e_k)/(2σ_l²)) of Φ is at most 1 for unit vectors, so Φ_l(k) > t needs
    ``|ρ_k - ρ_l|² < 2σ_{l,spatial}² (ln(1/t) + margin)`` with margin 0; a positive ``margin`` (log units, scalar
    or per seed) widens the radius. ``t`` ≤ 0: unbounded (infinite radii).
    """
    if not mask_threshold > 0:
        return torch.full_like(sigma_spatial, math.inf)
    log_bound = torch.as_tensor(margin, dtype=sigma_spatial.dtype, device=sigma_spatial.device) - math.log(
        mask_threshold)
    return sigma_spatial.abs() * (2.0 * log_bound).sqrt()


def _rounding_margin(weights: torch.Tensor, rho: torch.Tensor) -> torch.Tensor:
    """Per seed, a bound on how far float rounding can move a computed log Φ (the affine product of
    :func:`kernel_weights` and :func:`kernel_features`) with room to spare: :data:`_REACH_MARGIN` plus
    :data:`_REACH_RELATIVE_MARGIN` of the largest sum of absolute terms over pixels with |ρ| ≤ max |ρ|."""
    d = weights.shape[1] - 4
    r = float(rho.abs().amax()) * math.sqrt(2.0)                                    # |ρ_k| ≤ r
    feature_bound = weights.new_tensor([1.0] * d + [r, r, r * r, 1.0])               # |e| ≤ 1 componentwise
    return _REACH_MARGIN + _REACH_RELATIVE_MARGIN * (weights.abs() @ feature_bound)


def instance_masks(embedding: torch.Tensor, rho: torch.Tensor, seed_embedding: torch.Tensor,
                   seed_rho: torch.Tensor, sigma: torch.Tensor, sigma_spatial: torch.Tensor,
                   mask_threshold: float, *, rows_sorted: bool = False) -> torch.Tensor:
    """§3.5 step 4: "estimate the instance mask by thresholding Φ(e_i, e_k), for all remaining pixel embeddings
    e_k, resolving mask disagreement by assigning each pixel to the instance with the highest probability".

    Φ is eq. 8's kernel centred on each kept seed (its embedding, position, σ and σ_spatial), evaluated as
    log Φ for all S seeds and N pixels in batched ``n × S`` products over blocks of pixels (at most
    ``_MAX_KERNEL_ELEMENTS`` values each); ``Φ > t`` is decided as ``log Φ > log t``.

    With ``rows_sorted`` (pixels in order of non-decreasing ρ_y, as a row-major scan of a map gives them), each
    block of pixels is compared only with the seeds whose :func:`seed_reach` meets the block's rows: a seed
    farther away cannot exceed the threshold there, so it can neither claim a pixel nor take one from the seed
    that does — the masks are the same, the work shrinks with the seeds' spatial extent.

    Args:
        embedding: ``(D, N)`` unit-norm embeddings of the pixels that may join an instance (thing pixels).
        rho: ``(2, N)`` their positions ρ (x, y).
        seed_embedding: ``(S, D)`` embeddings at the kept seeds.
        seed_rho: ``(S, 2)`` seed positions.
        sigma: ``(S,)`` σ at the seeds.
        sigma_spatial: ``(S,)`` σ_spatial at the seeds.
        mask_threshold: a pixel joins its most probable seed only when that Φ exceeds this.
        rows_sorted: the pixels come in order of non-decreasing ``rho[1]``.
    Returns:
        ``(N,)`` int64 index of the owning seed (0..S-1), -1 for pixels no seed claims.
    """
    n, s = embedding.shape[1], seed_embedding.shape[0]
    dev = embedding.device
    if s == 0 or n == 0:
        return torch.full((n,), -1, dtype=torch.long, device=dev)
    weights = kernel_weights(seed_embedding, seed_rho, sigma, sigma_spatial)      # S x (D+4)
    log_t = math.log(mask_threshold) if mask_threshold > 0 else -math.inf
    per_block = max(1, _MAX_KERNEL_ELEMENTS // s)
    prune = rows_sorted and mask_threshold > 0 and n * s >= _MIN_ELEMENTS_TO_PRUNE
    if prune:
        per_block = min(per_block, -(-n // _PRUNE_BLOCKS))
    starts = list(range(0, n, per_block))
    seeds_of_block: list[torch.Tensor | None] = [None] * len(starts)     # None: all seeds
    if prune:
        y = rho[1]
        first = y[torch.tensor(starts, device=dev)]                                   # B: first row of each block
        last = y[torch.tensor([min(b + per_block, n) - 1 for b in starts], device=dev)]
        reach = seed_reach(sigma_spatial, mask_threshold, _rounding_margin(weights, rho))  # S
        seed_y = seed_rho[:, 1]
        near = (seed_y[None] + reach[None] >= first[:, None]) & (seed_y[None] - reach[None] <= last[:, None])
        counts = near.sum(1).tolist()                                                  # B x S → B (one sync)
        block_seeds = near.nonzero()[:, 1].split(counts)
        seeds_of_block = [None if c == s else idx for c, idx in zip(counts, block_seeds)]
    return torch.cat([_block_owners(embedding[:, b:b + per_block], rho[:, b:b + per_block], weights, idx, log_t)
                      for b, idx in zip(starts, seeds_of_block)])


def _block_owners(embedding: torch.Tensor, rho: torch.Tensor, weights: torch.Tensor, seeds: torch.Tensor | None,
                  log_t: float) -> torch.Tensor:
    """Owner seed (index into all S seeds, -1: none) of each pixel of one block, from the ``seeds`` (indices into
    ``weights``' rows; None: all) that can reach it."""
    if seeds is not None and seeds.numel() == 0:
        return torch.full((embedding.shape[1],), -1, dtype=torch.long, device=embedding.device)
    w = weights if seeds is None else weights.index_select(0, seeds)
    log_phi = kernel_features(embedding, rho).T @ w.T                   # n_block x S_block (max along rows:
    best, owner = log_phi.max(dim=1)                                      # faster on CPU than down columns)
    if seeds is not None:
        owner = seeds.index_select(0, owner)
    return torch.where(best > log_t, owner, torch.full_like(owner, -1))
