"""§3.5, seed side of panoptic decoding: CornerNet-style max-pool NMS of the seed map, then seed merging by Φ."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from hle_core.kernels import instance_kernel

__all__ = ["find_seeds", "window_max", "merge_seeds", "greedy_suppression"]

#: Fixed-point iterations of :func:`greedy_suppression` run between two convergence checks (GPU syncs).
_ITERATIONS_PER_CHECK = 4


def find_seeds(seed: torch.Tensor, thing_pixels: torch.Tensor, nms_kernel: int, seed_threshold: float,
               max_seeds: int) -> tuple[torch.Tensor, torch.Tensor]:
    """§3.5 step 2: "reduce the number of seed candidates s_i by 3 × 3 max pooling, similar to CornerNet [25].
    Then we threshold the remaining seeds to get an initial set of candidate seeds."

    The seed map (eq. 13's s_i) is zeroed outside thing pixels, a pixel survives when it equals the maximum of
    its ``nms_kernel × nms_kernel`` window and exceeds ``seed_threshold``; the ``max_seeds`` highest survive.

    Args:
        seed: ``(H, W)`` seed scores in [0, 1].
        thing_pixels: ``(H, W)`` bool, pixels whose semantic class is a thing class.
        nms_kernel: odd max-pool window.
        seed_threshold: candidates must have a seed strictly above it.
        max_seeds: at most this many candidates (top-k by score).
    Returns:
        ``index`` ``(C,)`` int64 flat pixel indices (row-major) and ``score`` ``(C,)``, sorted by descending
        score (ties: lower pixel index first), ``C <= max_seeds``.
    """
    s = torch.where(thing_pixels, seed, torch.zeros_like(seed))                          # H x W
    pooled = window_max(s, nms_kernel)                                                   # H x W
    peaks = (s == pooled) & (s > seed_threshold)
    index = peaks.flatten().nonzero().squeeze(1)                                         # C0 (ascending)
    score = s.flatten()[index]
    order = torch.argsort(score, descending=True, stable=True)[:max_seeds]
    return index[order], score[order]


def window_max(x: torch.Tensor, kernel: int) -> torch.Tensor:
    """Maximum over the ``kernel × kernel`` window centred on each pixel (outside the image counts as -∞), i.e.
    ``max_pool2d(x, kernel, stride=1, padding=kernel // 2)``, computed separably as ``2 (kernel - 1)``
    elementwise maxima of shifted views (several times faster than ``max_pool2d`` on CPU).

    Args:
        x: ``(H, W)`` floats; kernel: odd window size.
    Returns:
        ``(H, W)``.
    """
    h, w = x.shape
    r = kernel // 2
    padded = F.pad(x[None], (r, r, r, r), value=-math.inf)[0]                           # H+2r x W+2r
    rows = padded[:, 0:w]
    for dx in range(1, kernel):                                                          # window offsets
        rows = torch.maximum(rows, padded[:, dx:dx + w])                                 # H+2r x W
    out = rows[0:h]
    for dy in range(1, kernel):
        out = torch.maximum(out, rows[dy:dy + h])                                        # H x W
    return out


def greedy_suppression(suppresses: torch.Tensor) -> torch.Tensor:
    """Greedy suppression in score order: with candidates sorted by descending score and ``A[i, j]`` = "i would
    suppress j" (only ``i < j`` counts), keep ``j`` iff no *kept* ``i < j`` has ``A[i, j]``.

    On CPU the greedy loop itself runs over the C candidates (C ≤ ``max_seeds``, one row operation per kept
    candidate: :func:`_greedy_sequential`); on a GPU, where each step would be a host round trip, as the fixed
    point of a vectorised keep mask (:func:`_greedy_fixed_point`). Both give the sequential greedy result.

    Args:
        suppresses: ``(C, C)`` bool; entries on and below the diagonal are ignored.
    Returns:
        ``(C,)`` bool keep mask.
    """
    a = torch.triu(suppresses, diagonal=1)                                # C x C, i < j only
    return _greedy_sequential(a) if a.device.type == "cpu" else _greedy_fixed_point(a)


def _greedy_sequential(a: torch.Tensor) -> torch.Tensor:
    """The greedy loop over the candidates of a strictly upper triangular CPU matrix ``a``: each kept candidate
    removes the later ones it suppresses (a loop over at most ``max_seeds`` candidates, not over pixels)."""
    rows = a.numpy()
    keep = np.ones(a.shape[0], dtype=bool)
    for i in range(a.shape[0]):
        if keep[i]:
            keep[i + 1:] &= ~rows[i, i + 1:]
    return torch.from_numpy(keep)


def _greedy_fixed_point(a: torch.Tensor) -> torch.Tensor:
    """Greedy suppression as the fixed point ``keep = ¬(Aᵀ keep)`` of a strictly upper triangular ``a``: the
    equation has exactly one solution, and iterating it from ``keep = 1`` fixes one more leading entry per
    iteration, so at most C iterations reach it; in practice the longest suppression chain (a few) does.
    Convergence is checked every ``_ITERATIONS_PER_CHECK`` iterations (one host sync each)."""
    c = a.shape[0]
    keep = torch.ones(c, dtype=torch.bool, device=a.device)
    for _ in range(0, c + 1, _ITERATIONS_PER_CHECK):
        for _ in range(_ITERATIONS_PER_CHECK - 1):
            keep = ~(a & keep[:, None]).any(dim=0)
        new = ~(a & keep[:, None]).any(dim=0)
        if torch.equal(new, keep):
            return new
        keep = new
    return keep                                                           # ≥ C+1 iterations: exact


def merge_seeds(embedding: torch.Tensor, rho: torch.Tensor, sigma: torch.Tensor, sigma_spatial: torch.Tensor,
                merge_threshold: float) -> torch.Tensor:
    """§3.5 step 3: merge candidate seeds that represent the same instance.

    Φ(e_i, e_j) = exp(-d_cos(e_i, e_j)/(2σ_i²) - ||ρ_i - ρ_j||²/(2σ_{i,spatial}²)) (§3.5; eq. 7-8 with the
    seed i as centre) is evaluated for all C × C pairs with σ of the higher-scored seed i; a seed is dropped
    when a kept higher-scored seed has Φ > ``merge_threshold`` (:func:`greedy_suppression`).

    Args:
        embedding: ``(C, D)`` unit-norm embeddings at the candidate seeds, sorted by descending score.
        rho: ``(C, 2)`` seed positions ρ (eq. 8 units).
        sigma: ``(C,)`` σ_i at the seeds.
        sigma_spatial: ``(C,)`` σ_{i,spatial} at the seeds.
        merge_threshold: Φ above it means "same instance".
    Returns:
        ``(C,)`` bool: seeds that survive, one per estimated instance.
    """
    phi = instance_kernel(embedding.T, rho.T, embedding, rho, sigma, sigma_spatial)      # C x C, row = centre i
    return greedy_suppression(phi > merge_threshold)
