"""Decode cost on a TRAINED model's real outputs, per stage, against the network's time (issue 15).

Randomly initialised networks pass few seeds, so their decode time says little. This script runs the shipped
model (default ``models/hle_street.pt``, its tuned decoder embedded) on

* synthetic street scenes (``SceneGenerator``, seed ``--seed``; not a training, tuning or evaluation seed) at
  each of ``--sizes``;
* frames of a real video, ``--video`` (default: OpenCV's ``vtest.avi``, 768×576, from the Debian package
  ``opencv-doc``: ``apt-get install opencv-doc``, optional), at their own size and letterboxed into
  ``--video-input-size`` (default 256×512, the node's input with its default model); the input is skipped
  with a message when the file is absent;
* a constructed worst case (``--worst-case``): thing blocks of 32 × 32 px, each with its own embedding and seed
  peak, so ``max_seeds`` seeds pass NMS and merging;

and reports, for each input: network time (``Pipeline.backend.infer``, median), full decode time with the
default decoder (``decode_panoptic``'s defaults: exact on maps of at most ``EXACT_MAX_PIXELS`` pixels while at
most ``EXACT_MAX_SEEDS`` seeds are kept, else bounded), the bounded decoder alone (``coarse_factor`` 4,
``exact_max_pixels=0``) and the exact per-pixel decoder (``coarse_factor`` 1), their ratio to the network,
candidates / kept seeds, instances, and the time of each decode stage (module functions wrapped with timers in a
separate, untimed-for-total run). Those decode times are of the decoder alone; the ``frame`` row times the network
and the default decode back to back as the node runs a frame, where the decode runs on the cores the network just
left (``--ort-spinning`` lets onnxruntime's idle threads spin there, its own default, for the A/B).
``--int8 FILE`` also times the int8 export of the same network on the same inputs. Example (2 threads, as the
issue's numbers)::

    OMP_NUM_THREADS=2 PYTHONPATH=. .venv/bin/python bench/bench_decode_trained.py --threads 2 --repeats 3 \\
        --worst-case --json runs/results/decode_trained.json
"""
from __future__ import annotations

import argparse
import contextlib
import json
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

import bench_decode  # the sibling script (its folder is on sys.path when this one runs): its median_ms
from hle_core.decoding import decode_panoptic
from hle_core.decoding import panoptic as panoptic_module
from hle_core.decoding import refine as refine_module

VTEST = "/usr/share/doc/opencv-doc/examples/data/vtest.avi"
#: (module, function name, stage label): the §3.5 steps as the decoders call them.
STAGES = [
    (refine_module, "assign_semantics", "ψ argmax (eq. 9)"),
    (panoptic_module, "assign_semantics", "ψ argmax (eq. 9)"),
    (refine_module, "find_seeds", "seed NMS"),
    (panoptic_module, "find_seeds", "seed NMS"),
    (refine_module, "merge_seeds", "seed merging (Φ)"),
    (panoptic_module, "merge_seeds", "seed merging (Φ)"),
    (refine_module, "instance_masks", "masks: Φ over seeds"),
    (panoptic_module, "instance_masks", "masks: Φ over seeds"),
    (refine_module, "neighbourhood_masks", "masks: border pixels"),
    (panoptic_module, "segment_statistics", "statistics"),
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="models/hle_street.pt", help="checkpoint or ONNX export")
    p.add_argument("--backend", default="onnxruntime", choices=["onnxruntime", "torch"], help="network backend")
    p.add_argument("--sizes", default="256x512,512x1024,1024x2048", help="synthetic scene sizes HxW")
    p.add_argument("--scenes", type=int, default=2, help="synthetic scenes per size")
    p.add_argument("--seed", type=int, default=777, help="scene seed of the synthetic inputs")
    p.add_argument("--video", default=VTEST, help="real video (default: opencv-doc's vtest.avi); '' to skip")
    p.add_argument("--video-frames", type=int, default=4, help="frames taken from the video (evenly spaced)")
    p.add_argument("--video-input-size", default="256x512",
                   help="HxW the video frames are also letterboxed into, as the node does ('' to skip)")
    p.add_argument("--worst-case", action="store_true", help="also the constructed max_seeds input at 512x1024")
    p.add_argument("--int8", default=None, help="an int8 ONNX export of the same network to time as well")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (median)")
    p.add_argument("--threads", type=int, default=2, help="torch and onnxruntime intra-op threads")
    p.add_argument("--device", default="cpu",
                   help="cpu | cuda | cuda:N: where the network runs and the decoder decodes (GPU timings sync)")
    p.add_argument("--ort-spinning", action="store_true",
                   help="let onnxruntime's idle threads spin (its own default; the product turns it off on CPU)")
    p.add_argument("--json", default=None, help="write every measurement here")
    return p.parse_args(argv)


#: The --device of this run (set by main): on CUDA every timed call ends with torch.cuda.synchronize().
_DEVICE = "cpu"


def _sync() -> None:
    if _DEVICE.startswith("cuda"):
        torch.cuda.synchronize()


def synced(fn: Callable[[], object]) -> Callable[[], object]:
    """``fn`` followed by a device synchronisation (GPU work is asynchronous), returning its result."""
    def call() -> object:
        out = fn()
        _sync()
        return out
    return call


def median_ms(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    """Median wall time of ``fn()`` in ms after one warm-up call, and its last result."""
    return bench_decode.median_ms(synced(fn), warmup=1, repeats=repeats)


@contextlib.contextmanager
def stage_timers() -> Iterator[dict]:
    """Wrap the decoder's stage functions with wall-clock timers; yields ``{label: ms}`` (+ seed counts)."""
    acc: dict = {}
    saved = []
    for module, name, label in STAGES:
        fn = getattr(module, name)

        def timed(*a, _fn=fn, _label=label, _name=name, **kw):
            t0 = time.perf_counter()
            out = _fn(*a, **kw)
            _sync()
            acc[_label] = acc.get(_label, 0.0) + (time.perf_counter() - t0) * 1e3
            if _name == "merge_seeds":
                acc["candidates"], acc["kept"] = int(out.numel()), int(out.sum())
            return out

        saved.append((module, name, fn))
        setattr(module, name, timed)
    try:
        yield acc
    finally:
        for module, name, fn in saved:
            setattr(module, name, fn)


def synthetic_images(size: tuple[int, int], num: int, seed: int) -> list[np.ndarray]:
    from hle_core.data import SceneGenerator

    gen = SceneGenerator(size, seed=seed)
    return [np.ascontiguousarray(gen.frame(i).image) for i in range(num)]


def video_frames(path: str, num: int) -> list[np.ndarray] | str:
    """``num`` evenly spaced RGB frames, or a message saying why there are none."""
    import cv2

    if not path:
        return "skipped (--video '')"
    if not Path(path).is_file():
        return (f"skipped: {path} not found (Debian: `apt-get install opencv-doc`, then `dpkg -L opencv-doc | "
                f"grep vtest` for its location; or pass --video FILE)")
    cap = cv2.VideoCapture(path)
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or num
    frames = []
    for idx in np.linspace(0, max(total - 1, 0), num).astype(int):
        cap.set(cv2.CAP_PROP_POS_FRAMES, int(idx))
        ok, frame = cap.read()
        if ok:
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    cap.release()
    return frames or f"skipped: OpenCV read no frame from {path}"


def worst_case_maps(params: dict, classes, h: int = 512, w: int = 1024, block: int = 32, seed: int = 0) -> dict:
    """Thing blocks of ``block`` px with distinct embeddings near thing class means and a seed peak each."""
    gen = torch.Generator().manual_seed(seed)
    means, things = params["class_means"], classes.thing_indices
    rows, cols = h // block, w // block
    cls = torch.tensor(things)[torch.randint(len(things), (rows, cols), generator=gen)]
    noise = torch.randn(rows, cols, means.shape[1], generator=gen)
    e = torch.nn.functional.normalize(means[cls] + 0.35 * noise, dim=-1)
    emb = e.permute(2, 0, 1).repeat_interleave(block, 1).repeat_interleave(block, 2).contiguous()
    yy, xx = torch.meshgrid(torch.arange(h) % block, torch.arange(w) % block, indexing="ij")
    bump = torch.exp(-((yy - block / 2) ** 2 + (xx - block / 2) ** 2) / (2 * (block / 6) ** 2))
    return {"embedding": emb, "sigma": torch.full((1, h, w), 0.05), "sigma_spatial": torch.full((1, h, w), 0.05),
            "seed": (0.95 * bump)[None]}


def back_to_back(pipe, batch: torch.Tensor, size: tuple[int, int], repeats: int) -> dict:
    """Network then default decode of its output, ``repeats`` times in a row as the node runs a frame: medians of
    the network, of the decode that follows it (on the cores the network just left) and of the sum (ms)."""
    params, cfg = pipe.backend.decode_params, pipe.config
    h, w = size
    net, dec, total = [], [], []
    for _ in range(repeats + 1):                                   # the first is a warm-up
        t0 = time.perf_counter()
        out = pipe.backend.infer(batch)
        _sync()
        t1 = time.perf_counter()
        decode_panoptic(out["embedding"][0, :, :h, :w], out["sigma"][0, :, :h, :w], out["sigma_spatial"][0, :, :h, :w],
                        out["seed"][0, :, :h, :w], params["class_means"], params["class_sigma"], cfg.classes,
                        pipe.decoder, cfg.model.coord_scale)
        _sync()
        t2 = time.perf_counter()
        net.append((t1 - t0) * 1e3)
        dec.append((t2 - t1) * 1e3)
        total.append((t2 - t0) * 1e3)
    return {"network_ms": float(np.median(net[1:])), "decode_ms": float(np.median(dec[1:])),
            "total_ms": float(np.median(total[1:]))}


def measure(name: str, maps: dict, pipe, net_ms: float | None, repeats: int, extra: dict) -> dict:
    params, cfg = pipe.backend.decode_params, pipe.config

    def decode(cf: int, exact_max_pixels: int):
        return lambda: decode_panoptic(maps["embedding"], maps["sigma"], maps["sigma_spatial"], maps["seed"],
                                       params["class_means"], params["class_sigma"], cfg.classes, pipe.decoder,
                                       cfg.model.coord_scale, coarse_factor=cf, exact_max_pixels=exact_max_pixels)

    row = {"input": name, "size": list(maps["embedding"].shape[1:]), "network_ms": net_ms, **extra}
    for label, cf, exact_max in (("default", refine_module.COARSE_FACTOR, panoptic_module.EXACT_MAX_PIXELS),
                                 ("bounded", refine_module.COARSE_FACTOR, 0), ("exact", 1, 0)):
        ms, res = median_ms(decode(cf, exact_max), repeats)
        with stage_timers() as stages:
            decode(cf, exact_max)()
        row[label] = {"ms": ms, "ratio": None if not net_ms else ms / net_ms, "instances": res.num_instances,
                      "segments": len(res), "stages_ms": {k: v for k, v in stages.items()
                                                          if k not in ("candidates", "kept")},
                      "candidates": stages.get("candidates"), "seeds_kept": stages.get("kept")}
    return row


def print_row(row: dict) -> None:
    net = row["network_ms"]
    int8 = f", int8 network {row['int8_ms']:.0f} ms" if row.get("int8_ms") else ""
    print(f"\n{row['input']}  {row['size'][0]}x{row['size'][1]}  network "
          f"{'-' if net is None else f'{net:.0f} ms'}{int8}")
    if row.get("frame"):
        f = row["frame"]
        print(f"  frame    network {f['network_ms']:.1f} ms then default decode {f['decode_ms']:.1f} ms "
              f"(/network {f['decode_ms'] / f['network_ms']:.3f}), total {f['total_ms']:.1f} ms")
    for label in ("default", "bounded", "exact"):
        r = row[label]
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.3f}"
        other = r["ms"] - sum(r["stages_ms"].values())
        stages = ", ".join(f"{k} {v:.1f}" for k, v in r["stages_ms"].items()) + f", rest {other:.1f}"
        print(f"  {label:8s} decode {r['ms']:7.1f} ms  /network {ratio:>6}  seeds {r['candidates']}→{r['seeds_kept']}"
              f"  instances {r['instances']}  | {stages}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from hle_core.allocator import keep_freed_memory

    print(f"memory allocator: {keep_freed_memory()}")   # as hle and the node do; HLE_KEEP_FREED_MEMORY=0: off
    torch.set_num_threads(args.threads)
    from hle_core.runtime import onnx_backend
    from hle_core.runtime.factory import build_pipeline

    if args.ort_spinning:
        onnx_backend.CPU_SPINNING = "1"

    global _DEVICE
    _DEVICE = args.device
    pipe = build_pipeline(args.model, backend=args.backend, device=args.device, intra_op_threads=args.threads)
    int8 = (build_pipeline(args.int8, backend="onnxruntime", device="cpu", intra_op_threads=args.threads)
            if args.int8 else None)
    print(f"model {args.model} ({pipe.backend.describe() if hasattr(pipe.backend, 'describe') else args.backend}), "
          f"{args.threads} threads, decoder {pipe.decoder}")
    inputs: list[tuple[str, list[np.ndarray] | str]] = []
    for item in args.sizes.split(","):
        h, w = (int(v) for v in item.lower().split("x"))
        inputs.append((f"synthetic seed {args.seed}", synthetic_images((h, w), args.scenes, args.seed)))
    frames = video_frames(args.video, args.video_frames)
    inputs.append((f"video {Path(args.video).name if args.video else ''}", frames))
    pipes = {name: pipe for name, _ in inputs}
    if args.video_input_size and not isinstance(frames, str):
        size = tuple(int(v) for v in args.video_input_size.lower().split("x"))
        name = f"video {Path(args.video).name} letterboxed {size[0]}x{size[1]}"
        inputs.append((name, frames))
        pipes[name] = build_pipeline(args.model, backend=args.backend, device=args.device, input_size=size,
                                     intra_op_threads=args.threads)
    rows, skipped = [], []
    with torch.inference_mode():
        for name, images in inputs:
            if isinstance(images, str):
                print(f"\n{name}: {images}")
                skipped.append({"input": name, "reason": images})
                continue
            for i, image in enumerate(images):
                batch, (h, w) = pipes[name].preprocess(image)
                net_ms, out = median_ms(lambda: pipes[name].backend.infer(batch), args.repeats)
                extra = {}
                if int8 is not None:
                    extra["int8_ms"], _ = median_ms(lambda: int8.backend.infer(batch), args.repeats)
                maps = {k: v[0, :, :h, :w] for k, v in out.items()}
                extra["frame"] = back_to_back(pipes[name], batch, (h, w), args.repeats)
                rows.append(measure(f"{name} #{i}", maps, pipe, net_ms, args.repeats, extra))
                print_row(rows[-1])
        if args.worst_case:
            maps = {k: v.to(args.device) for k, v in worst_case_maps(pipe.backend.decode_params,
                                                                      pipe.config.classes).items()}
            batch = torch.zeros(1, 3, 512, 1024, device=args.device)
            net_ms, _ = median_ms(lambda: pipe.backend.infer(batch), args.repeats)
            rows.append(measure("worst case: 32x32 thing blocks", maps, pipe, net_ms, args.repeats, {}))
            print_row(rows[-1])
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": rows, "skipped": skipped}, indent=2))


if __name__ == "__main__":
    main()
