"""Evaluate a network on a panoptic data set in memory: forward (optionally with flip test-time augmentation),
decode (§3.5) and accumulate PQ / PQ† / PC / mIoU against the data set's ground truth.

The two halves are separate so the decoder can be re-run many times on one set of network outputs
(``hle tune-decoder``): :func:`infer_outputs` runs the network once, :func:`decode_and_score` decodes and scores.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch

from ..config import DecoderConfig, HLEConfig
from ..decoding import PanopticResult, decode_panoptic, variant_inputs
from ..pipeline import pad_to_multiple
from .pq import Categories, PQStats, accumulate_maps

__all__ = ["CachedOutputs", "flip_average", "infer_outputs", "decode_outputs", "decode_and_score",
           "evaluate_model"]


@dataclass
class CachedOutputs:
    """Network outputs of one image, kept for repeated decoding."""

    index: int
    gt_panoptic: np.ndarray                 # (H, W) int32 Cityscapes convention
    image: np.ndarray | None                # (H, W, 3) uint8, kept only when asked (overlays)
    maps: dict[str, torch.Tensor]           # C x H x W per output name


def flip_average(outputs: dict[str, torch.Tensor], flipped: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Flip test-time augmentation: average the maps of an image and of its mirror image (flipped back).

    The embedding is averaged and renormalised to the unit sphere (it feeds the cosine kernels of eq. 7-9);
    σ, σ_spatial and the seed are averaged. Spatial coordinates are not an input of the network, so the mirror
    image's maps only need flipping back along the width.
    """
    avg = {k: 0.5 * (v + flipped[k].flip(-1)) for k, v in outputs.items()}
    avg["embedding"] = torch.nn.functional.normalize(avg["embedding"], dim=1, eps=1e-8)
    return avg


def _denormalise(image: torch.Tensor, cfg: HLEConfig) -> np.ndarray:
    mean = torch.tensor(cfg.model.mean).view(3, 1, 1)
    std = torch.tensor(cfg.model.std).view(3, 1, 1)
    return ((image.cpu() * std + mean).clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()


@torch.no_grad()
def infer_outputs(model: torch.nn.Module, cfg: HLEConfig, dataset: Sequence, *, flip: bool = False,
                  device: torch.device | str = "cpu", keep_images: bool = False,
                  progress: bool = False) -> Iterator[CachedOutputs]:
    """Run ``model`` over every item of ``dataset`` (items as :class:`hle_core.data.SyntheticDataset` gives them);
    yields :class:`CachedOutputs` on the CPU, one image at a time (whole images: no batching of unequal sizes)."""
    model.eval()
    items: Iterator[int] = iter(range(len(dataset)))
    if progress:
        from tqdm import tqdm

        items = iter(tqdm(range(len(dataset)), desc="predict", unit="img", dynamic_ncols=True))
    for i in items:
        sample = dataset[i]
        image = sample["image"]
        h, w = image.shape[-2:]
        batch = pad_to_multiple(image[None]).to(device)
        if flip:
            batch = torch.cat((batch, pad_to_multiple(image.flip(-1)[None]).to(device)))
        out = model(batch)
        maps = {k: v[:, :, :h, :w].float() for k, v in out.items()}
        if flip:
            maps = flip_average({k: v[:1] for k, v in maps.items()}, {k: v[1:] for k, v in maps.items()})
        yield CachedOutputs(index=int(i), gt_panoptic=sample["panoptic"].numpy(),
                            image=_denormalise(image, cfg) if keep_images else None,
                            maps={k: v[0].cpu() for k, v in maps.items()})


def decode_outputs(cached: CachedOutputs, decode_params: dict[str, torch.Tensor], cfg: HLEConfig,
                   decoder: DecoderConfig | None = None) -> PanopticResult:
    """§3.5 decoding of one cached image with ``decoder`` thresholds (default: ``cfg.decoder``)."""
    maps, params = variant_inputs(cached.maps, decode_params, cfg.loss.split_embedding)
    return decode_panoptic(maps["embedding"], maps["sigma"], maps["sigma_spatial"], maps["seed"],
                           params["class_means"], params["class_sigma"], cfg.classes, decoder or cfg.decoder,
                           cfg.model.coord_scale, semantic_logits=maps.get("semantic_logits"))


def decode_and_score(cached: Iterable[CachedOutputs], decode_params: dict[str, torch.Tensor], cfg: HLEConfig,
                     decoder: DecoderConfig | None = None,
                     on_result: Callable[[CachedOutputs, PanopticResult], None] | None = None) -> PQStats:
    """Decode every cached image (a list, or :func:`infer_outputs` streaming) and accumulate panoptic statistics
    against its ground truth; ``on_result`` sees each image's decoding."""
    stats = PQStats(Categories.from_class_table(cfg.classes))
    for c in cached:
        result = decode_outputs(c, decode_params, cfg, decoder)
        if on_result is not None:
            on_result(c, result)
        accumulate_maps(stats, c.gt_panoptic, result.panoptic.cpu().numpy())
    return stats


def evaluate_model(model: torch.nn.Module, cfg: HLEConfig, dataset: Sequence, *, flip: bool = False,
                   decoder: DecoderConfig | None = None, device: torch.device | str = "cpu",
                   progress: bool = False) -> dict:
    """PQ of ``model`` on ``dataset``: the panopticapi-shaped results dict (``All``/``Things``/``Stuff``,
    ``per_class``, PQ†, PC, mIoU)."""
    net = model.module if hasattr(model, "module") else model
    params = {k: v.to("cpu") for k, v in net.decode_params().items()}
    outputs = infer_outputs(model, cfg, dataset, flip=flip, device=device, progress=progress)
    return decode_and_score(outputs, params, cfg, decoder).results()
