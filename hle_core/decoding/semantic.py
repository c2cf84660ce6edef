"""§3.5, semantic side of panoptic decoding: class per pixel by argmax of ψ (eq. 9), stuff thresholding."""
from __future__ import annotations

import torch

from hle_core.kernels import class_logits

__all__ = ["assign_semantics", "stuff_pixels"]

#: Floor on ``l_k - max_c l_c`` before exp: exp below float32's normal range (e^-87) is many times slower on
#: CPU (denormals), and terms under e^-80 change Σ_k exp(·) ≥ 1 by less than 1e-34.
_EXP_FLOOR = -80.0
#: Pixels per block of :func:`assign_semantics` on CPU: bounds the K × block logits (8 MiB for K = 8) on big maps;
#: GPUs take all pixels at once.
_CPU_PIXELS_PER_BLOCK = 1 << 18


def assign_semantics(embedding: torch.Tensor, class_means: torch.Tensor, class_sigma: torch.Tensor,
                     semantic_logits: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """§3.5 step 1: "assign the semantic class to each pixel via argmax of ψ_k(e_i)" (eq. 9).

    ψ is the softmax over K of the class logits ``l_k = -d_cos(e_i, μ̂_k) / (2 σ_k²)`` (eq. 7 / eq. 9); its
    maximum is ``1 / Σ_k exp(l_k - max_c l_c)``, computed in place on the logits (no K × N softmax). On CPU the
    pixels go in blocks of ``_CPU_PIXELS_PER_BLOCK``.

    Args:
        embedding: ``(D, N)`` unit-norm pixel embeddings.
        class_means: ``(K, D)`` class means μ̂_k.
        class_sigma: ``(K,)`` positive class bandwidths σ_k.
        semantic_logits: optional ``(K, N)`` logits of a separate semantic branch (Table 6 variant); when
            given they replace the eq. 9 logits.
    Returns:
        ``semantic`` ``(N,)`` int64 class index and ``psi_max`` ``(N,)`` = max_k ψ_k(e_i) in (0, 1].
    """
    n = embedding.shape[1]
    block = _CPU_PIXELS_PER_BLOCK if embedding.device.type == "cpu" else max(n, 1)
    if n <= block:
        return _assign_block(embedding, class_means, class_sigma, semantic_logits)
    logit_blocks = [None] * -(-n // block) if semantic_logits is None else semantic_logits.split(block, dim=1)
    parts = [_assign_block(e, class_means, class_sigma, lg)
             for e, lg in zip(embedding.split(block, dim=1), logit_blocks)]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def _assign_block(embedding: torch.Tensor, class_means: torch.Tensor, class_sigma: torch.Tensor,
                  semantic_logits: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    logits = class_logits(embedding, class_means, class_sigma) if semantic_logits is None else semantic_logits
    best, semantic = logits.max(dim=0)                                   # N, N
    shifted = logits.sub_(best) if semantic_logits is None else logits - best   # the eq. 9 logits are ours
    psi_max = shifted.clamp_min_(_EXP_FLOOR).exp_().sum(dim=0).reciprocal_()   # N
    return semantic, psi_max


def stuff_pixels(thing_pixels: torch.Tensor, psi_max: torch.Tensor, stuff_threshold: float) -> torch.Tensor:
    """§3.5 step 5: "for stuff classes, we threshold the value of the semantic kernel ψ_k(e_i)".

    Every class is a thing or a stuff class, so a pixel's class is stuff exactly where it is not a thing pixel
    (the caller has that mask already; no second lookup of the class table).

    Args:
        thing_pixels: ``(N,)`` bool, pixels whose argmax-ψ class is a thing class.
        psi_max: ``(N,)`` ψ of that class (eq. 9).
        stuff_threshold: pixels with ψ at or below it become void.
    Returns:
        ``(N,)`` bool: pixels that keep their stuff class.
    """
    return ~thing_pixels & (psi_max > stuff_threshold)
