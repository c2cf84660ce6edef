"""Evaluate a network on a panoptic data set in memory through the pipeline's two stages: forward
(:meth:`hle_core.pipeline.Pipeline.infer`, optionally with flip test-time augmentation), decode (§3.5,
:func:`hle_core.pipeline.decode_maps`, the decode stage of :meth:`~hle_core.pipeline.Pipeline.finish`) and accumulate
PQ / PQ† / PC / mIoU against the data set's ground truth.

The two halves are separate so the decoder can be re-run many times on one set of network outputs
(``hle tune-decoder``): :func:`infer_outputs` runs the network once, :func:`decode_and_score` decodes and scores.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch

from ..config import DecoderConfig, HLEConfig
from ..decoding import PanopticResult
from ..pipeline import Pipeline, at_image_resolution, decode_maps, flip_average, resize_nearest
from .pq import Categories, PQStats, accumulate_maps

__all__ = ["CachedOutputs", "flip_average", "evaluation_pipeline", "infer_outputs", "decode_outputs",
           "decode_and_score", "evaluate_model"]


@dataclass
class CachedOutputs:
    """Network outputs of one image, kept for repeated decoding."""

    index: int
    gt_panoptic: np.ndarray                 # (H, W) int32 Cityscapes convention
    image: np.ndarray | None                # (H, W, 3) uint8, kept only when asked (overlays)
    maps: dict[str, torch.Tensor]           # C x H x W per output name, on the device the network ran on


def _denormalise(image: torch.Tensor, cfg: HLEConfig) -> np.ndarray:
    mean = torch.tensor(cfg.model.mean).view(3, 1, 1)
    std = torch.tensor(cfg.model.std).view(3, 1, 1)
    return ((image.cpu() * std + mean).clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()


def evaluation_pipeline(model: torch.nn.Module, cfg: HLEConfig, *, flip: bool = False,
                        device: torch.device | str = "cpu") -> Pipeline:
    """The :class:`~hle_core.pipeline.Pipeline` that evaluates an in-memory network (a torch backend around
    ``model`` on ``device``, decoding with ``cfg``) on whole images at their own size; ``flip``: flip TTA."""
    from ..runtime.torch_backend import TorchBackend

    net = model.module if hasattr(model, "module") else model
    return Pipeline(TorchBackend(net, device=device, config=cfg), decoder=cfg.decoder, flip=flip)


def infer_outputs(model: torch.nn.Module, cfg: HLEConfig, dataset: Sequence, *, flip: bool = False,
                  device: torch.device | str = "cpu", keep_images: bool = False,
                  progress: bool = False) -> Iterator[CachedOutputs]:
    """Run ``model`` over every item of ``dataset`` (items as :class:`hle_core.data.SyntheticDataset` gives them)
    with :meth:`Pipeline.infer <hle_core.pipeline.Pipeline.infer>`; yields :class:`CachedOutputs` (maps of the
    image region, on ``device``), one image at a time (whole images: no batching of unequal sizes)."""
    pipe = evaluation_pipeline(model, cfg, flip=flip, device=device)
    items: Iterable[int] = range(len(dataset))
    if progress:
        from tqdm import tqdm

        items = tqdm(items, desc="predict", unit="img", dynamic_ncols=True)
    for i in items:
        sample = dataset[i]
        (frame,), _ = pipe.infer([sample["image"]])
        yield CachedOutputs(index=int(i), gt_panoptic=sample["panoptic"].numpy(),
                            image=_denormalise(sample["image"], cfg) if keep_images else None, maps=frame.maps())


def decode_outputs(cached: CachedOutputs, decode_params: dict[str, torch.Tensor], cfg: HLEConfig,
                   decoder: DecoderConfig | None = None) -> PanopticResult:
    """§3.5 decoding of one cached image with ``decoder`` thresholds (default: ``cfg.decoder``), where its maps
    are: the pipeline's decode stage (:func:`hle_core.pipeline.decode_maps`), brought to the image's resolution
    (:func:`hle_core.pipeline.at_image_resolution`: the maps are larger or smaller with a ``model.test_scale``)."""
    result = decode_maps(cached.maps, decode_params, cfg, decoder)
    image_size = tuple(cached.gt_panoptic.shape[-2:])
    if tuple(result.panoptic.shape) != image_size:
        result.panoptic, result.areas, result.boxes = at_image_resolution(result, image_size)
        result.semantic = resize_nearest(result.semantic.to(torch.int32), image_size).to(result.semantic.dtype)
    return result


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
    params = dict(net.decode_params())
    outputs = infer_outputs(model, cfg, dataset, flip=flip, device=device, progress=progress)
    return decode_and_score(outputs, params, cfg, decoder).results()
