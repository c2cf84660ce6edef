"""Per-frame cost of the panoptic node *beyond the network*: message conversion, panoptic decoding, tracking,
message building and serialisation, and the optional visual topics, at 1024 x 2048.

Runs in-process with a **fake backend** that returns a fixed, constructed network output (so the figure excludes
inference by design): three stuff bands whose embeddings equal their class means, ``--instances`` rectangular
thing instances with their own embeddings near a thing class mean, seed bumps at the instance centres and
constant σ maps. Everything after the backend is the node's real code path (hle_ros.conversions,
hle_core.pipeline.Pipeline with the tracker, rclpy.serialization of the messages the node publishes);
DDS transport itself is not included (see bench/soak_node.py for the end-to-end path). Example::

    OMP_NUM_THREADS=2 .venv/bin/python bench/bench_node.py --frames 20
    .venv/bin/python bench/bench_node.py --device cuda --frames 50 --fast-downsample 2
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hle_core.config import HLEConfig
from hle_core.pipeline import Pipeline
from hle_core.runtime.base import Backend
from hle_core.tracking import TrackerConfig


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--height", type=int, default=1024, help="image height in pixels")
    p.add_argument("--width", type=int, default=2048, help="image width in pixels")
    p.add_argument("--instances", type=int, default=20, help="thing instances in the constructed output")
    p.add_argument("--frames", type=int, default=20, help="timed frames")
    p.add_argument("--warmup", type=int, default=2, help="untimed frames first")
    p.add_argument("--device", default="cpu", help="torch device of the fake backend and the decoder")
    p.add_argument("--encoding", default="bgr8", choices=["rgb8", "bgr8", "rgba8", "bgra8", "mono8"],
                   help="input image encoding")
    p.add_argument("--fast-downsample", type=int, default=1, help="decoder.fast_downsample (fast decode when > 1)")
    p.add_argument("--no-tracking", action="store_true", help="run without the tracker")
    p.add_argument("--seed", type=int, default=0, help="random seed of the constructed output")
    return p.parse_args(argv)


def constructed_outputs(cfg: HLEConfig, height: int, width: int, n_instances: int, device: torch.device,
                        seed: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """A fixed network output ``(1, C, H, W)`` per key and matching decode params, laid out as described above.

    Class means are the first K standard basis vectors of R^D (needs D > K); instance embeddings add a random
    component in the remaining D - K dimensions, so instances of one class differ but keep their class.
    """
    gen = torch.Generator().manual_seed(seed)
    classes = cfg.classes
    k, d = len(classes), cfg.model.embedding_dim
    if d <= k:
        raise ValueError(f"constructed output needs embedding_dim > number of classes, got D={d}, K={k}")
    means = torch.eye(k, d)                                              # K x D unit rows
    stuff, things = classes.stuff_indices, classes.thing_indices
    label = torch.empty(height, width, dtype=torch.long)                 # class index per pixel
    bands = torch.linspace(0, height, len(stuff[:3]) + 1).long()
    for i, c in enumerate(stuff[:3]):
        label[bands[i]:bands[i + 1]] = c
    emb = means[label].permute(2, 0, 1).clone()                          # D x H x W
    seedmap = torch.full((height, width), 0.02)
    yy, xx = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    size = max(8, min(height, width) // 8)
    for n in range(n_instances):
        c = things[n % len(things)]
        y0 = int(torch.randint(0, height - size, (1,), generator=gen))
        x0 = int(torch.randint(0, width - size, (1,), generator=gen))
        e = means[c].clone()
        e[k:] = 0.6 * F.normalize(torch.randn(d - k, generator=gen), dim=0)
        emb[:, y0:y0 + size, x0:x0 + size] = F.normalize(e, dim=0)[:, None, None]
        cy, cx = y0 + size / 2, x0 + size / 2
        bump = 0.95 * torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (size / 6) ** 2))
        inside = (yy >= y0) & (yy < y0 + size) & (xx >= x0) & (xx < x0 + size)
        seedmap = torch.where(inside, torch.maximum(bump, torch.full_like(bump, 0.02)), seedmap)
    m = cfg.model
    out = {
        "embedding": emb[None],
        "sigma": torch.full((1, 1, height, width), m.sigma_init),
        "sigma_spatial": torch.full((1, 1, height, width), m.sigma_spatial_init),
        "seed": seedmap[None, None],
    }
    params = {"class_means": means, "class_sigma": torch.full((k,), 0.3)}
    return ({key: v.to(device) for key, v in out.items()}, {key: v.to(device) for key, v in params.items()})


class FixedOutputBackend(Backend):
    """A backend whose ``infer`` returns the same constructed output for every batch (no network)."""

    name = "fixed-output"

    def __init__(self, cfg: HLEConfig, outputs: dict[str, torch.Tensor], decode_params: dict[str, torch.Tensor],
                 device: torch.device) -> None:
        self.config, self.device, self.dtype = cfg, device, torch.float32
        self.decode_params, self._outputs = decode_params, outputs

    def infer(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        h, w = self._outputs["seed"].shape[-2:]
        if tuple(batch.shape[-2:]) != (h, w):
            raise ValueError(f"fixed output is {h}x{w}, batch is {tuple(batch.shape[-2:])}")
        return self._outputs


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import cv2
    from rclpy.serialization import serialize_message

    from hle_core.visualize import embedding_to_rgb, overlay
    from hle_ros.conversions import (array_to_image, as_rgb, build_detections_msg, build_panoptic_msg, image_to_rgb,
                                     labels_to_image)

    device = torch.device(args.device)
    cfg = HLEConfig()
    outputs, params = constructed_outputs(cfg, args.height, args.width, args.instances, device, args.seed)
    backend = FixedOutputBackend(cfg, outputs, params, device)
    decoder = dataclasses.replace(cfg.decoder, fast_downsample=args.fast_downsample)
    pipe = Pipeline(backend, decoder=decoder, tracker=None if args.no_tracking else TrackerConfig(min_hits=1))
    rgb = np.random.default_rng(args.seed).integers(0, 256, (args.height, args.width, 3), dtype=np.uint8)
    pixels = {"rgb8": rgb, "bgr8": rgb[..., ::-1], "mono8": rgb[..., 0],
              "rgba8": np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)]),
              "bgra8": np.dstack([rgb[..., ::-1], np.full(rgb.shape[:2], 255, np.uint8)])}[args.encoding]
    msg_in = array_to_image(np.ascontiguousarray(pixels), args.encoding)
    jpeg = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]))[1].tobytes()

    stages: dict[str, list[float]] = {}

    def timed(name: str, fn, *a, **kw):
        t0 = time.perf_counter()
        out = fn(*a, **kw)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        stages.setdefault(name, []).append((time.perf_counter() - t0) * 1e3)
        return out

    segments = []
    for i in range(args.warmup + args.frames):
        if i == args.warmup:
            stages.clear()
        image = timed("convert: Image msg -> RGB view", image_to_rgb, msg_in, 1 << 31)
        timed("(compressed input: cv2.imdecode JPEG)", cv2.imdecode, np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        res = timed("pipeline.process (fake backend)", pipe.process, image, keep_embedding=True)
        for key in ("preprocess", "infer", "decode", "transfer", "track"):
            stages.setdefault(f"  pipeline: {key}", []).append(res.timings_ms[key])
        labels = timed("labels -> 32SC1 Image", labels_to_image, res.panoptic, msg_in.header)
        pan = timed("build PanopticSegmentation", build_panoptic_msg, msg_in.header, res, pipe.classes,
                    pipe.embedding_dim, backend.name, 0.0, labels)
        timed("serialize PanopticSegmentation", serialize_message, pan)
        dets = timed("build Detection2DArray", lambda: build_detections_msg(msg_in.header, res))
        timed("serialize Detection2DArray", serialize_message, dets)
        ov = timed("(~/overlay: overlay + rgb8 Image)",
                   lambda: array_to_image(overlay(as_rgb(image), res.panoptic, pipe.classes), "rgb8"))
        timed("(~/embedding: PCA + rgb8 Image)",
              lambda: array_to_image(embedding_to_rgb(res.embedding, "pca"), "rgb8"))
        timed("(serialize an rgb8 Image)", serialize_message, ov)
        segments.append(res.num_segments)

    def row(name: str, v: list[float]) -> str:
        return f"{name:42s} {statistics.mean(v):9.2f} {statistics.median(v):9.2f} {max(v):9.2f}"

    print(f"node overhead beyond the backend, {args.height}x{args.width} {args.encoding}, device {device}, "
          f"fast_downsample {args.fast_downsample}, tracking {'off' if args.no_tracking else 'on'}, "
          f"{args.frames} frames; segments/frame {statistics.mean(segments):.1f} "
          f"(constructed: {args.instances} instances + 3 stuff); torch threads {torch.get_num_threads()}")
    print(f"{'stage [ms]':42s} {'mean':>9s} {'median':>9s} {'max':>9s}")
    for name, v in stages.items():
        print(row(name, v))
    core = ["convert: Image msg -> RGB view", "pipeline.process (fake backend)", "labels -> 32SC1 Image",
            "build PanopticSegmentation", "serialize PanopticSegmentation"]
    detections = [sum(stages[n][i] for n in ("build Detection2DArray", "serialize Detection2DArray"))
                  for i in range(args.frames)]
    per_frame = [sum(stages[n][i] for n in core) for i in range(args.frames)]
    visual = [sum(stages[n][i] for n in ("(~/overlay: overlay + rgb8 Image)", "(~/embedding: PCA + rgb8 Image)",
                                         "(serialize an rgb8 Image)")) for i in range(args.frames)]
    print(row("TOTAL ~/panoptic only (raw Image input)", per_frame))
    print(row("TOTAL ~/panoptic + ~/detections", [a + b for a, b in zip(per_frame, detections)]))
    print(row("TOTAL + ~/overlay + ~/embedding", [a + b for a, b in zip(per_frame, visual)]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
