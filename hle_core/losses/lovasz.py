"""Lovász hinge, Lovász binary and Lovász-softmax losses (paper §3.3, eq. 3-6; Berman et al., CVPR 2018).

The Lovász extension of the Jaccard loss ``Δ(M) = 1 - IoU`` (``M`` = the set of mispredicted pixels) is
evaluated at a vector of non-negative per-pixel errors ξ by the greedy algorithm of Berman et al. (Alg. 1):
sort ξ in descending order (permutation π) and take ``Σ_i ξ_{π_i} Δ_i`` where ``Δ_i`` is the increase of the
Jaccard loss when pixel π_i joins the mispredicted set (eq. 5). :func:`lovasz_grad` gives the vector Δ for a
sorted ground truth; everything else only builds the errors ξ:

* hinge (binary, real-valued logits): ``ξ = relu(1 - logit · (2t - 1))``;
* binary (eq. 3-4, probabilities ``p ∈ [0, 1]``): ``ξ = 1 - p`` on positives, ``p`` on negatives;
* softmax (eq. 6): per class c the binary loss of ``p_c`` against ``1[t = c]``, averaged over classes.

Every function here is a batch-free "rows" computation along the last axis at heart
(:func:`lovasz_binary_rows`), so many independent losses (instances of an image, classes of a batch) cost one
``torch.sort`` call. Ignored pixels are sorted behind every valid one with zero error and zero ground truth,
which leaves the prefix sets of the valid pixels — and therefore loss and gradient — exactly as if they had
been removed (the reference removes them before sorting).

Semantics follow the reference implementation: the hinge is averaged per image by default, the softmax over
the flattened batch; empty input returns a zero that is still attached to the graph.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "lovasz_grad",
    "lovasz_hinge",
    "lovasz_hinge_flat",
    "lovasz_binary",
    "lovasz_binary_rows",
    "lovasz_softmax",
    "lovasz_softmax_flat",
]


def lovasz_grad(gt_sorted: torch.Tensor) -> torch.Tensor:
    """Δ of eq. 5: gradient of the Lovász extension of the Jaccard loss w.r.t. the sorted errors.

    For a ground truth sorted by decreasing error, ``inter = Σgt - cumsum(gt)``, ``union = Σgt + cumsum(1 - gt)``,
    ``J = 1 - inter / union`` and ``Δ = [J_1, J_2 - J_1, ..., J_n - J_{n-1}]`` (Berman et al., Alg. 1).
    The union is never zero: it is ≥ 1 after the first element whatever the labels.

    Args:
        gt_sorted: ``(..., N)`` ground truth in {0, 1} (any real dtype) permuted by decreasing error; works
            independently along the last axis, so a batch of rows ``(L, N)`` is handled at once.
    Returns:
        ``(..., N)`` non-negative weights summing to the Jaccard loss of predicting every pixel wrong (or 1).
    """
    if gt_sorted.shape[-1] == 0:
        return gt_sorted.clone()
    gts = gt_sorted.sum(-1, keepdim=True)                               # ... x 1
    intersection = gts - gt_sorted.cumsum(-1)                           # ... x N
    union = gts + (1.0 - gt_sorted).cumsum(-1)                          # ... x N
    jaccard = 1.0 - intersection / union
    return torch.cat((jaccard[..., :1], jaccard[..., 1:] - jaccard[..., :-1]), dim=-1)


def _lovasz_rows(errors: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """Greedy Lovász extension along the last axis: ``Σ_i relu(ξ_{π_i}) Δ_i`` per row.

    Args:
        errors: ``(..., N)`` real errors (relu'd after sorting, as in the reference hinge).
        labels: ``(..., N)`` bool ground truth.
        valid: ``(..., N)`` bool or None; invalid entries are sorted last with zero error and label.
    Returns:
        ``(...)`` per-row losses.
    """
    if valid is None:
        errors_sorted, perm = torch.sort(errors, dim=-1, descending=True)
        gt_sorted = torch.gather(labels, -1, perm).to(errors.dtype)
        return (F.relu(errors_sorted) * lovasz_grad(gt_sorted)).sum(-1)
    key = errors.masked_fill(~valid, float("-inf"))                    # invalid: sorted last, relu -> 0
    key_sorted, perm = torch.sort(key, dim=-1, descending=True)
    gt_sorted = torch.gather(labels & valid, -1, perm).to(errors.dtype)
    return (F.relu(key_sorted) * lovasz_grad(gt_sorted)).sum(-1)


def _check_same_shape(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{name_a} and {name_b} must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")


def _binary_labels(labels: torch.Tensor, valid: torch.Tensor | None, what: str) -> torch.Tensor:
    """Bool view of {0, 1} labels; raises if a valid label is neither 0 nor 1."""
    if labels.dtype == torch.bool:
        return labels
    bad = (labels != 0) & (labels != 1)
    if valid is not None:
        bad = bad & valid
    if bool(bad.any()):
        raise ValueError(f"{what}: labels must be 0 or 1 (or ignored), got values {labels[bad].unique().tolist()[:8]}")
    return labels == 1


# --------------------------------------------------------------------------------------------------------------
# binary hinge (Berman et al. reference)
# --------------------------------------------------------------------------------------------------------------
def lovasz_hinge_flat(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Binary Lovász hinge of one flat vector.

    Args:
        logits: ``(P,)`` real scores (positive = foreground).
        labels: ``(P,)`` ground truth in {0, 1} (bool or integer).
    Returns:
        scalar ``Σ_i relu(1 - logit·sign)_{π_i} Δ_i``; a zero attached to ``logits`` when ``P == 0``.
    """
    if logits.dim() != 1:
        raise ValueError(f"lovasz_hinge_flat expects 1-D logits (P,), got shape {tuple(logits.shape)}")
    _check_same_shape("logits", logits, "labels", labels)
    if logits.numel() == 0:
        return logits.sum() * 0.0
    gt = _binary_labels(labels, None, "lovasz_hinge_flat")
    signs = 2.0 * gt.to(logits.dtype) - 1.0
    return _lovasz_rows(1.0 - logits * signs, gt, None)


def lovasz_hinge(logits: torch.Tensor, labels: torch.Tensor, per_image: bool = True,
                 ignore: int | None = None) -> torch.Tensor:
    """Binary Lovász hinge of a batch of score maps.

    Args:
        logits: ``(B, H, W)`` real scores (positive = foreground).
        labels: ``(B, H, W)`` integer ground truth in {0, 1}, or ``ignore``.
        per_image: mean of the per-image losses (reference default) instead of one loss over the whole batch.
        ignore: label value of pixels left out.
    Returns:
        scalar; a zero attached to ``logits`` for empty input. An image whose pixels are all ignored
        contributes 0 to the per-image mean (as in the reference).
    """
    if logits.dim() != 3:
        raise ValueError(f"lovasz_hinge expects logits of shape (B, H, W), got {tuple(logits.shape)}")
    _check_same_shape("logits", logits, "labels", labels)
    if logits.numel() == 0:
        return logits.sum() * 0.0
    valid = None if ignore is None else labels != ignore
    gt = _binary_labels(labels, valid, "lovasz_hinge")
    signs = 2.0 * gt.to(logits.dtype) - 1.0
    errors = 1.0 - logits * signs
    b = logits.shape[0]
    shape = (b, -1) if per_image else (1, -1)                         # rows: images, or one row
    losses = _lovasz_rows(errors.reshape(shape), gt.reshape(shape),
                          None if valid is None else valid.reshape(shape))
    return losses.mean()


# --------------------------------------------------------------------------------------------------------------
# binary Lovász of probabilities (paper eq. 3-5)
# --------------------------------------------------------------------------------------------------------------
def lovasz_binary_rows(probs: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """eq. 3-5 for many independent rows at once (one sort call): ``Σ_i ξ_{π_i} Δ_i`` per row.

    Args:
        probs: ``(..., N)`` predicted probabilities in [0, 1] (e.g. ``L × N`` kernel values φ_l of L instances).
        labels: ``(..., N)`` ground truth in {0, 1} (bool or integer), same shape.
        valid: optional ``(..., N)`` bool; pixels with False are left out of the row's loss.
    Returns:
        ``(...)`` per-row losses in [0, 1]; a row without valid pixels gives 0.
    """
    _check_same_shape("probs", probs, "labels", labels)
    if valid is not None:
        _check_same_shape("probs", probs, "valid", valid)
        if valid.dtype != torch.bool:
            raise TypeError(f"valid must be a bool tensor, got dtype {valid.dtype}")
    if probs.dim() == 0:
        raise ValueError("lovasz_binary_rows expects at least one axis (..., N), got a scalar")
    if probs.shape[-1] == 0:
        return probs.sum(-1) * 0.0
    gt = _binary_labels(labels, valid, "lovasz_binary_rows")
    xi = torch.where(gt, 1.0 - probs, probs)                            # eq. 4
    return _lovasz_rows(xi, gt, valid)


def lovasz_binary(probs: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """eq. 3-5: LovászBinary(p, t) over all pixels of ``probs`` (any shape, flattened).

    Args:
        probs: predicted probabilities in [0, 1], any shape.
        labels: ground truth in {0, 1}, same shape.
        valid: optional bool mask of the same shape; False pixels are left out.
    Returns:
        scalar in [0, 1]; a zero attached to ``probs`` for empty input.
    """
    _check_same_shape("probs", probs, "labels", labels)
    if probs.numel() == 0:
        return probs.sum() * 0.0
    return lovasz_binary_rows(probs.reshape(1, -1), labels.reshape(1, -1),
                              None if valid is None else valid.reshape(1, -1))[0]


# --------------------------------------------------------------------------------------------------------------
# Lovász-softmax (paper eq. 6)
# --------------------------------------------------------------------------------------------------------------
def _class_list(classes: str | Sequence[int], num_classes: int, device: torch.device) -> torch.Tensor | None:
    """Class indices to sum over, or None for 'present' (decided from the labels)."""
    if isinstance(classes, str):
        if classes == "present":
            return None
        if classes == "all":
            return torch.arange(num_classes, device=device)
        raise ValueError(f"classes must be 'present', 'all' or a list of class indices, got {classes!r}")
    idx = torch.as_tensor(list(classes), dtype=torch.long, device=device)
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= num_classes):
        raise ValueError(f"classes must lie in 0..{num_classes - 1}, got {list(classes)}")
    return idx


def _check_class_labels(labels: torch.Tensor, valid: torch.Tensor | None, num_classes: int, what: str) -> None:
    bad = (labels < 0) | (labels >= num_classes)
    if valid is not None:
        bad = bad & valid
    if bool(bad.any()):
        raise ValueError(f"{what}: labels must lie in 0..{num_classes - 1} (or be ignored), "
                         f"got values {labels[bad].unique().tolist()[:8]}")


def lovasz_softmax_flat(probas: torch.Tensor, labels: torch.Tensor,
                        classes: str | Sequence[int] = "present") -> torch.Tensor:
    """eq. 6 on flat input: mean over classes c of LovászBinary(p_c, 1[t = c]) (errors ``|1[t=c] - p_c|``).

    Args:
        probas: ``(P, C)`` class probabilities (softmax output, each row in the simplex).
        labels: ``(P,)`` integer ground truth in 0..C-1.
        classes: 'present' (classes occurring in ``labels``), 'all', or a list of class indices.
    Returns:
        scalar; a zero attached to ``probas`` when ``P == 0`` or no class is selected.
    """
    if probas.dim() != 2:
        raise ValueError(f"lovasz_softmax_flat expects probas of shape (P, C), got {tuple(probas.shape)}")
    if labels.shape != probas.shape[:1]:
        raise ValueError(f"labels must have shape ({probas.shape[0]},), got {tuple(labels.shape)}")
    num_classes = probas.shape[1]
    if probas.shape[0] == 0:
        return probas.sum() * 0.0
    _check_class_labels(labels, None, num_classes, "lovasz_softmax_flat")
    cls = _class_list(classes, num_classes, probas.device)
    if cls is None:
        cls = torch.unique(labels)
    if cls.numel() == 0:
        return probas.sum() * 0.0
    fg = labels.unsqueeze(0) == cls.unsqueeze(1)                      # C' x P
    errors = (fg.to(probas.dtype) - probas[:, cls].t()).abs()           # C' x P
    return _lovasz_rows(errors, fg, None).mean()


def lovasz_softmax(probas: torch.Tensor, labels: torch.Tensor, classes: str | Sequence[int] = "present",
                   per_image: bool = False, ignore: int | None = None) -> torch.Tensor:
    """eq. 6, multi-class Lovász-softmax of a batch.

    Args:
        probas: ``(B, C, H, W)`` class probabilities (softmax over C).
        labels: ``(B, H, W)`` integer ground truth in 0..C-1, or ``ignore``.
        classes: 'present' (per loss unit: the batch, or each image with ``per_image``), 'all', or a list.
        per_image: mean of per-image losses instead of one loss over the flattened batch (reference default).
        ignore: label value of pixels left out.
    Returns:
        scalar; a zero attached to ``probas`` when nothing is left to score. With ``per_image`` an image that
        has no scored class contributes 0 to the mean.
    """
    if probas.dim() != 4:
        raise ValueError(f"lovasz_softmax expects probas of shape (B, C, H, W), got {tuple(probas.shape)}")
    b, c, h, w = probas.shape
    if labels.shape != (b, h, w):
        raise ValueError(f"labels must have shape {(b, h, w)}, got {tuple(labels.shape)}")
    if probas.numel() == 0:
        return probas.sum() * 0.0
    valid = None if ignore is None else labels != ignore
    if not per_image:
        flat_p = probas.permute(0, 2, 3, 1).reshape(-1, c)              # B·H·W x C
        flat_t = labels.reshape(-1)
        if valid is not None:
            keep = valid.reshape(-1)
            flat_p, flat_t = flat_p[keep], flat_t[keep]
        return lovasz_softmax_flat(flat_p, flat_t, classes)
    _check_class_labels(labels, valid, c, "lovasz_softmax")
    n = h * w
    lab = labels.reshape(b, 1, n)
    val = torch.ones_like(lab, dtype=torch.bool) if valid is None else valid.reshape(b, 1, n)
    cls = _class_list(classes, c, probas.device)
    if cls is None:
        cls = torch.unique(labels[valid] if valid is not None else labels)
    if cls.numel() == 0:
        return probas.sum() * 0.0
    fg = lab == cls.view(1, -1, 1)                                      # B x C' x N
    errors = (fg.to(probas.dtype) - probas.reshape(b, c, n)[:, cls]).abs()
    val = val.expand_as(fg)
    losses = _lovasz_rows(errors, fg, val)                              # B x C'
    if isinstance(classes, str) and classes == "present":
        used = (fg & val).any(-1)                                       # B x C': class present in the image
    else:
        used = torch.ones_like(losses, dtype=torch.bool)
    per_img = (losses * used).sum(-1) / used.sum(-1).clamp_min(1)
    return per_img.mean()
