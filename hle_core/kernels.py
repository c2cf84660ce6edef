"""The embedding-space kernels of §3.4, shared by the hierarchical loss and the panoptic decoder.

All functions are pure tensor functions: the device and dtype come from the inputs.
Embeddings live on the unit hypersphere S^{d-1}; ``d_cos(a, b) = 1 - a·b`` (eq. 7).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "cosine_distance",
    "squared_distance",
    "instance_kernel",
    "class_logits",
    "embedding_halves",
    "pixel_coordinates",
]


def cosine_distance(e: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    """Cosine distance between every centre and every pixel embedding.

    Args:
        e: ``(..., D, N)`` unit-norm pixel embeddings.
        mu: ``(..., L, D)`` centres; normalised here (the mean of unit vectors is shorter than 1).
    Returns:
        ``(..., L, N)`` distances in [0, 2].
    """
    mu = F.normalize(mu, dim=-1, eps=1e-8)
    return 1.0 - torch.matmul(mu, e)


def squared_distance(rho: torch.Tensor, rho_l: torch.Tensor) -> torch.Tensor:
    """``||ρ_i - ρ_l||²`` for ``rho`` ``(..., 2, N)`` and ``rho_l`` ``(..., L, 2)`` → ``(..., L, N)``.

    Expanded as ``|ρ_i|² + |ρ_l|² - 2 ρ_l·ρ_i`` (one matmul, no ``L x 2 x N`` intermediate); clamped at 0
    against rounding.
    """
    cross = torch.matmul(rho_l, rho)                                       # ... x L x N
    return (rho.pow(2).sum(-2).unsqueeze(-2) + rho_l.pow(2).sum(-1).unsqueeze(-1) - 2.0 * cross).clamp_min(0.0)


def instance_kernel(
    e: torch.Tensor,
    rho: torch.Tensor,
    mu: torch.Tensor,
    rho_l: torch.Tensor,
    sigma: torch.Tensor,
    sigma_spatial: torch.Tensor,
) -> torch.Tensor:
    """eq. 8: ``φ_l(e_i) = p_l(e_i) · exp(-||ρ_i - ρ_l||² / (2 σ_{l,spatial}²))``.

    Written as one exponential of the summed exponents (the decoder's Φ of §3.5 has the same form).

    Args:
        e: ``(..., D, N)`` unit-norm pixel embeddings; rho: ``(..., 2, N)`` pixel positions.
        mu: ``(..., L, D)`` centres (normalised here); rho_l: ``(..., L, 2)`` instance centres.
        sigma, sigma_spatial: ``(..., L)`` positive bandwidths σ_l and σ_{l,spatial}.
    Returns:
        ``(..., L, N)`` in (0, 1].
    """
    d = cosine_distance(e, mu)                                         # ... x L x N
    sq = squared_distance(rho, rho_l)                                   # ... x L x N
    return torch.exp(-d / (2.0 * sigma.unsqueeze(-1) ** 2) - sq / (2.0 * sigma_spatial.unsqueeze(-1) ** 2))


def class_logits(e: torch.Tensor, class_means: torch.Tensor, class_sigma: torch.Tensor) -> torch.Tensor:
    """Log of the class kernels ``log p_k(e_i) = -d_cos(e_i, μ̂_k) / (2 σ_k²)`` (eq. 7 with eq. 10's μ̂_k).

    Args:
        e: ``(B, D, H, W)`` or ``(D, N)`` unit-norm embeddings.
        class_means: ``(K, D)`` persistent class means μ̂_k (normalised here).
        class_sigma: ``(K,)`` positive class bandwidths σ_k.
    Returns:
        ``(B, K, H, W)`` or ``(K, N)`` logits whose softmax over K is ψ (eq. 9).
    """
    mu = F.normalize(class_means, dim=-1, eps=1e-8)
    if e.dim() == 4:
        dots = torch.einsum("kd,bdhw->bkhw", mu, e)
        inv = (1.0 / (2.0 * class_sigma**2)).view(1, -1, 1, 1)
    elif e.dim() == 2:                  # = (μ̂_k / 2σ_k²)·e_i - 1 / 2σ_k²: one matrix product with its bias
        inv = (1.0 / (2.0 * class_sigma**2)).view(-1, 1)
        return torch.addmm(-inv, mu * inv, e)
    else:
        raise ValueError(f"class_logits expects e of shape (B,D,H,W) or (D,N), got {tuple(e.shape)}")
    return -(1.0 - dots) * inv


def embedding_halves(e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Table-6 split variant: ``(semantic part, instance part)`` of ``e`` ``(B, D, ...)``.

    The first D/2 channels carry the semantics and the last D/2 the instances, each renormalised onto its own
    unit sphere. The loss and the decoder both read a split embedding through this function.
    """
    half = e.shape[1] // 2
    return F.normalize(e[:, :half], dim=1, eps=1e-8), F.normalize(e[:, half:], dim=1, eps=1e-8)


def pixel_coordinates(height: int, width: int, coord_scale: float, *, stride: float = 1.0,
                      device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Spatial positions ρ of eq. 8 for an ``height × width`` map.

    ρ = (x, y) of each cell's centre in *input-image pixels* divided by ``coord_scale``, so a map decoded at
    a lower resolution (``stride`` > 1, the fast decode of §3.5) uses the same units as training.

    Returns:
        ``(2, height, width)``: channel 0 is x, channel 1 is y.
    """
    ys = (torch.arange(height, device=device, dtype=dtype) + 0.5) * stride - 0.5
    xs = (torch.arange(width, device=device, dtype=dtype) + 0.5) * stride - 0.5
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((gx, gy)) / coord_scale
