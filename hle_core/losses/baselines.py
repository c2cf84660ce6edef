"""Baseline embedding losses of the Table-6 ablation (paper §3.2 and §4.4).

* Associative embedding (Newell et al.; eq. 1-2): pull every pixel towards its group's mean embedding
  ``ê_l`` up to a hinge ``δ_pull``, push group means apart up to ``δ_push``, both in L1 distance. Used
  hierarchically (§3.2): one AE loss over instances, one over semantic classes with larger hinges.
* Cross-entropy: the semantic scores of eq. 9 trained with softmax cross-entropy instead of Lovász-softmax,
  the instance kernels φ_l of eq. 8 with binary cross-entropy instead of the Lovász hinge.

Pure tensor functions; the device and dtype come from the inputs. :mod:`.variants` selects them through
``LossConfig.embedding_loss``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "group_mean_embeddings",
    "ae_pull",
    "ae_push",
    "associative_embedding_loss",
    "semantic_cross_entropy",
    "instance_binary_cross_entropy",
]


def group_mean_embeddings(embedding: torch.Tensor, group: torch.Tensor,
                          num_groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``ê_l = (1/|I_l|) Σ_{j ∈ I_l} e_j`` (§3.2, below eq. 2) — the plain mean, not renormalised.

    Args:
        embedding: ``(M, D)`` embeddings of the grouped pixels.
        group: ``(M,)`` int64 group index in 0..num_groups-1.
        num_groups: G.
    Returns:
        means ``(G, D)`` (zero for an empty group) and counts ``(G,)`` int64.
    """
    if embedding.dim() != 2 or group.shape != embedding.shape[:1]:
        raise ValueError(f"expected embedding (M, D) and group (M,), got {tuple(embedding.shape)} and "
                         f"{tuple(group.shape)}")
    counts = torch.bincount(group, minlength=num_groups)[:num_groups]                          # G
    sums = embedding.new_zeros(num_groups, embedding.shape[1]).index_add(0, group, embedding)   # G x D
    return sums / counts.clamp_min(1).unsqueeze(1).to(embedding.dtype), counts


def ae_pull(embedding: torch.Tensor, group: torch.Tensor, means: torch.Tensor, counts: torch.Tensor,
            delta_pull: float) -> torch.Tensor:
    """eq. 1: ``(1/L) Σ_l (1/|I_l|) Σ_{j ∈ I_l} [||ê_l - e_j||_1 - δ_pull]_+²`` over the non-empty groups.

    Args:
        embedding: ``(M, D)`` pixel embeddings; group: ``(M,)`` their group index.
        means: ``(G, D)`` group means ê_l; counts: ``(G,)`` pixels per group (empty groups are skipped).
        delta_pull: hinge δ_pull in L1 units.
    Returns:
        scalar; a zero attached to ``embedding`` when there is no group.
    """
    present = counts > 0
    if not bool(present.any()):
        return embedding.sum() * 0.0
    dist = (means[group] - embedding).abs().sum(-1)                     # M
    per_pixel = F.relu(dist - delta_pull) ** 2
    per_group = embedding.new_zeros(means.shape[0]).index_add(0, group, per_pixel)
    per_group = per_group / counts.clamp_min(1).to(embedding.dtype)
    return per_group[present].mean()


def ae_push(means: torch.Tensor, counts: torch.Tensor, delta_push: float,
            pair_mask: torch.Tensor | None = None) -> torch.Tensor:
    """eq. 2: ``1/(L(L-1)) Σ_{l≠k} [δ_push - ||ê_l - ê_k||_1]_+²`` over ordered pairs of non-empty groups.

    Args:
        means: ``(G, D)`` group means; counts: ``(G,)`` pixels per group (empty groups take no part).
        delta_push: hinge δ_push in L1 units.
        pair_mask: optional ``(G, G)`` bool, False for pairs that must not be pushed (e.g. instances of
            different images); the average runs over the allowed pairs.
    Returns:
        scalar; a zero attached to ``means`` when no pair is allowed.
    """
    g = means.shape[0]
    present = counts > 0
    allowed = present.unsqueeze(0) & present.unsqueeze(1) & ~torch.eye(g, dtype=torch.bool, device=means.device)
    if pair_mask is not None:
        if pair_mask.shape != (g, g):
            raise ValueError(f"pair_mask must have shape {(g, g)}, got {tuple(pair_mask.shape)}")
        allowed = allowed & pair_mask
    if not bool(allowed.any()):
        return means.sum() * 0.0
    dist = (means.unsqueeze(0) - means.unsqueeze(1)).abs().sum(-1)      # G x G
    return (F.relu(delta_push - dist) ** 2)[allowed].mean()


def associative_embedding_loss(embedding: torch.Tensor, group: torch.Tensor, num_groups: int, delta_pull: float,
                               delta_push: float, pair_mask: torch.Tensor | None = None) -> torch.Tensor:
    """eq. 1 + eq. 2 for one grouping of pixels (instances, or semantic classes).

    Args:
        embedding: ``(M, D)``; group: ``(M,)`` int64 in 0..num_groups-1; pair_mask: see :func:`ae_push`.
    Returns:
        scalar ``L_pull + L_push``.
    """
    means, counts = group_mean_embeddings(embedding, group, num_groups)
    return ae_pull(embedding, group, means, counts, delta_pull) + ae_push(means, counts, delta_push, pair_mask)


def semantic_cross_entropy(logits: torch.Tensor, semantic: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """Softmax cross-entropy of class logits (eq. 9's ``log p_k`` or a separate head) averaged over valid pixels.

    Args:
        logits: ``(B, K, H, W)``; semantic: ``(B, H, W)`` int64 class index or ``ignore_index``.
    Returns:
        scalar; a zero attached to ``logits`` when every pixel is ignored (plain ``F.cross_entropy`` gives NaN).
    """
    if logits.dim() != 4 or semantic.shape != (logits.shape[0], *logits.shape[2:]):
        raise ValueError(f"expected logits (B, K, H, W) and semantic (B, H, W), got {tuple(logits.shape)} and "
                         f"{tuple(semantic.shape)}")
    total = F.cross_entropy(logits, semantic, ignore_index=ignore_index, reduction="sum")
    n_valid = (semantic != ignore_index).sum().clamp_min(1)
    return total / n_valid.to(logits.dtype)


def instance_binary_cross_entropy(phi: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of instance kernels φ_l (eq. 8) against instance masks, the CE stand-in for eq. 11.

    Args:
        phi: ``(L, N)`` kernel values in (0, 1]; labels: ``(L, N)`` bool masks; valid: ``(L, N)`` bool.
    Returns:
        scalar: mean over instances of the mean BCE over each instance's valid pixels (log clamped at -100 as
        in ``F.binary_cross_entropy``); a zero attached to ``phi`` when ``L == 0``.
    """
    if phi.shape != labels.shape or phi.shape != valid.shape or phi.dim() != 2:
        raise ValueError(f"phi, labels and valid must share one (L, N) shape, got {tuple(phi.shape)}, "
                         f"{tuple(labels.shape)}, {tuple(valid.shape)}")
    if phi.shape[0] == 0:
        return phi.sum() * 0.0
    # rounding can leave exp(-d) a few ulps above 1 when d_cos ≈ 0; BCE refuses values outside [0, 1]
    bce = F.binary_cross_entropy(phi.clamp(0.0, 1.0), labels.to(phi.dtype), reduction="none")   # L x N
    per_row = (bce * valid).sum(-1) / valid.sum(-1).clamp_min(1).to(phi.dtype)
    return per_row.mean()
