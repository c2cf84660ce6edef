"""§3.5 full decode at a bounded cost: decide on a coarse map, re-decide at full resolution only at borders.

The per-pixel work of §3.5 is ψ over K classes (eq. 9) and Φ over S kept seeds (eq. 8) for every pixel: on
a network output of N pixels that is O(N·(K + S)·D), and S can reach ``max_seeds``. Here those decisions
are taken on the embedding map average-pooled by ``factor`` (f, the cells of the fast mode), and then every
pixel of a cell whose 3 × 3 cell neighbourhood holds another segment or class, or whose own pixels disagree
(its mean embedding is shorter than 1 − ``MIXED_CELL``: a structure thinner than a cell), a *border cell*, is
decided again at full resolution from its own embedding: ψ over all K classes, Φ over every kept seed while
there are at most 64 (the exact decision), else over the owners of its 3 × 3 cells. Inside a cell whose whole
neighbourhood agrees, every pixel takes the cell's decision. Seeds are
found and merged as in the exact decoder: 3 × 3 max-pool NMS on the full-resolution seed map (restricted to
pixels of coarse thing cells), Φ between the candidates at their own pixels.

Cost per image (N pixels, f = ``factor``, C ≤ ``max_seeds`` candidates, S ≤ C kept seeds, P ≤ N pixels of
border cells): a fixed number of O(N) passes (pooling, seed NMS, label upsampling) + N/f²·(K·D + S·(D+4))
multiply-adds for the coarse map + P·(K·D + c(S)) for the refinement, c(S) = S·(D+4) while S ≤ 64 (every seed
is a candidate of a border pixel: one matrix product) and 9·(D+4) above (the owners of its 3 × 3 cells)
+ C²·(D+2) for merging. With f = 4, D = 8, K = 8 and ``max_seeds`` 256 that is at most 884 multiply-adds per
pixel (S = 64: 52 coarse + 832 refined), whatever the network outputs; the exact decoder's worst case is
K·D + S·(D+4) = 3 136 per pixel.

Output statistics (areas, boxes, mean embeddings, mean ψ) are exact for the label map produced: interior
cells contribute their window sums (:func:`~.fast.window_pixel_counts`), border pixels their own values.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from hle_core.config import DecoderConfig

from .fast import unit_rows, upsample_labels, window_mean, window_pixel_counts
from .indexing import gather_columns, lookup, map_coordinates, put
from .instances import instance_masks, kernel_features, kernel_weights
from .seeds import find_seeds, merge_seeds, window_max
from .segments import lane_bincount, lane_index_add, lane_keys
from .semantic import assign_semantics, stuff_pixels

__all__ = ["COARSE_FACTOR", "MIXED_CELL", "REFINED_FRACTION_FOR_EXACT", "RefinedLabels", "label_segments_refined",
           "border_cells", "cell_pixels", "neighbourhood_masks"]

#: Default ``coarse_factor`` of the full decode (:func:`~.panoptic.decode_panoptic`); 1 = every pixel exact.
COARSE_FACTOR = 4
#: A cell is refined when its pooled embedding is shorter than 1 - MIXED_CELL: for unit vectors
#: 1 - |mean| ≈ p(1-p)·δ when a fraction p of the pixels lies at cosine distance δ from the rest, so 0.01 catches
#: one pixel in 16 at δ ≈ 0.17 (a different instance or class); on the shipped model's outputs ~8 % of cells.
MIXED_CELL = 0.01
#: Up to this many kept seeds, border pixels evaluate log Φ of every seed (one small matrix product, exact);
#: trained models keep 7-16 per 512 × 1024 street image, ~50 on a crowded 576 × 768 camera frame. A product
#: over 64 seeds costs less on CPU than gathering 9 candidates' weights per pixel (docs/RESULTS.md).
_ALL_SEEDS = 64
#: Default ``max_refined_fraction`` of the full decode: when more than half of the cells must be re-decided pixel by
#: pixel from the start (class borders, mixed cells), the exact decoder is cheaper than cells + refinement: on
#: frames of a real camera video ~70 % of the cells were mixed (the synthetic-trained model's embeddings vary
#: within cells) and the exact path decoded them faster (docs/RESULTS.md); synthetic street scenes have 13-21 %.
REFINED_FRACTION_FOR_EXACT = 0.5
#: Pixels per block of the 9-candidate refinement (block × 9 × (D+4) floats at once).
_REFINE_BLOCK = 1 << 15


@dataclass
class RefinedLabels:
    """§3.5 steps 1-5 as coarse cells plus re-decided border pixels, with exact full-resolution statistics.

    Segment slots as in :class:`~.panoptic.SegmentLabels`: 0 = void, ``1..S`` instances, ``S+1+k`` stuff k.

    Attributes:
        slot_cells: ``(h, w)`` int64 slot of every cell (the final slot of its pixels unless refined).
        border_pixels: ``(P,)`` int64 flat full-resolution indices of the re-decided pixels.
        slot_border: ``(P,)`` int64 their slots.
        semantic: ``(H, W)`` int64 class index per pixel.
        category, is_thing, score: ``(M,)`` per slot (M = 1 + S + K), as in ``SegmentLabels``.
        areas, boxes, embeddings: ``(M,)``, ``(M, 4)``, ``(M, D)`` full-resolution statistics.
    """

    slot_cells: torch.Tensor
    border_pixels: torch.Tensor
    slot_border: torch.Tensor
    semantic: torch.Tensor
    category: torch.Tensor
    is_thing: torch.Tensor
    score: torch.Tensor
    areas: torch.Tensor
    boxes: torch.Tensor
    embeddings: torch.Tensor


def border_cells(labels: torch.Tensor) -> torch.Tensor:
    """``(h, w)`` bool: cells whose 3 × 3 neighbourhood (inside the map) holds a label other than their own."""
    x = labels.to(torch.float32)                                    # slots and classes: small integers, exact
    return (window_max(x, 3) != x) | (window_max(-x, 3) != -x)


def cell_pixels(cells: torch.Tensor, factor: int, size: tuple[int, int]) -> tuple[torch.Tensor, ...]:
    """The full-resolution pixels of the selected cells (windows of ``factor × factor``, partial at the bottom /
    right border), cell by cell.

    Args:
        cells: ``(h, w)`` bool. size: ``(H, W)`` of the full-resolution map.
    Returns:
        ``pixel`` ``(P,)`` int64 flat index, ``cell`` ``(P,)`` flat index of its cell, ``y``, ``x`` ``(P,)``.
    """
    height, width = size
    wc = cells.shape[1]
    cell = cells.flatten().nonzero().squeeze(1)                                   # cells
    cy, cx = cell // wc, cell % wc
    off = torch.arange(factor, device=cells.device)
    ys = (cy[:, None, None] * factor + off[None, :, None]).expand(-1, factor, factor)   # cells x f x f
    xs = (cx[:, None, None] * factor + off[None, None, :]).expand(-1, factor, factor)
    cell = cell[:, None, None].expand(-1, factor, factor)
    if height % factor or width % factor:                                        # drop pixels outside the image
        inside = (ys < height) & (xs < width)
        ys, xs, cell = ys[inside], xs[inside], cell[inside]
    ys, xs, cell = ys.reshape(-1), xs.reshape(-1), cell.reshape(-1)
    return ys * width + xs, cell, ys, xs


def neighbourhood_masks(owner_cells: torch.Tensor, cell_index: torch.Tensor, embedding: torch.Tensor,
                        rho: torch.Tensor, weights: torch.Tensor, mask_threshold: float) -> torch.Tensor:
    """§3.5 step 4 for border pixels: argmax of log Φ over the seeds that may own them.

    With S ≤ ``_ALL_SEEDS`` (64) seeds every seed is a candidate (one S × P product: the exact decoder's decision,
    so an instance thinner than a cell, which owns no cell, keeps its pixels); with more, only the owners of
    the pixel's 3 × 3 cells are (9·(D+4) multiply-adds per pixel whatever S).

    Args:
        owner_cells: ``(h, w)`` int64 seed owning each cell (-1: none).
        cell_index: ``(P,)`` int64 flat index of each pixel's cell.
        embedding: ``(D, P)`` unit-norm pixel embeddings; rho: ``(2, P)`` their ρ.
        weights: ``(S, D+4)`` :func:`~.instances.kernel_weights` of the kept seeds.
        mask_threshold: Φ must exceed it.
    Returns:
        ``(P,)`` int64 owning seed, -1 where no candidate's Φ exceeds the threshold (or there is none).
    """
    p, s = cell_index.numel(), weights.shape[0]
    out = torch.full((p,), -1, dtype=torch.long, device=embedding.device)
    if p == 0 or s == 0:
        return out
    h, w = owner_cells.shape
    padded = F.pad(owner_cells[None].float(), (1, 1, 1, 1), value=-1.0)[0].long().flatten()   # (h+2)(w+2)
    base = (cell_index // w) * (w + 2) + cell_index % w                          # top-left of the 3 x 3 window
    offsets = torch.tensor([dy * (w + 2) + dx for dy in range(3) for dx in range(3)], device=base.device)
    log_t = math.log(mask_threshold) if mask_threshold > 0 else -math.inf
    for start in range(0, p, _REFINE_BLOCK):
        sl = slice(start, start + _REFINE_BLOCK)
        feats = kernel_features(embedding[:, sl], rho[:, sl])                    # (D+4) x b
        if s <= _ALL_SEEDS:                                                       # log Φ (eq. 8) of all seeds
            best, owner = (feats.T @ weights.T).max(dim=1)                        # b
        else:                                                                     # ... of the 9 cells' owners
            cand = padded[(base[sl, None] + offsets).flatten()].view(-1, 9)      # b x 9 seed indices, -1 = none
            safe = cand.clamp_min(0)
            log_phi = torch.stack([(weights.index_select(0, safe[:, j]) * feats.T).sum(1) for j in range(9)], 1)
            best, arg = log_phi.masked_fill(cand < 0, -math.inf).max(dim=1)
            owner = cand.gather(1, arg[:, None])[:, 0]
        out[sl] = torch.where(best > log_t, owner, out[sl])
    return out


def _pixel_rho(y: torch.Tensor, x: torch.Tensor, coord_scale: float, stride: float, dtype: torch.dtype) -> torch.Tensor:
    """ρ (eq. 8) of pixels ``(y, x)``, as :func:`hle_core.kernels.pixel_coordinates` defines it: ``(2, P)``."""
    return torch.stack(((x.to(dtype) + 0.5) * stride - 0.5, (y.to(dtype) + 0.5) * stride - 0.5)) / coord_scale


def label_segments_refined(embedding: torch.Tensor, sigma: torch.Tensor, sigma_spatial: torch.Tensor,
                           seed: torch.Tensor, class_means: torch.Tensor, class_sigma: torch.Tensor,
                           is_thing_class: torch.Tensor, cfg: DecoderConfig, coord_scale: float,
                           input_stride: float = 1.0, semantic_logits: torch.Tensor | None = None,
                           factor: int = COARSE_FACTOR,
                           max_refined_fraction: float | None = None) -> RefinedLabels | None:
    """§3.5 steps 1-5 with coarse decisions and full-resolution refinement at borders (module docstring).

    Args: as :func:`~.panoptic.label_segments` (maps ``(D, H, W)`` / ``(H, W)``), plus ``factor`` ≥ 2 and
        ``max_refined_fraction``: when more than this fraction of the cells lie on a class border or are mixed
        (so would be re-decided pixel by pixel anyway), stop after that first coarse pass and return None: the
        caller decodes exactly instead, which then costs less. None: never stop.
    """
    d, h, w = embedding.shape
    n, k, f = h * w, class_means.shape[0], factor
    dev, dt = embedding.device, embedding.dtype
    e_flat = embedding.reshape(d, n)

    # coarse cells: window means (partial windows average their in-image pixels), embedding renormalised
    partial = h % f != 0 or w % f != 0
    if partial:                                                                   # partial windows: their own mean
        e_mean = F.avg_pool2d(embedding, f, f, ceil_mode=True)                                  # D x hc x wc
    else:                                                                         # same, faster on CPU
        e_mean = window_mean(embedding, f)
    hc, wc = e_mean.shape[1:]
    nc = hc * wc
    e_unit = unit_rows(e_mean).reshape(d, nc)
    logits_flat = None if semantic_logits is None else semantic_logits.reshape(k, n)
    logits_c = (None if semantic_logits is None
                else F.avg_pool2d(semantic_logits, f, f, ceil_mode=partial).reshape(k, nc))
    sem_c, psi_c = assign_semantics(e_unit, class_means, class_sigma, logits_c)                 # eq. 9, cells
    thing_c = lookup(is_thing_class, sem_c)                                                      # nc

    # step 1 refined: pixels of cells on a class border or whose pixels disagree (short pooled embedding)
    mixed = e_mean.pow(2).sum(0) < (1.0 - MIXED_CELL) ** 2                                       # hc x wc
    refine_a = border_cells(sem_c.view(hc, wc)) | mixed
    if max_refined_fraction is not None and float(refine_a.float().mean()) > max_refined_fraction:
        return None
    pix_a, cell_a, y_a, x_a = cell_pixels(refine_a, f, (h, w))
    e_a = e_flat.index_select(1, pix_a)                                                          # D x P_a
    sem_a, psi_a = assign_semantics(e_a, class_means, class_sigma,
                                    None if logits_flat is None else logits_flat.index_select(1, pix_a))
    thing_px = upsample_labels(thing_c.view(hc, wc), (h, w), f)
    put(thing_px.view(-1), pix_a, lookup(is_thing_class, sem_a))

    # steps 2-3 as the exact decoder: NMS on the full-resolution seed map, Φ between candidates at their pixels
    index, score = find_seeds(seed, thing_px, cfg.nms_kernel, cfg.seed_threshold, cfg.max_seeds)
    rho_seed = _pixel_rho(index // w, index % w, coord_scale, input_stride, dt).T                # C x 2
    sig, sig_sp = sigma.reshape(n), sigma_spatial.reshape(n)
    keep = merge_seeds(e_flat[:, index].T, rho_seed, sig[index], sig_sp[index], cfg.merge_threshold)
    index, score, rho_seed = index[keep], score[keep], rho_seed[keep]
    s = index.numel()
    seed_e, seed_sig, seed_sig_sp = e_flat[:, index].T, sig[index], sig_sp[index]

    # step 4 on the cells: Φ(e_seed, e_cell) over the S seeds for every thing cell
    owner_c = torch.full((nc,), -1, dtype=torch.long, device=dev)
    if s:
        tc = thing_c.nonzero().squeeze(1)
        rho_c = map_coordinates(hc, wc, float(coord_scale), float(input_stride * f), dev, dt)          # 2 x nc
        put(owner_c, tc, instance_masks(gather_columns(e_unit, tc), gather_columns(rho_c, tc), seed_e, rho_seed,
                                        seed_sig, seed_sig_sp, cfg.mask_threshold, rows_sorted=True))
    # step 5 on the cells, then the slot of every cell
    slot_c = torch.where(thing_c, owner_c + 1, torch.zeros_like(owner_c))
    slot_c = torch.where(stuff_pixels(thing_c, psi_c, cfg.stuff_threshold), s + 1 + sem_c, slot_c)

    # refinement: every pixel of a border cell (class or segment border, or mixed), from its own embedding
    border = border_cells(slot_c.view(hc, wc)) | refine_a                                       # hc x wc
    pix_e, cell_e, y_e, x_e = cell_pixels(border & ~refine_a, f, (h, w))                         # not done yet
    e_e = e_flat.index_select(1, pix_e)
    sem_e, psi_e = assign_semantics(e_e, class_means, class_sigma,
                                    None if logits_flat is None else logits_flat.index_select(1, pix_e))
    pix, cell_of = torch.cat((pix_a, pix_e)), torch.cat((cell_a, cell_e))                       # P
    e_b, ys, xs = torch.cat((e_a, e_e), dim=1), torch.cat((y_a, y_e)), torch.cat((x_a, x_e))    # D x P, P, P
    sem_b, psi_b = torch.cat((sem_a, sem_e)), torch.cat((psi_a, psi_e))
    thing_b = lookup(is_thing_class, sem_b)
    slot_b = torch.zeros_like(sem_b)
    if s:
        tb = thing_b.nonzero().squeeze(1)
        weights = kernel_weights(seed_e, rho_seed, seed_sig, seed_sig_sp)                        # S x (D+4)
        owner_b = neighbourhood_masks(owner_c.view(hc, wc), lookup(cell_of, tb), gather_columns(e_b, tb),
                                      _pixel_rho(lookup(ys, tb), lookup(xs, tb), coord_scale, input_stride, dt),
                                      weights, cfg.mask_threshold)
        put(slot_b, tb, owner_b + 1)
    slot_b = torch.where(stuff_pixels(thing_b, psi_b, cfg.stuff_threshold), s + 1 + sem_b, slot_b)

    semantic = upsample_labels(sem_c.view(hc, wc), (h, w), f).reshape(n)
    put(semantic, pix, sem_b)

    # statistics: interior cells by window sums, border pixels one by one (exact for this label map)
    m = 1 + s + k
    ci = (~border).flatten().nonzero().squeeze(1)                                                # interior cells
    count = lookup(window_pixel_counts((h, w), f, dev).flatten(), ci)
    s_int = lookup(slot_c, ci)
    key_int, key_b = lane_keys(s_int), lane_keys(slot_b)                  # runs of cells / pixels of one slot
    areas = (lane_bincount(key_int, m, count.double()).round().long() + lane_bincount(key_b, m))
    psi_sum = lane_bincount(key_int, m, (lookup(psi_c, ci) * count).double()) + lane_bincount(key_b, m, psi_b.double())
    sums = (lane_index_add(key_int, e_mean.reshape(d, nc).index_select(1, ci) * count.to(dt), m)
            + lane_index_add(key_b, e_b, m))
    cy, cx = ci // wc, ci % wc
    slots = torch.cat((s_int, slot_b))
    lo_y, lo_x = torch.cat((cy * f, ys)), torch.cat((cx * f, xs))
    hi_y = torch.cat(((cy * f + f).clamp(max=h) - 1, ys))
    hi_x = torch.cat(((cx * f + f).clamp(max=w) - 1, xs))
    big = torch.full((m,), max(h, w), dtype=torch.long, device=dev)
    small = torch.full((m,), -1, dtype=torch.long, device=dev)
    boxes = torch.stack((big.scatter_reduce(0, slots, lo_x, "amin"), big.scatter_reduce(0, slots, lo_y, "amin"),
                         small.scatter_reduce(0, slots, hi_x, "amax"), small.scatter_reduce(0, slots, hi_y, "amax")),
                        dim=1) * (areas > 0)[:, None]
    mean_psi = (psi_sum / areas.clamp_min(1)).to(psi_c.dtype)

    seed_class = semantic[index]                          # a thing class; else (never seen) that of its cell
    seed_class = torch.where(is_thing_class[seed_class], seed_class, sem_c[(index // w // f) * wc + index % w // f])
    zero_l, zero_b = torch.zeros(1, dtype=torch.long, device=dev), torch.zeros(1, dtype=torch.bool, device=dev)
    return RefinedLabels(
        slot_cells=slot_c.view(hc, wc), border_pixels=pix, slot_border=slot_b, semantic=semantic.view(h, w),
        category=torch.cat((zero_l, seed_class, torch.arange(k, device=dev))),
        is_thing=torch.cat((zero_b, torch.ones(s, dtype=torch.bool, device=dev),
                            torch.zeros(k, dtype=torch.bool, device=dev))),
        score=torch.cat((mean_psi[:1], score.to(mean_psi.dtype), mean_psi[s + 1:])),
        areas=areas, boxes=boxes, embeddings=unit_rows(sums).T,
    )
