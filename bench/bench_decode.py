"""Time panoptic decoding (paper §3.5, full and fast) against the network forward pass, on CPU.

The paper (§4.2) reports, on a V100 at 1024×2048: network 91 ms, post-processing 113 ms, fast post-processing
(down-sampled embedding space) 8 ms. This script measures the same three quantities here, per image size:

* ``network``: ``HLENet.forward`` of ``build_model(HLEConfig())`` (with ``--backbone``) on one random image;
* ``full`` / ``fast`` decode of that untrained network's output (few or no seeds: a lower bound), and of a
  constructed output map with ``--instances`` instances over three stuff bands (noisy embeddings and seed
  bumps, so NMS, merging and masks have realistic work to do).

``full`` is the decoder's default full mode (since issue 15 the bounded coarse-to-fine decoder of
``hle_core.decoding.refine``). These inputs are a random network's output and a constructed map: for the
shipped trained model's real outputs, per decode stage, use ``bench/bench_decode_trained.py``.

Medians of ``--repeats`` timed runs after ``--warmup`` untimed ones, under ``torch.inference_mode()``. Example::

    OMP_NUM_THREADS=2 PYTHONPATH=. .venv/bin/python bench/bench_decode.py --sizes 512x1024 --repeats 5
    OMP_NUM_THREADS=2 PYTHONPATH=. .venv/bin/python bench/bench_decode.py --sizes 1024x2048 --repeats 1 --json out.json
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import time
from typing import Callable

import torch
import torch.nn.functional as F

from hle_core.config import HLEConfig
from hle_core.decoding import decode_panoptic


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="512x1024,1024x2048", help="comma-separated HxW image sizes (multiples of 32)")
    p.add_argument("--backbone", default=HLEConfig().model.backbone, choices=["mobilenet_v2", "resnet50", "resnet101"],
                   help="network backbone (model.backbone)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (median reported)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs before each measurement")
    p.add_argument("--fast-downsample", type=int, default=4, help="decoder.fast_downsample of the fast decode")
    p.add_argument("--instances", type=int, default=30, help="instances in the constructed output map")
    p.add_argument("--no-network", action="store_true", help="skip the network (and decoding its output)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: leave as is)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--json", default=None, help="write all measurements to this JSON file")
    return p.parse_args(argv)


def parse_sizes(text: str) -> list[tuple[int, int]]:
    sizes = []
    for item in text.split(","):
        try:
            h, w = (int(v) for v in item.lower().split("x"))
        except ValueError:
            raise SystemExit(f"--sizes: expected HxW items like 512x1024, got {item!r}") from None
        sizes.append((h, w))
    return sizes


def median_ms(fn: Callable[[], object], warmup: int, repeats: int) -> tuple[float, object]:
    """Median wall time of ``fn()`` in milliseconds, and its last result."""
    out = None
    for _ in range(warmup):
        out = fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), out


def constructed_outputs(cfg: HLEConfig, h: int, w: int, num_instances: int, gen: torch.Generator) -> dict:
    """A network-like output map with a known layout: sky / building / road bands and ``num_instances``
    rectangles of thing classes in the lower half, each with its own embedding direction near its class
    mean, a seed bump at its centre, and small per-pixel noise on embedding and seed."""
    k, d = len(cfg.classes), cfg.model.embedding_dim
    if d <= k:
        raise SystemExit(f"constructed map needs embedding_dim > number of classes, got D={d}, K={k}")
    means = torch.eye(k, d)                                                      # K x D orthonormal class means
    stuff, things = cfg.classes.stuff_indices, cfg.classes.thing_indices
    label = torch.full((h, w), stuff[min(2, len(stuff) - 1)], dtype=torch.long)  # class index per pixel
    label[: h // 4] = stuff[-1]
    label[h // 4: h // 2] = stuff[min(1, len(stuff) - 1)]
    emb = means[label].permute(2, 0, 1).contiguous()                             # D x H x W
    seed = torch.zeros(h, w)
    cols = math.ceil(math.sqrt(num_instances * 2))
    rows = math.ceil(num_instances / cols)
    ch, cw = (h // 2) // rows, w // cols
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    for n in range(num_instances):                                               # a few dozen boxes, not pixels
        r, c = divmod(n, cols)
        bh, bw = [int(v * (0.5 + 0.4 * torch.rand(1, generator=gen).item())) for v in (ch, cw)]
        y0, x0 = h // 2 + r * ch + (ch - bh) // 2, c * cw + (cw - bw) // 2
        cls = things[n % len(things)]
        u = torch.zeros(d)                                                       # ±e_j, j ≥ K: neighbours differ
        j = n // len(things)
        u[k + j % (d - k)] = 1.0 if (j // (d - k)) % 2 == 0 else -1.0
        emb[:, y0:y0 + bh, x0:x0 + bw] = F.normalize(means[cls] + 0.5 * u, dim=0)[:, None, None]
        box = (slice(y0, y0 + bh), slice(x0, x0 + bw))
        radius = min(bh, bw) / 4
        bump = torch.exp(-((yy[box] - (y0 + bh / 2)) ** 2 + (xx[box] - (x0 + bw / 2)) ** 2) / (2 * radius**2))
        seed[box] = 0.9 * bump
    emb = F.normalize(emb + 0.02 * torch.randn(emb.shape, generator=gen), dim=0)
    seed = (seed + 0.02 * torch.rand(seed.shape, generator=gen)).clamp(0, 1)
    m = cfg.model
    return {
        "embedding": emb, "sigma": torch.full((1, h, w), 0.15),
        "sigma_spatial": torch.full((1, h, w), m.sigma_spatial_init), "seed": seed[None],
        "class_means": means, "class_sigma": torch.full((k,), 0.3),
    }


def time_decodes(cfg: HLEConfig, maps: dict, fast_downsample: int, warmup: int, repeats: int) -> dict:
    out = {}
    for mode, f in (("full", 1), ("fast", fast_downsample)):
        dcfg = dataclasses.replace(cfg.decoder, fast_downsample=f)

        def decode() -> object:
            return decode_panoptic(maps["embedding"], maps["sigma"], maps["sigma_spatial"], maps["seed"],
                                   maps["class_means"], maps["class_sigma"], cfg.classes, dcfg, cfg.model.coord_scale)

        ms, res = median_ms(decode, warmup, repeats)
        out[mode] = {"ms": ms, "segments": len(res), "instances": res.num_instances}
    return out


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from hle_core.allocator import keep_freed_memory

    print(f"memory allocator: {keep_freed_memory()}")   # as hle and the node do; HLE_KEEP_FREED_MEMORY=0: off
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    cfg = HLEConfig().override({"model": {"backbone": args.backbone}})
    model = None
    if not args.no_network:
        from hle_core.model import build_model                                 # lazy: only needed for the network
        model = build_model(cfg).eval()
    rows = []
    with torch.inference_mode():
        for h, w in parse_sizes(args.sizes):
            row = {"size": f"{h}x{w}", "threads": torch.get_num_threads(), "backbone": args.backbone}
            if model is not None:
                images = torch.randn(1, 3, h, w, generator=gen)
                row["network_ms"], outputs = median_ms(lambda: model(images), args.warmup, args.repeats)
                maps = {key: v[0] for key, v in outputs.items()} | model.decode_params()
                row["network_output"] = time_decodes(cfg, maps, args.fast_downsample, args.warmup, args.repeats)
            maps = constructed_outputs(cfg, h, w, args.instances, gen)
            row["constructed"] = time_decodes(cfg, maps, args.fast_downsample, args.warmup, args.repeats)
            rows.append(row)
            print_row(row, args)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"args": vars(args), "results": rows}, fh, indent=2)


def print_row(row: dict, args: argparse.Namespace) -> None:
    net = row.get("network_ms")
    print(f"\n{row['size']}  ({row['threads']} threads, backbone {row['backbone']}, fast ×{args.fast_downsample})")
    print(f"  {'input':<26}{'mode':<6}{'decode ms':>11}{'/network':>10}{'segments':>10}{'instances':>11}")
    if net is not None:
        print(f"  {'network forward':<26}{'':<6}{net:>11.1f}{1.0:>10.2f}")
    for key, name in (("network_output", "random network output"), ("constructed", f"{args.instances} instances")):
        for mode, r in row.get(key, {}).items():
            ratio = f"{r['ms'] / net:>10.2f}" if net else f"{'-':>10}"
            print(f"  {name:<26}{mode:<6}{r['ms']:>11.1f}{ratio}{r['segments']:>10}{r['instances']:>11}")


if __name__ == "__main__":
    main()
