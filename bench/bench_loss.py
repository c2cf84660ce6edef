"""Time forward + backward of the hierarchical Lovász loss (paper eq. 7-16) against the number of instances.

Synthetic input: random unit embeddings and positive σ maps, three stuff bands and ``L`` rectangular thing
instances laid out on a grid. Example::

    OMP_NUM_THREADS=2 PYTHONPATH=. .venv/bin/python bench/bench_loss.py --instances 1 10 50 --height 256 --width 512
"""
from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
import torch.nn.functional as F

from hle_core.config import HLEConfig
from hle_core.losses import HierarchicalLovaszLoss


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--instances", type=int, nargs="+", default=[1, 10, 50], help="instance counts per image to time")
    p.add_argument("--height", type=int, default=256, help="map height in pixels")
    p.add_argument("--width", type=int, default=512, help="map width in pixels")
    p.add_argument("--batch", type=int, default=1, help="images per batch (each gets the same number of instances)")
    p.add_argument("--embedding-dim", type=int, default=None, help="D; default: HLEConfig().model.embedding_dim")
    p.add_argument("--embedding-loss", choices=["lovasz", "ae", "cross_entropy"], default="lovasz",
                   help="loss.embedding_loss variant (Table 6)")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32", help="tensor dtype")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: leave as is)")
    p.add_argument("--warmup", type=int, default=1, help="untimed iterations per setting")
    p.add_argument("--repeats", type=int, default=3, help="timed iterations per setting (median reported)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    return p.parse_args(argv)


def make_inputs(cfg: HLEConfig, batch: int, height: int, width: int, num_instances: int,
                device: torch.device, dtype: torch.dtype):
    """Network-like outputs (leaves requiring grad) and targets with ``num_instances`` boxes per image."""
    k, d = len(cfg.classes), cfg.model.embedding_dim
    stuff, things = cfg.classes.stuff_indices, cfg.classes.thing_indices
    semantic = torch.empty(batch, height, width, dtype=torch.long, device=device)
    for i, band in enumerate(torch.tensor_split(torch.arange(height), len(stuff[:3]))):
        semantic[:, band] = stuff[i]
    instance = torch.zeros(batch, height, width, dtype=torch.long, device=device)
    cols = math.ceil(math.sqrt(num_instances * width / height))
    rows = math.ceil(num_instances / cols)
    ch, cw = height // rows, width // cols
    for n in range(num_instances):
        r, c = divmod(n, cols)
        ys, xs = slice(r * ch + ch // 4, r * ch + 3 * ch // 4 + 1), slice(c * cw + cw // 4, c * cw + 3 * cw // 4 + 1)
        instance[:, ys, xs] = n + 1
        semantic[:, ys, xs] = things[n % len(things)]
    semantic[:, :2] = cfg.loss.ignore_index                              # a few ignored pixels
    leaves = {
        "embedding": torch.randn(batch, d, height, width, device=device, dtype=dtype),
        "sigma": torch.full((batch, 1, height, width), cfg.model.sigma_init, device=device, dtype=dtype),
        "sigma_spatial": torch.full((batch, 1, height, width), cfg.model.sigma_spatial_init, device=device,
                                    dtype=dtype),
        "seed": torch.rand(batch, 1, height, width, device=device, dtype=dtype),
        "class_means": F.normalize(torch.randn(k, d, device=device, dtype=dtype), dim=1),
        "class_sigma": torch.full((k,), cfg.model.class_sigma_init, device=device, dtype=dtype),
    }
    for t in leaves.values():
        t.requires_grad_()
    return leaves, semantic, instance


def time_setting(loss: HierarchicalLovaszLoss, leaves, semantic, instance, warmup: int, repeats: int,
                 device: torch.device) -> tuple[float, float]:
    """Median forward and backward wall time in milliseconds."""
    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    fwd, bwd = [], []
    for it in range(warmup + repeats):
        for t in leaves.values():
            t.grad = None
        sync()
        t0 = time.perf_counter()
        outputs = {"embedding": F.normalize(leaves["embedding"], dim=1), "sigma": leaves["sigma"],
                   "sigma_spatial": leaves["sigma_spatial"], "seed": leaves["seed"]}
        out = loss(outputs, leaves["class_means"], leaves["class_sigma"], semantic, instance)
        sync()
        t1 = time.perf_counter()
        out["total"].backward()
        sync()
        t2 = time.perf_counter()
        if it >= warmup:
            fwd.append(1e3 * (t1 - t0))
            bwd.append(1e3 * (t2 - t1))
    return statistics.median(fwd), statistics.median(bwd)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from hle_core.allocator import keep_freed_memory

    print(f"memory allocator: {keep_freed_memory()}")   # as hle and the node do; HLE_KEEP_FREED_MEMORY=0: off
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    cfg = HLEConfig()
    if args.embedding_dim is not None:
        cfg.model.embedding_dim = args.embedding_dim
    cfg.loss.embedding_loss = args.embedding_loss
    cfg.validate()
    loss = HierarchicalLovaszLoss(cfg)
    print(f"hierarchical loss ({args.embedding_loss}), B={args.batch}, {args.height}x{args.width}, "
          f"D={cfg.model.embedding_dim}, {args.dtype}, device={device}, threads={torch.get_num_threads()}")
    header = f"{'instances':>9} | {'forward ms':>10} | {'backward ms':>11} | {'total ms':>9}"
    if device.type == "cuda":
        header += f" | {'peak MiB':>8}"
    print(header)
    print("-" * len(header))
    for n in args.instances:
        leaves, semantic, instance = make_inputs(cfg, args.batch, args.height, args.width, n, device, dtype)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        f_ms, b_ms = time_setting(loss, leaves, semantic, instance, args.warmup, args.repeats, device)
        row = f"{n:>9} | {f_ms:>10.1f} | {b_ms:>11.1f} | {f_ms + b_ms:>9.1f}"
        if device.type == "cuda":
            row += f" | {torch.cuda.max_memory_allocated(device) / 2**20:>8.0f}"
        print(row)


if __name__ == "__main__":
    main()
