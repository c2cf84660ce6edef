"""One pipeline for every consumer: image → preprocess → backend → decode (§3.5) → track (§4.5).

The ROS node, the bag evaluator and the ``hle`` CLI all call :meth:`Pipeline.process` (or its two stages
:meth:`Pipeline.infer` and :meth:`Pipeline.finish`; :meth:`Pipeline.process_batch` for several cameras); only
the backend (torch, onnxruntime, TensorRT) differs. Evaluation on in-memory data sets (``hle evaluate``,
``hle tune-decoder``, training validation; :mod:`hle_core.evaluation.predict`) runs the same two stages on the
data set's normalised images, with optional flip test-time augmentation (``flip``). Decoding runs on the backend's
device through :func:`decode_maps` (the one call of :func:`hle_core.decoding.decode_batch`): no host round trip
between inference and decoding; results come back to the host once, at the end.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .config import RESIZE_MODES, SIZE_MULTIPLE, DecoderConfig, HLEConfig, scaled_size
from .decoding import PanopticResult, decode_batch, decoder_inputs
from .runtime.base import Backend

__all__ = ["Pipeline", "FrameResult", "InferredFrame", "InputImageError",
           "pad_to_multiple", "pad_to_size", "letterbox_size", "flip_average", "decode_maps", "at_image_resolution",
           "resized_areas_and_boxes",
           "RESIZE_MODES", "SIZE_MULTIPLE"]


def pad_to_multiple(x: torch.Tensor, multiple: int = SIZE_MULTIPLE) -> torch.Tensor:
    """Zero-pad the last two axes of ``x`` at the bottom / right up to multiples of ``multiple``."""
    ph, pw = (-x.shape[-2]) % multiple, (-x.shape[-1]) % multiple
    return F.pad(x, (0, pw, 0, ph)) if ph or pw else x


def pad_to_size(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Zero-pad the last two axes of ``x`` at the bottom / right up to ``size`` ``(H, W)`` (never crops)."""
    ph, pw = size[0] - x.shape[-2], size[1] - x.shape[-1]
    return F.pad(x, (0, pw, 0, ph)) if ph or pw else x


def letterbox_size(image_size: tuple[int, int], input_size: tuple[int, int]) -> tuple[int, int]:
    """``(h, w)`` of an ``image_size`` ``(H, W)`` image scaled by one factor s = min(H_in / H, W_in / W) to fit
    inside ``input_size`` ``(H_in, W_in)``: the binding axis gets exactly its input size, the other
    ``round(side · s)`` (at least 1). E.g. 480 x 640 into 256 x 512 → 256 x 341; 720 x 1280 → 256 x 455."""
    (H, W), (h_in, w_in) = image_size, input_size
    if h_in * W <= w_in * H:                                              # height binds (exact integer test)
        return h_in, min(w_in, max(1, (2 * W * h_in + H) // (2 * H)))
    return min(h_in, max(1, (2 * H * w_in + W) // (2 * W))), w_in


def flip_average(outputs: dict[str, torch.Tensor], flipped: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Flip test-time augmentation: average the maps of an image and of its mirror image (flipped back).

    The embedding is averaged and renormalised to the unit sphere (it feeds the cosine kernels of eq. 7-9);
    σ, σ_spatial and the seed are averaged. Spatial coordinates are not an input of the network, so the mirror
    image's maps only need flipping back along the width.
    """
    avg = {k: 0.5 * (v + flipped[k].flip(-1)) for k, v in outputs.items()}
    avg["embedding"] = torch.nn.functional.normalize(avg["embedding"], dim=1, eps=1e-8)
    return avg


def decode_maps(maps: dict[str, torch.Tensor], decode_params: dict[str, torch.Tensor], config: HLEConfig,
                decoder: DecoderConfig | None = None) -> PanopticResult:
    """§3.5 decoding of one image's ``C x h x w`` network maps (the image region only, no padding) with
    ``decoder`` (default ``config.decoder``), on the maps' device: the pipeline's decode stage, shared by
    :meth:`Pipeline.finish` and the evaluation of cached outputs (:mod:`hle_core.evaluation.predict`)."""
    return decode_batch({k: v[None] for k, v in maps.items()}, decode_params, config.classes,
                        decoder if decoder is not None else config.decoder, config.model.coord_scale,
                        split_embedding=config.loss.split_embedding)[0]


class InputImageError(ValueError):
    """The image handed to the pipeline is not an (H, W, 3) / (H, W) uint8 array of a usable size."""


@dataclass
class FrameResult:
    """Everything the pipeline knows about one frame, on the host (numpy).

    Per-segment arrays (things and stuff) share their first axis ``S``.
    """

    panoptic: np.ndarray                 # (H, W) int32, Cityscapes convention, at the image's own resolution
    ids: np.ndarray                      # (S,) int64 panoptic id of each segment
    category_ids: np.ndarray             # (S,) int64 dataset category id
    is_thing: np.ndarray                 # (S,) bool
    scores: np.ndarray                   # (S,) float32: seed value (things) / mean ψ (stuff)
    areas: np.ndarray                    # (S,) int64 pixels at the image's resolution
    boxes: np.ndarray                    # (S, 4) int64 x0, y0, x1, y1 inclusive, image pixels
    embeddings: np.ndarray               # (S, D) float32 unit-norm mean embeddings
    track_ids: np.ndarray                # (S,) int64, -1 for stuff / unconfirmed / no tracker
    timings_ms: dict[str, float] = field(default_factory=dict)
    embedding: torch.Tensor | None = None  # (D, h, w) network-resolution map, only with keep_embedding

    @property
    def num_segments(self) -> int:
        return int(self.ids.shape[0])


@dataclass
class InferredFrame:
    """One image between the pipeline's two stages (:meth:`Pipeline.infer` → :meth:`Pipeline.finish`): its network
    outputs (``(1, C, H', W')`` maps on the backend device), the ``(h, w)`` region of them that holds the image, and
    the image's own ``(H, W)``."""

    outputs: dict[str, torch.Tensor]
    valid: tuple[int, int]
    image_size: tuple[int, int]

    def maps(self) -> dict[str, torch.Tensor]:
        """``C x h x w`` maps of the image region (what the decoder sees: never padding)."""
        h, w = self.valid
        return {k: v[0, :, :h, :w] for k, v in self.outputs.items()}

    def to(self, device: torch.device | str) -> "InferredFrame":
        """The same frame with its outputs on ``device`` (e.g. the host, to cache many frames)."""
        return InferredFrame({k: v.to(device) for k, v in self.outputs.items()}, self.valid, self.image_size)


class Pipeline:
    """preprocess → backend → decode → track.

    Args:
        backend: a :class:`~hle_core.runtime.base.Backend`.
        input_size: ``(H, W)`` the fixed network input (multiples of 32), or None to run at the image's own
            resolution times the model's test scale (``hle.model.test_scale``, 1 unless its release set one),
            padded to a multiple of 32 — or, for a model that accepts a single size (a static ONNX
            graph or engine, ``backend.static_input_size()``), at that size; another size is refused (ValueError).
        resize: how an image is fitted to ``input_size`` (ignored without it), one of :data:`RESIZE_MODES`:
            ``letterbox`` (default) scales it by one factor to fit inside and pads bottom / right with the mean
            colour; the network output is cropped to the image region before decoding, so padding never
            yields segments. ``stretch`` resizes each axis to ``input_size`` (aspect ratio lost). Either way the
            network always sees exactly ``input_size`` (what a static ONNX / TensorRT engine needs) and the
            result is mapped back to the image's own resolution.
        decoder: decoding thresholds; defaults to the model's own (``backend.config.decoder``).
        tracker: a :class:`~hle_core.tracking.TrackerConfig` to track things across frames, or None.
        flip: flip test-time augmentation: the network also runs on each image's mirror image (in the same
            backend call) and :func:`flip_average` of the two (image region only) is decoded (``hle evaluate
            --flip``).
    """

    def __init__(self, backend: Backend, input_size: tuple[int, int] | None = None,
                 decoder: DecoderConfig | None = None, tracker=None, resize: str = "letterbox",
                 flip: bool = False) -> None:
        if resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {list(RESIZE_MODES)}, got {resize!r}")
        static = backend.static_input_size() if hasattr(backend, "static_input_size") else None
        if static is not None:              # a fixed-size model (static ONNX / engine): fit every image to it
            if input_size is None:
                input_size = static
            elif tuple(int(v) for v in input_size) != tuple(static):
                raise ValueError(f"the model takes only {static[0]}x{static[1]} inputs ({backend.describe()}), but "
                                 f"input_size {tuple(input_size)} was asked for; use {static[0]}x{static[1]}, or none "
                                 f"(0 x 0) to fit images to the model")
        if input_size is not None:
            h, w = (int(v) for v in input_size)
            if h <= 0 or w <= 0 or h % SIZE_MULTIPLE or w % SIZE_MULTIPLE:
                raise ValueError(f"input_size must be positive multiples of {SIZE_MULTIPLE}, got {input_size}")
            input_size = (h, w)
        self.backend = backend
        self.config = backend.config
        self.classes = backend.config.classes
        self.embedding_dim = backend.config.model.embedding_dim
        self.input_size = input_size
        self.resize = resize
        self.flip = bool(flip)
        self.decoder = decoder if decoder is not None else backend.config.decoder
        #: images run at their own size (no ``input_size``) are resized by this factor first (``hle.model``)
        self.test_scale = float(backend.config.model.test_scale) if input_size is None else 1.0
        self.device = backend.device
        m = backend.config.model
        self._mean = torch.tensor(m.mean, device=self.device).view(1, 3, 1, 1) * 255.0
        self._inv_std = 1.0 / (torch.tensor(m.std, device=self.device).view(1, 3, 1, 1) * 255.0)
        self._batch_ok = True              # False once the backend refused a batch of several images
        self.tracker = None
        if tracker is not None:
            from .tracking import EmbeddingTracker

            self.tracker = EmbeddingTracker(tracker)

    @property
    def fit(self) -> tuple[int, int] | float:
        """How an image is fitted to the network (:data:`hle_core.image_codec.InputFit`, for the ``max_pixels``
        checks made before an image is touched): the fixed ``input_size``, else the test scale."""
        return self.input_size if self.input_size is not None else self.test_scale

    # --- stages ----------------------------------------------------------------------------------
    def preprocess(self, image: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """uint8 ``(H, W, 3)`` RGB (or ``(H, W)`` mono) → normalised ``(1, 3, H', W')`` on the backend device.
        A float ``(3, H, W)`` tensor is taken as already normalised (a data set item's ``image``).

        ``(H', W')`` is ``input_size`` when set, else ``(H, W)`` times the model's ``test_scale`` (the network's test
        resolution, ``hle.model.test_scale``; 1 by default), padded to multiples of 32. Returns the batch
        and the ``(h, w)`` top-left region of the network input that holds the (resized) image; the rest is
        padding (zeros = the mean colour).
        """
        if isinstance(image, torch.Tensor) and image.is_floating_point() and image.dim() == 3 and image.shape[0] == 3:
            x = image[None].to(self.device)                                # a data set's normalised image
        else:
            x = self._normalised(image)
        if self.input_size is None:                    # the image's own size, times the model's test scale
            valid = scaled_size((x.shape[-2], x.shape[-1]), self.test_scale)
            return pad_to_multiple(resize_bilinear(x, valid)).to(self.backend.dtype), valid
        image_size = (x.shape[-2], x.shape[-1])
        valid = letterbox_size(image_size, self.input_size) if self.resize == "letterbox" else self.input_size
        x = pad_to_size(resize_bilinear(x, valid), self.input_size)
        return x.to(self.backend.dtype), valid

    def _normalised(self, image: np.ndarray) -> torch.Tensor:
        """Checked uint8 image → ``(1, 3, H, W)`` float32 on the device, mean-subtracted and std-divided."""
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
            raise InputImageError(f"expected a uint8 numpy image, got {type(image).__name__} "
                                  f"{getattr(image, 'dtype', '')}")
        if image.ndim == 2:
            image = image[..., None]
        if image.ndim != 3 or image.shape[2] not in (1, 3) or image.shape[0] < 1 or image.shape[1] < 1:
            raise InputImageError(f"expected an (H, W, 3) or (H, W) image, got shape {image.shape}")
        if not image.flags.writeable:   # e.g. a view of a message buffer: torch needs a writable array
            image = image.copy()
        x = torch.from_numpy(np.ascontiguousarray(image)).to(self.device, non_blocking=True)
        x = x.permute(2, 0, 1).unsqueeze(0).float()                    # 1 x C x H x W
        if x.shape[1] == 1:
            x = x.expand(1, 3, *x.shape[2:])
        return (x - self._mean) * self._inv_std

    def infer(self, images: list[np.ndarray | torch.Tensor]) -> tuple[list[InferredFrame], dict[str, float]]:
        """Stage 1 of :meth:`process`: preprocess and run the network on one or several images (e.g. one per
        camera), one backend call per network input shape (a fixed ``input_size`` makes them one batch).

        Returns one :class:`InferredFrame` per image, in order, and the stage's shared timings
        (``preprocess``, ``infer`` in ms). A backend that refuses a batch of several (a static batch-1 ONNX graph
        or engine) is then called per image, from then on. With ``flip`` each image's mirror image runs in the
        same call and the frame holds the :func:`flip_average` of the image region.
        """
        sync = self.device.type == "cuda"
        t0 = time.perf_counter()
        prepared = [self.preprocess(image) for image in images]
        if self.flip:                # mirror images after the originals: image i's mirror is entry n + i
            prepared += [self.preprocess(_mirror(image)) for image in images]
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, (x, _) in enumerate(prepared):
            groups.setdefault(tuple(x.shape), []).append(i)
        if sync:
            torch.cuda.synchronize(self.device)
        t1 = time.perf_counter()
        outs: list[dict[str, torch.Tensor]] = [{} for _ in prepared]
        for idx in groups.values():
            outputs = None
            if len(idx) > 1 and self._batch_ok:
                try:
                    outputs = self.backend.infer(torch.cat([prepared[i][0] for i in idx]))
                except ValueError:                       # e.g. a static batch-1 graph: per image from now on
                    self._batch_ok = False
            if outputs is None:
                for i in idx:
                    outs[i] = self.backend.infer(prepared[i][0])
            else:
                for j, i in enumerate(idx):
                    outs[i] = {k: v[j:j + 1] for k, v in outputs.items()}
        frames = [InferredFrame(outs[i], prepared[i][1], _image_size(image)) for i, image in enumerate(images)]
        if self.flip:
            n = len(images)
            for i, frame in enumerate(frames):
                h, w = frame.valid
                mirrored = InferredFrame(outs[n + i], prepared[n + i][1], frame.image_size)
                frame.outputs = flip_average({k: v[:, :, :h, :w] for k, v in frame.outputs.items()},
                                             {k: v[:, :, :h, :w] for k, v in mirrored.outputs.items()})
        if sync:
            torch.cuda.synchronize(self.device)
        t2 = time.perf_counter()
        return frames, {"preprocess": (t1 - t0) * 1e3, "infer": (t2 - t1) * 1e3}

    def finish(self, frame: InferredFrame, keep_embedding: bool = False, tracker: Any = None) -> FrameResult:
        """Stage 2 of :meth:`process`: decode (§3.5, :func:`decode_maps`) one image's network outputs, bring the
        segments back to the image's resolution and to the host, and track them with ``tracker`` (an
        :class:`~hle_core.tracking.EmbeddingTracker`, or None). ``timings_ms`` holds ``decode``, ``transfer``
        and ``track``."""
        sync = self.device.type == "cuda"
        t0 = time.perf_counter()
        maps = frame.maps()                                              # C x h x w: the decoder never sees padding
        result = decode_maps(maps, self.backend.decode_params, self.config, self.decoder)
        panoptic, areas, boxes = at_image_resolution(result, frame.image_size)
        if sync:
            torch.cuda.synchronize(self.device)
        t1 = time.perf_counter()
        fr = FrameResult(
            panoptic=panoptic.cpu().numpy(),
            ids=result.ids.cpu().numpy().astype(np.int64),
            category_ids=result.category_ids.cpu().numpy().astype(np.int64),
            is_thing=result.is_thing.cpu().numpy().astype(bool),
            scores=result.scores.float().cpu().numpy(),
            areas=areas.cpu().numpy().astype(np.int64),
            boxes=boxes.cpu().numpy().astype(np.int64).reshape(-1, 4),
            embeddings=result.embeddings.float().cpu().numpy(),
            track_ids=np.full(result.ids.shape[0], -1, np.int64),
            embedding=(decoder_inputs(maps, self.backend.decode_params, self.config.loss.split_embedding)[0]
                       ["embedding"] if keep_embedding else None),           # the embedding Φ saw
        )
        t2 = time.perf_counter()
        if tracker is not None:
            from .tracking import detections_from_segments

            dets = detections_from_segments(fr.ids, fr.category_ids, fr.is_thing, fr.scores, fr.boxes,
                                            fr.embeddings)
            fr.track_ids = np.asarray(tracker.update(dets), dtype=np.int64)
        t3 = time.perf_counter()
        fr.timings_ms = {"decode": (t1 - t0) * 1e3, "transfer": (t2 - t1) * 1e3, "track": (t3 - t2) * 1e3}
        return fr

    def process(self, image: np.ndarray, keep_embedding: bool = False) -> FrameResult:
        """Run the whole pipeline on one RGB image: :meth:`infer`, then :meth:`finish` with this pipeline's
        tracker (the single stream's)."""
        t0 = time.perf_counter()
        (frame,), shared = self.infer([image])
        fr = self.finish(frame, keep_embedding, self.tracker)
        fr.timings_ms = {**shared, **fr.timings_ms, "total": (time.perf_counter() - t0) * 1e3}
        return fr

    def process_batch(self, images: list[np.ndarray], keep_embedding: bool = False,
                      trackers: list | None = None) -> list[FrameResult]:
        """Several images (e.g. one per camera): one :meth:`infer` call (one backend call per input shape), then
        :meth:`finish` per image with its own tracker.

        Args:
            images: RGB / mono uint8 images, as for :meth:`process`.
            keep_embedding: keep each image's embedding map (``FrameResult.embedding``).
            trackers: one :class:`~hle_core.tracking.EmbeddingTracker` (or None) per image, e.g. a tracker per
                camera; None: no tracking (``self.tracker`` belongs to :meth:`process`'s single stream).
        Returns:
            one FrameResult per image, in order; ``timings_ms`` holds the batch's shared preprocess / infer
            times and the image's own decode / transfer / track times.
        """
        if trackers is not None and len(trackers) != len(images):
            raise ValueError(f"{len(trackers)} trackers for {len(images)} images")
        t0 = time.perf_counter()
        frames, shared = self.infer(images)
        results = []
        for i, frame in enumerate(frames):
            fr = self.finish(frame, keep_embedding, trackers[i] if trackers is not None else None)
            fr.timings_ms = {**shared, **fr.timings_ms, "total": (time.perf_counter() - t0) * 1e3}
            results.append(fr)
        return results

    def reset_tracks(self) -> None:
        """Forget all tracks (a new sequence starts)."""
        if self.tracker is not None:
            self.tracker.reset()

    def close(self) -> None:
        self.backend.close()


def _mirror(image: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """The mirror image (flipped along the width) of an ``(H, W[, C])`` array or a ``(3, H, W)`` tensor."""
    return image.flip(-1) if isinstance(image, torch.Tensor) else image[:, ::-1]


def _image_size(image: np.ndarray | torch.Tensor) -> tuple[int, int]:
    """``(H, W)`` of an ``(H, W[, C])`` array or a ``(3, H, W)`` tensor."""
    return tuple(image.shape[-2:]) if isinstance(image, torch.Tensor) else tuple(image.shape[:2])


def resize_bilinear(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(B, C, H, W)`` → ``(B, C, *size)`` bilinear, antialiased when shrinking; unchanged at the same size."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


def resize_nearest(labels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(h, w)`` int32 label map → ``(*size)`` by nearest neighbour (labels are never blended)."""
    return F.interpolate(labels[None, None].float(), size=size, mode="nearest")[0, 0].to(torch.int32)


def at_image_resolution(result: PanopticResult, image_size: tuple[int, int]
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(panoptic, areas, boxes)`` of a decoding brought to the image's ``(H, W)`` (it was decoded at the
    network's resolution of the image: letterboxed, stretched or ``test_scale``-d): nearest-neighbour labels,
    areas and boxes counted again at that resolution. Unchanged when the sizes agree."""
    if tuple(result.panoptic.shape) == tuple(image_size):
        return result.panoptic, result.areas, result.boxes
    panoptic = resize_nearest(result.panoptic, image_size)
    areas, boxes = resized_areas_and_boxes(result.panoptic, result.ids, image_size)
    return panoptic, areas, boxes


def nearest_source_index(src: int, dst: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """``(dst,)`` int64: the source index :func:`resize_nearest` reads for each output index along one axis (its
    own kernel, run on an index ramp, so the two agree exactly)."""
    ramp = torch.arange(src, device=device, dtype=torch.float32).view(1, 1, src, 1)
    return F.interpolate(ramp, size=(dst, 1), mode="nearest").view(dst).to(torch.int64)


def resized_areas_and_boxes(labels: torch.Tensor, ids: torch.Tensor, size: tuple[int, int]
                            ) -> tuple[torch.Tensor, torch.Tensor]:
    """What :func:`segment_areas_and_boxes` gives on ``resize_nearest(labels, size)``, counted on the small
    ``(h, w)`` map: a nearest-neighbour resize repeats source row ``y`` ``r_y`` times (``r_y`` may be 0 when
    shrinking) in one run of output rows starting at ``first_y``, and likewise for columns, so a segment's area
    is ``Σ r_y · c_x`` over its source pixels and its box runs from the first output row / column of its first
    repeated source row / column to the last one of its last. One pass over ``h · w`` pixels instead of the
    ``H · W`` of the resized map; exact (tested against the resized map)."""
    h, w = labels.shape
    H, W = int(size[0]), int(size[1])
    s = ids.shape[0]
    if s == 0:
        return ids.new_zeros(0), ids.new_zeros(0, 4)
    dev = labels.device
    rows = torch.bincount(nearest_source_index(h, H, dev), minlength=h)     # r_y: output rows per source row
    cols = torch.bincount(nearest_source_index(w, W, dev), minlength=w)     # c_x
    last_row, last_col = rows.cumsum(0) - 1, cols.cumsum(0) - 1            # runs are contiguous and in order
    first_row, first_col = last_row - rows + 1, last_col - cols + 1
    sorted_ids, order = torch.sort(ids.to(torch.int64))
    flat = labels.reshape(-1).to(torch.int64)
    pos = torch.searchsorted(sorted_ids, flat).clamp_max(s - 1)
    weight = (rows[:, None] * cols[None, :]).reshape(-1)
    hit = (sorted_ids[pos] == flat) & (weight > 0)                          # pixels that survive the resize
    seg = order[pos[hit]]
    yy = torch.arange(h, device=dev).repeat_interleave(w)[hit]
    xx = torch.arange(w, device=dev).repeat(h)[hit]
    areas = torch.zeros(s, dtype=torch.int64, device=dev).index_add_(0, seg, weight[hit])
    big, neg = torch.full((s,), H + W, device=dev), torch.full((s,), -1, device=dev)
    x0 = big.scatter_reduce(0, seg, first_col[xx], "amin")
    y0 = big.scatter_reduce(0, seg, first_row[yy], "amin")
    x1 = neg.scatter_reduce(0, seg, last_col[xx], "amax")
    y1 = neg.scatter_reduce(0, seg, last_row[yy], "amax")
    boxes = torch.stack((x0, y0, x1, y1), 1)
    boxes[areas == 0] = torch.tensor([0, 0, -1, -1], device=dev)
    return areas, boxes


def segment_areas_and_boxes(panoptic: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Area and inclusive box ``x0, y0, x1, y1`` of each id of ``ids`` in an ``(H, W)`` panoptic map.

    Vectorised: one ``searchsorted`` + ``scatter_reduce`` pass over the pixels. Ids absent from the map get
    area 0 and box ``(0, 0, -1, -1)``.
    """
    H, W = panoptic.shape
    s = ids.shape[0]
    if s == 0:
        return ids.new_zeros(0), ids.new_zeros(0, 4)
    sorted_ids, order = torch.sort(ids.to(torch.int64))
    flat = panoptic.reshape(-1).to(torch.int64)
    pos = torch.searchsorted(sorted_ids, flat).clamp_max(s - 1)
    hit = sorted_ids[pos] == flat
    seg = order[pos[hit]]                                                # segment index of every hit pixel
    yy = torch.arange(H, device=panoptic.device).repeat_interleave(W)[hit]
    xx = torch.arange(W, device=panoptic.device).repeat(H)[hit]
    areas = torch.bincount(seg, minlength=s)
    big, neg = torch.full((s,), H + W, device=ids.device), torch.full((s,), -1, device=ids.device)
    x0 = big.scatter_reduce(0, seg, xx, "amin")
    y0 = big.scatter_reduce(0, seg, yy, "amin")
    x1 = neg.scatter_reduce(0, seg, xx, "amax")
    y1 = neg.scatter_reduce(0, seg, yy, "amax")
    boxes = torch.stack((x0, y0, x1, y1), 1)
    boxes[areas == 0] = torch.tensor([0, 0, -1, -1], device=ids.device)
    return areas, boxes
