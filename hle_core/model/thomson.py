"""Thomson initialisation of the class means (paper §3.4, eq. 17).

    argmin_{μ_k} Σ_{i≠j} 1 / d_cos(μ_i, μ_j),   μ_k ∈ S^{d-1}

No closed form exists for general (K, d); a local minimum is found by projected gradient descent.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["thomson_energy", "thomson_init", "min_pairwise_angle"]


def thomson_energy(mu: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """eq. 17 objective for ``mu`` ``(K, D)`` (normalised here): ``Σ_{i≠j} 1 / d_cos(μ_i, μ_j)``."""
    mu = F.normalize(mu, dim=1)
    d_cos = 1.0 - mu @ mu.T                                  # K x K
    off = ~torch.eye(mu.shape[0], dtype=torch.bool, device=mu.device)
    return (1.0 / d_cos[off].clamp_min(eps)).sum()


def thomson_init(num: int, dim: int, steps: int = 500, lr: float = 0.05, seed: int = 0) -> torch.Tensor:
    """Spread ``num`` unit vectors in ``R^dim`` by minimising eq. 17 from a random start.

    Deterministic for a given ``seed`` (own generator, global RNG untouched). Returns ``(num, dim)`` unit rows,
    a normal tensor (not an inference tensor, no grad) even when called under ``torch.inference_mode()`` or
    ``torch.no_grad()`` — e.g. when a model is built for inference: the optimisation needs autograd, so it
    runs with both switched back on.
    """
    if num < 1 or dim < 2:
        raise ValueError(f"thomson_init needs num >= 1 and dim >= 2, got num={num}, dim={dim}")
    with torch.inference_mode(False), torch.enable_grad():
        g = torch.Generator().manual_seed(seed)
        mu = torch.randn(num, dim, generator=g, dtype=torch.float64)
        if num > 1:
            mu.requires_grad_(True)
            opt = torch.optim.Adam([mu], lr=lr)
            for _ in range(steps):
                opt.zero_grad()
                thomson_energy(mu).backward()
                opt.step()
                with torch.no_grad():                        # projection back onto the sphere
                    mu.copy_(F.normalize(mu, dim=1))
        return F.normalize(mu.detach(), dim=1).float()


def min_pairwise_angle(mu: torch.Tensor) -> float:
    """Smallest angle (radians) between any two rows of ``mu`` ``(K, D)``."""
    mu = F.normalize(mu.double(), dim=1)
    cos = (mu @ mu.T).clamp(-1.0, 1.0)
    cos.fill_diagonal_(-1.0)
    return float(torch.arccos(cos.max()))
