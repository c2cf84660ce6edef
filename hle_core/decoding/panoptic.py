"""Panoptic decoding of Hierarchical Lovász Embeddings (paper §3.5), full and fast.

``decode_panoptic`` composes the steps of §3.5, each a pure tensor function in its own module:

1. :func:`~.semantic.assign_semantics` — class per pixel by argmax of ψ (eq. 9);
2. :func:`~.seeds.find_seeds` — 3 × 3 max-pool NMS of the seed map on thing pixels, threshold, top-k;
3. :func:`~.seeds.merge_seeds` — greedy merging of candidate seeds by Φ(e_i, e_j);
4. :func:`~.instances.instance_masks` — Φ(e_seed, e_k) for every pixel, argmax seed above a threshold;
5. :func:`~.semantic.stuff_pixels` — stuff pixels with ψ above a threshold;
6. :func:`~.segments.filter_small_segments` / :func:`~.segments.number_instances` — minimum areas, ids;
7. fast mode (:mod:`.fast`) — decode on an average-pooled map, upsample the labels.

The full mode decides steps 1, 4 and 5 on cells of ``coarse_factor`` × ``coarse_factor`` pixels and re-decides
every pixel of a cell that borders another segment at full resolution (:mod:`.refine`): its cost per pixel is
bounded whatever the number of seeds; ``coarse_factor=1`` decides every pixel on its own (the exact decoder).
Maps of at most ``exact_max_pixels`` pixels, and maps where more than half of the cells would be re-decided pixel
by pixel anyway (:data:`~.refine.REFINED_FRACTION_FOR_EXACT`: mixed cells, as on a real camera's frames), whose kept
seeds number at most :data:`EXACT_MAX_SEEDS` are decoded exactly even then: there the exact decision costs no
more per pixel than the bounded one's worst case (K·D + S·(D+4) ≤ 832 multiply-adds for K = D = 8, S ≤ 64, against
884) and saves the bounded path's fixed cost of cells, borders and bookkeeping, which dominates on small maps and
on maps of mostly mixed cells (docs/RESULTS.md, "Real time on CPU").

The device comes from the inputs; the same code runs on CPU and CUDA with a handful of host syncs per image
(candidate count, merge convergence, kept seeds, thing pixels, kept segments), none per seed or per pixel.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch
import torch.nn.functional as F

from hle_core.config import LABEL_DIVISOR, VOID_ID, ClassTable, ConfigError, DecoderConfig
from hle_core.kernels import class_logits, embedding_halves

from .fast import downsample_outputs, upsample_labels, window_pixel_counts
from .indexing import gather_columns, lookup, map_coordinates, put
from .instances import instance_masks
from .refine import COARSE_FACTOR, REFINED_FRACTION_FOR_EXACT, RefinedLabels, label_segments_refined
from .result import PanopticResult
from .seeds import find_seeds, merge_seeds
from .segments import filter_small_segments, lane_bincount, lane_keys, number_instances, segment_statistics
from .semantic import assign_semantics, stuff_pixels

__all__ = ["DecoderInputError", "SegmentLabels", "label_segments", "decode_panoptic", "decode_batch", "decoder_inputs",
           "EXACT_MAX_PIXELS", "EXACT_MAX_SEEDS"]

#: Default ``exact_max_pixels`` of :func:`decode_panoptic`: maps up to this size (e.g. 256 × 512, a 768 × 576
#: camera at its own size, 512 × 1024) take the exact path when few seeds are kept; bigger maps try the bounded
#: one first. Cameras' own frames decode this way without the bounded path's first, abandoned pass over mostly
#: mixed cells; on synthetic 512 × 1024 maps the bounded path would be a little cheaper.
EXACT_MAX_PIXELS = 1 << 19
#: The exact path is taken only while at most this many seeds are kept: its K·D + S·(D+4) multiply-adds per pixel
#: stay within the bounded path's worst case, ≥ K·D + 64·(D+4) (:mod:`.refine`, its 64 seeds on border pixels),
#: for every K and D: 832 against 884 for K = D = 8, f = 4, ``max_seeds`` 256.
EXACT_MAX_SEEDS = 64

#: Keys of the network output dict (docs/ARCHITECTURE.md) that the decoder reads.
_MAP_KEYS = ("embedding", "sigma", "sigma_spatial", "seed")


class DecoderInputError(ValueError):
    """The decoder received tensors whose shapes (or types) do not fit together."""


@dataclass
class SegmentLabels:
    """Intermediate result of steps 1-5 at decoding resolution.

    Segment slots: 0 = void, ``1..S`` = the S kept seeds' instances, ``S+1+k`` = stuff region of class k.

    Attributes:
        segment_map: ``(h, w)`` int64 slot per pixel.
        semantic: ``(h, w)`` int64 argmax-ψ class index.
        category: ``(M,)`` int64 class index per slot (M = 1 + S + K).
        is_thing: ``(M,)`` bool.
        score: ``(M,)`` seed value (instances) or mean ψ (stuff).
        lane_keys: ``(h·w,)`` :func:`~.segments.lane_keys` of ``segment_map``, for its statistics (None: not made).
    """

    segment_map: torch.Tensor
    semantic: torch.Tensor
    category: torch.Tensor
    is_thing: torch.Tensor
    score: torch.Tensor
    lane_keys: torch.Tensor | None = None


def label_segments(embedding: torch.Tensor, sigma: torch.Tensor, sigma_spatial: torch.Tensor, seed: torch.Tensor,
                   class_means: torch.Tensor, class_sigma: torch.Tensor, is_thing_class: torch.Tensor,
                   cfg: DecoderConfig, coord_scale: float, input_stride: float = 1.0,
                   semantic_logits: torch.Tensor | None = None,
                   max_kept_seeds: int | None = None) -> SegmentLabels | None:
    """§3.5 steps 1-5 on one image at the resolution of its maps (no area filter, no final ids).

    Args:
        embedding: ``(D, h, w)`` unit-norm embeddings; sigma, sigma_spatial, seed: ``(h, w)``.
        class_means: ``(K, D)``; class_sigma: ``(K,)``; is_thing_class: ``(K,)`` bool.
        coord_scale, input_stride: ρ of a cell = its centre in input pixels / coord_scale (eq. 8 units).
        semantic_logits: optional ``(K, h, w)`` separate-branch logits (Table 6 variant).
        max_kept_seeds: when more seeds than this survive merging, stop before the masks (step 4) and return
            None (the caller decodes the image on the bounded path instead); None: no limit.
    """
    d, h, w = embedding.shape
    n, k = h * w, class_means.shape[0]
    e = embedding.reshape(d, n)                                                          # D x N
    logits = None if semantic_logits is None else semantic_logits.reshape(k, n)
    semantic, psi_max = assign_semantics(e, class_means, class_sigma, logits)           # N, N
    thing_px = lookup(is_thing_class, semantic)                                          # N

    # steps 2-3: candidate seeds, merged to one per instance
    index, score = find_seeds(seed, thing_px.view(h, w), cfg.nms_kernel, cfg.seed_threshold, cfg.max_seeds)
    rho = map_coordinates(h, w, float(coord_scale), float(input_stride), e.device, e.dtype)          # 2 x N
    sig, sig_sp = sigma.reshape(n), sigma_spatial.reshape(n)
    keep = merge_seeds(e[:, index].T, rho[:, index].T, sig[index], sig_sp[index], cfg.merge_threshold)
    index, score = index[keep], score[keep]                                              # S, S
    s = index.numel()
    if max_kept_seeds is not None and s > max_kept_seeds:
        return None

    # step 4: instance masks over thing pixels
    segment = torch.zeros(n, dtype=torch.long, device=e.device)                          # N, 0 = void
    if s:
        pix = thing_px.nonzero().squeeze(1)                                              # thing pixels
        owner = instance_masks(gather_columns(e, pix), gather_columns(rho, pix), e[:, index].T, rho[:, index].T,
                               sig[index], sig_sp[index], cfg.mask_threshold, rows_sorted=True)   # row-major scan
        put(segment, pix, owner + 1)                                                     # unclaimed (-1) → void

    # step 5: stuff regions, one slot per stuff class
    stuff = stuff_pixels(thing_px, psi_max, cfg.stuff_threshold)
    segment = torch.where(stuff, s + 1 + semantic, segment)

    m = 1 + s + k
    keys = lane_keys(segment.view(h, w))
    mean_psi = (lane_bincount(keys, m, psi_max.double()) / lane_bincount(keys, m).clamp_min(1)).to(psi_max.dtype)
    dev = e.device
    zero_l, zero_b = torch.zeros(1, dtype=torch.long, device=dev), torch.zeros(1, dtype=torch.bool, device=dev)
    return SegmentLabels(
        segment_map=segment.view(h, w),
        semantic=semantic.view(h, w),
        category=torch.cat((zero_l, semantic[index], torch.arange(k, device=dev))),
        is_thing=torch.cat((zero_b, torch.ones(s, dtype=torch.bool, device=dev),
                            torch.zeros(k, dtype=torch.bool, device=dev))),
        score=torch.cat((mean_psi[:1], score.to(mean_psi.dtype), mean_psi[s + 1:])),
        lane_keys=keys,
    )


def decode_panoptic(embedding: torch.Tensor, sigma: torch.Tensor, sigma_spatial: torch.Tensor, seed: torch.Tensor,
                    class_means: torch.Tensor, class_sigma: torch.Tensor, classes: ClassTable, cfg: DecoderConfig,
                    coord_scale: float, input_stride: float = 1.0, *,
                    semantic_logits: torch.Tensor | None = None,
                    coarse_factor: int = COARSE_FACTOR,
                    exact_max_pixels: int = EXACT_MAX_PIXELS) -> PanopticResult:
    """Panoptic segmentation of ONE image from its hierarchical embeddings (§3.5).

    With ``cfg.fast_downsample`` = f > 1 the maps are average-pooled by f (embedding renormalised), decoded
    with ρ still in input-pixel units (stride ``input_stride · f``), and the label map is upsampled by nearest
    neighbour. Areas, boxes and mean embeddings are always those of the full-resolution map (in fast mode
    computed exactly from window means and pixel counts), and the minimum-area filter applies to them.

    Args:
        embedding: ``(D, H, W)`` unit-norm embeddings e_i.
        sigma, sigma_spatial, seed: ``(1, H, W)`` or ``(H, W)``: σ_i, σ_{i,spatial}, s_i.
        class_means: ``(K, D)`` μ̂_k; class_sigma: ``(K,)`` σ_k; K must equal ``len(classes)``.
        classes: category ids and thing/stuff flags of the K classes.
        cfg: thresholds (``DecoderConfig``).
        coord_scale: ρ = pixel coordinate / coord_scale (``ModelConfig.coord_scale``).
        input_stride: input pixels per map cell (1 when the maps are at input resolution).
        semantic_logits: optional ``(K, H, W)`` (Table 6 separate semantic branch); replaces eq. 9's logits.
        coarse_factor: full mode only: cells of this many pixels a side decide ψ and Φ, border cells are
            re-decided per pixel (:mod:`.refine`, bounded cost); 1 decides every pixel on its own (exact §3.5).
            Maps smaller than two cells a side are decoded exactly.
        exact_max_pixels: full mode only: maps of at most this many pixels are decoded exactly while at most
            :data:`EXACT_MAX_SEEDS` seeds are kept (same per-pixel bound, less fixed cost); 0 = always bounded.
    Returns:
        :class:`PanopticResult` at ``(H, W)`` on the device of ``embedding``.
    Raises:
        DecoderInputError (a ValueError): shapes that do not agree, naming the shapes received.
        ConfigError: an unusable decoder config.
    """
    embedding, sigma, sigma_spatial, seed, class_means, class_sigma, semantic_logits = _check_inputs(
        embedding, sigma, sigma_spatial, seed, class_means, class_sigma, classes, semantic_logits)
    _check_config(cfg, coord_scale, input_stride)
    d, h, w = embedding.shape
    if h == 0 or w == 0:
        return _empty_result(h, w, d, embedding)
    dev = embedding.device
    is_thing_class = torch.tensor(classes.thing_mask, dtype=torch.bool, device=dev)
    f = cfg.fast_downsample
    if not isinstance(coarse_factor, int) or coarse_factor < 1:
        raise ConfigError(f"coarse_factor must be an int >= 1, got {coarse_factor!r}")
    cf = coarse_factor if f == 1 and h >= 2 * coarse_factor and w >= 2 * coarse_factor else 1
    labels: SegmentLabels | RefinedLabels | None = None
    if cf > 1:                                                             # full mode: which path (module docstring)
        labels = _full_mode_labels(embedding, sigma, sigma_spatial, seed, class_means, class_sigma, is_thing_class,
                                   cfg, coord_scale, input_stride, semantic_logits, cf, exact_max_pixels)
        cf = 1 if isinstance(labels, SegmentLabels) else cf
    if isinstance(labels, RefinedLabels):                                  # coarse cells + refined borders
        areas, boxes, embeddings = labels.areas, labels.boxes, labels.embeddings
    elif f > 1:                                                              # step 7: fast mode
        e_unit, *small_maps, e_mean = downsample_outputs(embedding, sigma, sigma_spatial, seed, f)
        small_logits = None if semantic_logits is None else F.avg_pool2d(semantic_logits, f, f, ceil_mode=True)
        labels = label_segments(e_unit, *small_maps, class_means, class_sigma, is_thing_class, cfg, coord_scale,
                                input_stride * f, small_logits)
        # full-resolution statistics of the upsampled map, from window means and pixel counts (exact)
        areas, boxes, embeddings = segment_statistics(labels.segment_map, e_mean, labels.category.numel(),
                                                      pixel_count=window_pixel_counts((h, w), f, dev), factor=f,
                                                      size=(h, w), keys=labels.lane_keys)
    else:
        if labels is None:
            labels = label_segments(embedding, sigma, sigma_spatial, seed, class_means, class_sigma,
                                    is_thing_class, cfg, coord_scale, input_stride, semantic_logits)
        areas, boxes, embeddings = segment_statistics(labels.segment_map, embedding, labels.category.numel(),
                                                      keys=labels.lane_keys)

    # step 6: minimum areas (at output resolution), then Cityscapes ids
    valid = filter_small_segments(areas, labels.is_thing, cfg.min_instance_area, cfg.min_stuff_area)
    valid[0] = False                                                        # slot 0 is void
    k = number_instances(labels.category, labels.score, valid & labels.is_thing, len(classes))
    category_ids = torch.tensor(classes.ids, dtype=torch.long, device=dev)[labels.category]
    ids = torch.where(labels.is_thing, category_ids * LABEL_DIVISOR + k, category_ids)
    ids = torch.where(valid, ids, torch.full_like(ids, VOID_ID))           # M: slot → panoptic id
    rows = valid.nonzero().squeeze(1)
    rows = rows[torch.argsort(ids[rows])]                                   # segments by ascending id
    if cf > 1:                                                             # label cells, then border pixels
        panoptic = upsample_labels(lookup(ids.to(torch.int32), labels.slot_cells), (h, w), cf)
        put(panoptic.view(-1), labels.border_pixels, lookup(ids.to(torch.int32), labels.slot_border))
        semantic = labels.semantic
    else:
        panoptic, semantic = lookup(ids.to(torch.int32), labels.segment_map), labels.semantic
    if f > 1:
        panoptic, semantic = upsample_labels(panoptic, (h, w), f), upsample_labels(semantic, (h, w), f)
    return PanopticResult(
        panoptic=panoptic,
        semantic=semantic,
        ids=ids[rows],
        category_ids=category_ids[rows],
        is_thing=labels.is_thing[rows],
        scores=labels.score[rows].float(),
        areas=areas[rows],
        boxes=boxes[rows],
        embeddings=embeddings[rows].float(),
    )


def _full_mode_labels(embedding, sigma, sigma_spatial, seed, class_means, class_sigma, is_thing_class, cfg,
                      coord_scale, input_stride, semantic_logits, factor: int,
                      exact_max_pixels: int) -> SegmentLabels | RefinedLabels:
    """Steps 1-5 of the full decode on the cheaper of its two paths, both bounded per pixel: exact while at most
    :data:`EXACT_MAX_SEEDS` seeds are kept, on maps of at most ``exact_max_pixels`` pixels or when more than
    :data:`~.refine.REFINED_FRACTION_FOR_EXACT` of the cells would be re-decided pixel by pixel anyway; else coarse
    cells with refined borders. ``exact_max_pixels`` 0: always the latter. An abandoned attempt costs its ψ and seed
    work (exact: K·D multiply-adds per pixel) or one pass over the cells (bounded)."""
    def exact() -> SegmentLabels | None:
        return label_segments(embedding, sigma, sigma_spatial, seed, class_means, class_sigma, is_thing_class, cfg,
                              coord_scale, input_stride, semantic_logits, max_kept_seeds=EXACT_MAX_SEEDS)

    def bounded(max_refined_fraction: float | None = None) -> RefinedLabels | None:
        return label_segments_refined(embedding, sigma, sigma_spatial, seed, class_means, class_sigma,
                                      is_thing_class, cfg, coord_scale, input_stride, semantic_logits, factor,
                                      max_refined_fraction=max_refined_fraction)

    h, w = embedding.shape[1:]
    if exact_max_pixels <= 0:
        labels = bounded()
    elif h * w <= exact_max_pixels:
        labels = exact() or bounded()
    else:
        labels = bounded(REFINED_FRACTION_FOR_EXACT) or exact() or bounded()
    assert labels is not None                 # bounded() without a fraction always labels
    return labels


def decoder_inputs(outputs: Mapping[str, torch.Tensor], decode_params: Mapping[str, torch.Tensor],
                   split_embedding: bool = False) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Map a Table-6 variant's outputs onto the decoder's inputs (embedding for Φ, logits for ψ).

    With ``split_embedding`` the first D/2 channels carry the semantics and the last D/2 the instances
    (as the loss reads them, :func:`hle_core.kernels.embedding_halves`): ψ's logits (eq. 9) are
    computed from the first half and the class means, and Φ (eq. 8) sees the renormalised second half.
    Any other variant passes through unchanged. Works on ``(B, D, H, W)`` and ``(D, H, W)`` maps.
    """
    if not split_embedding:
        return dict(outputs), dict(decode_params)
    e = outputs["embedding"]
    batched = e.dim() == 4
    e4 = e if batched else e.unsqueeze(0)
    half = e4.shape[1] // 2
    e_sem, e_ins = embedding_halves(e4)
    means = F.normalize(decode_params["class_means"][:, :half], dim=1, eps=1e-8)
    logits = class_logits(e_sem, means, decode_params["class_sigma"])                  # B x K x H x W
    out = dict(outputs)
    out["embedding"] = e_ins if batched else e_ins[0]
    if "semantic_logits" not in out:
        out["semantic_logits"] = logits if batched else logits[0]
    # Φ needs no class means; the decoder only checks that their width matches the instance embedding
    params = {**decode_params, "class_means": torch.zeros(means.shape[0], e4.shape[1] - half, dtype=means.dtype,
                                                           device=means.device)}
    return out, params


def decode_batch(outputs: Mapping[str, torch.Tensor], decode_params: Mapping[str, torch.Tensor],
                 classes: ClassTable, cfg: DecoderConfig, coord_scale: float,
                 input_stride: float = 1.0, *, split_embedding: bool = False,
                 coarse_factor: int = COARSE_FACTOR,
                 exact_max_pixels: int = EXACT_MAX_PIXELS) -> list[PanopticResult]:
    """:func:`decode_panoptic` for every image of a network output batch.

    Args:
        outputs: the dict of ``HLENet.forward`` (docs/ARCHITECTURE.md): ``embedding`` ``(B, D, H, W)``,
            ``sigma`` / ``sigma_spatial`` / ``seed`` ``(B, 1, H, W)``, optionally ``semantic_logits``
            ``(B, K, H, W)``.
        decode_params: ``HLENet.decode_params()``: ``class_means`` ``(K, D)``, ``class_sigma`` ``(K,)``.
    Returns:
        one :class:`PanopticResult` per image.
    """
    outputs, decode_params = decoder_inputs(outputs, decode_params, split_embedding)
    missing = [key for key in _MAP_KEYS if key not in outputs]
    missing += [key for key in ("class_means", "class_sigma") if key not in decode_params]
    if missing:
        raise DecoderInputError(f"decode_batch: missing {missing}; got outputs {sorted(outputs)} and "
                                f"decode_params {sorted(decode_params)}")
    batch = {key: outputs[key] for key in (*_MAP_KEYS, "semantic_logits") if key in outputs}
    sizes = {key: (tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__) for key, t in batch.items()}
    if any(not isinstance(t, torch.Tensor) or t.dim() != 4 for t in batch.values()) or \
            len({t.shape[0] for t in batch.values()}) != 1:
        raise DecoderInputError(f"decode_batch expects (B, C, H, W) tensors with one batch size, got {sizes}")
    logits = batch.get("semantic_logits")
    return [
        decode_panoptic(batch["embedding"][b], batch["sigma"][b], batch["sigma_spatial"][b], batch["seed"][b],
                        decode_params["class_means"], decode_params["class_sigma"], classes, cfg, coord_scale,
                        input_stride, semantic_logits=None if logits is None else logits[b],
                        coarse_factor=coarse_factor, exact_max_pixels=exact_max_pixels)
        for b in range(batch["embedding"].shape[0])
    ]


# ----------------------------------------------------------------------------------------
def _check_inputs(embedding, sigma, sigma_spatial, seed, class_means, class_sigma, classes, semantic_logits):
    """Validate shapes; return maps as ``(D,H,W)`` / ``(H,W)`` floats and class parameters on the maps' device."""
    named = {"embedding": embedding, "sigma": sigma, "sigma_spatial": sigma_spatial, "seed": seed,
             "class_means": class_means, "class_sigma": class_sigma}
    if semantic_logits is not None:
        named["semantic_logits"] = semantic_logits
    for name, t in named.items():
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"decode_panoptic: {name} must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise TypeError(f"decode_panoptic: {name} must be floating point, got {t.dtype}")
    if not isinstance(classes, ClassTable):
        raise TypeError(f"decode_panoptic: classes must be a ClassTable, got {type(classes).__name__}")
    shapes = ", ".join(f"{name}={tuple(t.shape)}" for name, t in named.items())
    if embedding.dim() != 3:
        raise DecoderInputError(f"decode_panoptic expects embedding (D, H, W); got {shapes}")
    d, h, w = embedding.shape
    maps = []
    for t in (sigma, sigma_spatial, seed):
        if tuple(t.shape) not in ((1, h, w), (h, w)):
            raise DecoderInputError(f"decode_panoptic expects sigma, sigma_spatial, seed of shape (1, {h}, {w}) or "
                                    f"({h}, {w}) to match embedding; got {shapes}")
        maps.append(t.reshape(h, w))
    k = len(classes)
    if tuple(class_means.shape) != (k, d) or tuple(class_sigma.shape) != (k,):
        raise DecoderInputError(f"decode_panoptic expects class_means ({k}, {d}) and class_sigma ({k},) for "
                                f"{k} classes and D={d}; got {shapes}")
    if semantic_logits is not None and tuple(semantic_logits.shape) != (k, h, w):
        raise DecoderInputError(f"decode_panoptic expects semantic_logits ({k}, {h}, {w}); got {shapes}")
    dtype = embedding.dtype if embedding.dtype in (torch.float32, torch.float64) else torch.float32
    dev = embedding.device

    def prep(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else t.to(device=dev, dtype=dtype)

    return (prep(embedding), *(prep(t) for t in maps), prep(class_means), prep(class_sigma), prep(semantic_logits))


def _check_config(cfg: DecoderConfig, coord_scale: float, input_stride: float) -> None:
    if not isinstance(cfg, DecoderConfig):
        raise TypeError(f"decode_panoptic: cfg must be a DecoderConfig, got {type(cfg).__name__}")
    if cfg.nms_kernel < 1 or cfg.nms_kernel % 2 == 0:
        raise ConfigError(f"decoder.nms_kernel must be odd and >= 1, got {cfg.nms_kernel}")
    if not 1 <= cfg.max_seeds <= LABEL_DIVISOR:
        raise ConfigError(f"decoder.max_seeds must lie in 1..{LABEL_DIVISOR} (instance k < {LABEL_DIVISOR}), "
                          f"got {cfg.max_seeds}")
    if cfg.fast_downsample < 1:
        raise ConfigError(f"decoder.fast_downsample must be >= 1, got {cfg.fast_downsample}")
    if not coord_scale > 0 or not input_stride > 0:
        raise ValueError(f"decode_panoptic: coord_scale and input_stride must be > 0, got {coord_scale}, "
                         f"{input_stride}")


def _empty_result(h: int, w: int, d: int, like: torch.Tensor) -> PanopticResult:
    """Result of an image with no pixels: all maps empty, zero segments."""
    dev = like.device
    long0 = torch.zeros(0, dtype=torch.long, device=dev)
    return PanopticResult(
        panoptic=torch.zeros(h, w, dtype=torch.int32, device=dev),
        semantic=torch.zeros(h, w, dtype=torch.long, device=dev),
        ids=long0, category_ids=long0.clone(), is_thing=torch.zeros(0, dtype=torch.bool, device=dev),
        scores=torch.zeros(0, device=dev), areas=long0.clone(), boxes=torch.zeros(0, 4, dtype=torch.long, device=dev),
        embeddings=torch.zeros(0, d, device=dev),
    )
