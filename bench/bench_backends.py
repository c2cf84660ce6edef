"""Time the inference backends: network, panoptic decoding (full and fast), end to end, peak memory.

For every backbone × resolution × backend: ``network`` = ``backend.infer`` on a preprocessed batch;
``decode_full`` / ``decode_fast`` = ``hle_core.decoding.decode_panoptic`` on those maps (fast: the
``--fast-downsample`` factor); ``e2e`` = ``Pipeline.process`` on a uint8 image (preprocess → infer → full decode);
``ratio`` = decode_full / network (the paper's ratio is 1.24; goal ≤ 0.15). Timings over ``--repeats`` after
``--warmup`` untimed calls; the table shows "median (min)" and the ratio uses the minima. Peak memory: host
RSS high-water mark of this process (reset per setting through
``/proc/self/clear_refs`` where Linux allows it, else the lifetime ``ru_maxrss``), and on CUDA
``torch.cuda.max_memory_allocated``.

Networks are randomly initialised (no download) unless ``--checkpoint`` names a trained one; the decode cost
depends on how many seeds pass the threshold, so the number of segments found is recorded beside each row.
Example (what ``--quick`` runs)::

    OMP_NUM_THREADS=2 PYTHONPATH=. .venv/bin/python bench/bench_backends.py --quick --out bench_backends.json
    PYTHONPATH=. .venv/bin/python bench/bench_backends.py --device cuda --backends torch --fp16 \\
        --resolutions 1024x2048 --backbones resnet50
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from hle_core.config import HLEConfig
from hle_core.model import build_model, load_model


def parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like HxW, got {text!r}") from None
    if h % 32 or w % 32 or h <= 0 or w <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive multiples of 32, got {text!r}")
    return h, w


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backends", nargs="+", default=["torch", "onnxruntime"],
                   choices=["torch", "onnxruntime", "tensorrt"], help="backends to time (default torch onnxruntime)")
    p.add_argument("--resolutions", nargs="+", type=parse_size, default=[(512, 1024), (1024, 2048)],
                   help="network input sizes HxW (default 512x1024 1024x2048)")
    p.add_argument("--backbones", nargs="+", default=["mobilenet_v2", "resnet50"],
                   choices=["mobilenet_v2", "resnet50", "resnet101"], help="backbones (default mobilenet_v2 resnet50)")
    p.add_argument("--checkpoint", default=None,
                   help="time this trained checkpoint (its own backbone; --backbones ignored), not random weights")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N (default cpu)")
    p.add_argument("--fp16", action="store_true", help="torch FP16 / TensorRT FP16 (CUDA only)")
    p.add_argument("--torch-options", nargs="*", default=[], choices=["channels_last", "compile", "cuda_graphs"],
                   help="extra torch rows, one per option (e.g. channels_last compile)")
    p.add_argument("--no-decode", action="store_true", help="skip decoding and end-to-end timings")
    p.add_argument("--fast-downsample", type=int, default=4, help="fast decode factor (default 4)")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls per measurement (default 1)")
    p.add_argument("--repeats", type=int, default=5, help="timed calls per measurement, median reported (default 5)")
    p.add_argument("--threads", type=int, default=None, help="torch and onnxruntime intra-op threads")
    p.add_argument("--quick", action="store_true",
                   help="512x1024 only, mobilenet_v2 and resnet50, warmup 1, repeats 2")
    p.add_argument("--out", default=None, help="write the rows as JSON here")
    p.add_argument("--seed", type=int, default=0, help="weights / image seed")
    args = p.parse_args(argv)
    if args.quick:
        args.resolutions, args.backbones, args.warmup, args.repeats = [(512, 1024)], ["mobilenet_v2", "resnet50"], 1, 2
    if args.repeats < 1 or args.warmup < 0:
        p.error(f"--repeats must be >= 1 and --warmup >= 0, got {args.repeats} and {args.warmup}")
    return args


# --- measurement helpers --------------------------------------------------------------------------------------
def reset_peak_rss() -> bool:
    """Reset the kernel's RSS high-water mark (Linux ≥ 4.0, ``echo 5 > /proc/self/clear_refs``)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024.0 * 1024.0) if sys.platform == "darwin" else rss / 1024.0


def timed(fn, device: torch.device, warmup: int, repeats: int) -> tuple[float, float, object]:
    """Median and minimum wall time of ``fn()`` in ms (CUDA synchronised), and its last result.

    On a shared machine the minimum is the better estimate of the cost itself; both are recorded.
    """
    out = None
    for _ in range(warmup):
        out = fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), min(times), out


def make_image(h: int, w: int, seed: int) -> np.ndarray:
    """A synthetic street scene when hle_core.data.synthetic exists, else uniform noise; uint8 (H, W, 3)."""
    try:
        from hle_core.data.synthetic import SceneGenerator

        return SceneGenerator((h, w), seed=seed).frame(0).image
    except ImportError:
        return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def make_backend(kind: str, option: str | None, model, onnx_path: Path, device: str, fp16: bool, threads):
    from hle_core.runtime.onnx_backend import OnnxRuntimeBackend
    from hle_core.runtime.tensorrt_backend import TensorRTBackend
    from hle_core.runtime.torch_backend import TorchBackend

    if kind == "torch":
        opts = {option: True} if option else {}
        return TorchBackend(copy.deepcopy(model), device=device, fp16=fp16, **opts)   # options convert in place
    if kind == "onnxruntime":
        return OnnxRuntimeBackend(onnx_path, device=device, intra_op_threads=threads or 0)
    return TensorRTBackend.from_onnx(onnx_path, cache_dir=onnx_path.parent / "engines", fp16=fp16, device=device)


def bench_one(args, backbone: str, size: tuple[int, int], kind: str, option: str | None, model,
              onnx_path: Path) -> dict:
    from hle_core.pipeline import Pipeline

    device = torch.device(args.device)
    reset_ok = reset_peak_rss()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    backend = make_backend(kind, option, model, onnx_path, args.device, args.fp16, args.threads)
    image = make_image(*size, seed=args.seed)
    pipe = Pipeline(backend, input_size=size)
    batch, _ = pipe.preprocess(image)
    row = {"backbone": backbone, "height": size[0], "width": size[1],
           "backend": kind + (f"+{option}" if option else ""), "device": str(backend.device),
           "describe": backend.describe(), "fp16": args.fp16}
    row["network_ms"], row["network_min_ms"], out = timed(lambda: backend.infer(batch), device, args.warmup,
                                                          args.repeats)
    if not args.no_decode:
        from hle_core.decoding import decode_panoptic

        maps = {k: v[0] for k, v in out.items()}
        params, cfg = backend.decode_params, backend.config
        for mode, factor in (("full", 1), ("fast", args.fast_downsample)):
            dcfg = dataclasses.replace(cfg.decoder, fast_downsample=factor)
            row[f"decode_{mode}_ms"], row[f"decode_{mode}_min_ms"], res = timed(
                lambda: decode_panoptic(maps["embedding"], maps["sigma"], maps["sigma_spatial"], maps["seed"],
                                        params["class_means"], params["class_sigma"], cfg.classes, dcfg,
                                        cfg.model.coord_scale), device, args.warmup, args.repeats)
            row[f"segments_{mode}"] = len(res)
        pipe.decoder = dataclasses.replace(cfg.decoder, fast_downsample=1)
        row["e2e_ms"], row["e2e_min_ms"], _ = timed(lambda: pipe.process(image), device, args.warmup, args.repeats)
        row["decode_network_ratio"] = row["decode_full_min_ms"] / row["network_min_ms"]
    row["peak_rss_mb"] = peak_rss_mb()
    row["peak_rss_scope"] = "this setting" if reset_ok else "process lifetime"
    if device.type == "cuda":
        row["gpu_peak_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    backend.close()
    return row


def markdown(rows: list[dict]) -> str:
    cols = [("backbone", "backbone", "{}"), ("res", None, "{}"), ("backend", "backend", "{}"),
            ("network ms", "network", None), ("decode full ms", "decode_full", None),
            ("decode fast ms", "decode_fast", None), ("e2e ms", "e2e", None),
            ("decode/network (min)", "decode_network_ratio", "{:.2f}"), ("segments", "segments_full", "{}"),
            ("peak RSS MB", "peak_rss_mb", "{:.0f}"), ("GPU peak MB", "gpu_peak_mb", "{:.0f}")]
    lines = ["| " + " | ".join(c[0] for c in cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = []
        for _, key, fmt in cols:
            if key is None:
                cells.append(f"{r['height']}×{r['width']}")
            elif fmt is None:                                   # a timing: median (min)
                cells.append(f"{r[key + '_ms']:.0f} ({r[key + '_min_ms']:.0f})" if key + "_ms" in r else "—")
            else:
                cells.append(fmt.format(r[key]) if key in r else "—")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from hle_core.allocator import keep_freed_memory

    print(f"memory allocator: {keep_freed_memory()}")   # as hle and the node do; HLE_KEEP_FREED_MEMORY=0: off
    from hle_core.runtime.export import export_onnx

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rows = []
    with tempfile.TemporaryDirectory(prefix="hle_bench_") as tmp:
        for backbone in ([None] if args.checkpoint else args.backbones):
            if args.checkpoint:
                model = load_model(args.checkpoint)
                backbone = model.cfg.model.backbone
            else:
                cfg = HLEConfig()
                cfg.model.backbone = backbone
                model = build_model(cfg).eval()
            for size in args.resolutions:
                onnx_path = None
                if {"onnxruntime", "tensorrt"} & set(args.backends):
                    onnx_path = export_onnx(model, Path(tmp) / f"{backbone}_{size[0]}x{size[1]}.onnx",
                                            height=size[0], width=size[1])
                for kind in args.backends:
                    for option in [None] + (list(args.torch_options) if kind == "torch" else []):
                        row = bench_one(args, backbone, size, kind, option, model, onnx_path)
                        rows.append(row)
                        print(json.dumps(row), file=sys.stderr, flush=True)
    meta = {"command": " ".join(sys.argv), "python": platform.python_version(), "torch": torch.__version__,
            "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
            "device": args.device, "warmup": args.warmup, "repeats": args.repeats}
    if torch.cuda.is_available() and args.device.startswith("cuda"):
        meta["gpu"] = torch.cuda.get_device_name(torch.device(args.device))
    if args.out:
        Path(args.out).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
