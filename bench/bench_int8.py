"""int8 vs fp32 on CPU (issue 15): network time and PQ of ONNX exports on a held-out data set.

Give the two files written by ``hle export onnx --dynamic --int8`` (``X.int8.onnx`` and ``X.int8.fp32.onnx``).
For each ``--sizes`` entry the onnxruntime network time (median of ``--repeats`` after one warm-up, on one
synthetic scene of seed 777) is measured for both; with ``--data DIR`` (a data set from ``hle synth``) both are
evaluated exactly as ``hle evaluate`` evaluates a checkpoint (same prediction, decoding with the model's embedded
decoder, COCO panoptic files, panopticapi-exact PQ), the onnxruntime session standing in for the network::

    hle synth --num 48 --seed 9090917 --split val --out /tmp/val
    hle export onnx --checkpoint models/hle_street.pt --out runs/int8/street.int8.onnx --dynamic --int8 --calibration 32
    OMP_NUM_THREADS=2 PYTHONPATH=. .venv/bin/python bench/bench_int8.py --fp32 runs/int8/street.int8.fp32.onnx \\
        --int8 runs/int8/street.int8.onnx --data /tmp/val --threads 2 --json runs/results/int8.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fp32", required=True, help="fp32 ONNX export")
    p.add_argument("--int8", required=True, help="its int8 (QDQ) quantization")
    p.add_argument("--sizes", default="256x512,512x1024", help="HxW sizes to time (dynamic exports)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per size (median)")
    p.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads")
    p.add_argument("--data", default=None, help="data set (COCO layout, split --split) to evaluate both on")
    p.add_argument("--split", default="val")
    p.add_argument("--out", default="runs/int8_eval", help="folder for the predictions of each model")
    p.add_argument("--json", default=None, help="write the measurements here")
    return p.parse_args(argv)


class OnnxNetwork(torch.nn.Module):
    """An onnxruntime backend behind ``HLENet``'s call contract (``(B, 3, H, W)`` → output dict)."""

    def __init__(self, backend) -> None:
        super().__init__()
        self.backend = backend
        self.cfg = backend.config

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.backend.infer(images)

    def decode_params(self) -> dict[str, torch.Tensor]:
        return dict(self.backend.decode_params)


def time_network(backend, size: tuple[int, int], repeats: int) -> float:
    from hle_core.data import SceneGenerator
    from hle_core.pipeline import Pipeline

    pipe = Pipeline(backend)
    batch, _ = pipe.preprocess(SceneGenerator(size, seed=777).frame(0).image)
    backend.infer(batch)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        backend.infer(batch)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def evaluate(backend, data: str, split: str, out_dir: Path) -> dict:
    """PQ of ``backend`` on ``data`` as :func:`hle_core.evaluation.checkpoint_eval.evaluate_checkpoint` computes it."""
    from hle_core.data import PanopticDataset
    from hle_core.evaluation.checkpoint_eval import sample_names
    from hle_core.evaluation.coco_export import CocoPanopticFiles, dataset_ground_truth
    from hle_core.evaluation import pq_compute
    from hle_core.evaluation.predict import decode_outputs, infer_outputs

    model, cfg = OnnxNetwork(backend), backend.config
    dataset = PanopticDataset(data, "coco", cfg.classes, split=split, mean=cfg.model.mean, std=cfg.model.std)
    names = sample_names(dataset)
    gt = dataset_ground_truth(data, "coco", split, cfg.classes)
    if gt is None:
        raise SystemExit(f"{data}: no COCO panoptic ground truth (write it with hle synth)")
    out_dir.mkdir(parents=True, exist_ok=True)
    writer = CocoPanopticFiles(out_dir / "predictions.json", cfg.classes)
    params = model.decode_params()
    with torch.inference_mode():
        for cached in infer_outputs(model, cfg, dataset):
            image_id, file_name = names[cached.index]
            result = decode_outputs(cached, params, cfg)
            writer.add(image_id, file_name, result.panoptic.numpy(), dict(zip(result.ids.tolist(),
                                                                               result.scores.tolist())))
    results = pq_compute(gt.json, writer.close(), gt.folder, writer.png_dir, workers=1)
    (out_dir / "results.json").write_text(json.dumps(results, indent=2))
    return results


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from hle_core.allocator import keep_freed_memory

    print(f"memory allocator: {keep_freed_memory()}")   # as hle and the node do; HLE_KEEP_FREED_MEMORY=0: off
    torch.set_num_threads(args.threads)
    from hle_core.runtime.onnx_backend import OnnxRuntimeBackend
    from hle_core.runtime.quantize import quantization_info

    report: dict = {"args": vars(args), "quantization": quantization_info(args.int8), "timing": [], "pq": {}}
    backends = {name: OnnxRuntimeBackend(path, device="cpu", intra_op_threads=args.threads)
                for name, path in (("fp32", args.fp32), ("int8", args.int8))}
    for item in args.sizes.split(","):
        h, w = (int(v) for v in item.lower().split("x"))
        row = {"size": f"{h}x{w}"} | {name: time_network(b, (h, w), args.repeats) for name, b in backends.items()}
        row["speedup"] = row["fp32"] / row["int8"]
        report["timing"].append(row)
        print(f"{row['size']}: fp32 {row['fp32']:.1f} ms, int8 {row['int8']:.1f} ms, speed-up {row['speedup']:.2f}x")
    if args.data:
        for name, b in backends.items():
            r = evaluate(b, args.data, args.split, Path(args.out) / name)
            report["pq"][name] = {part: {k: r[part][k] * 100 for k in ("pq", "sq", "rq")}
                                  for part in ("All", "Things", "Stuff")}
            a = report["pq"][name]
            print(f"{name}: PQ {a['All']['pq']:.2f}  PQ_th {a['Things']['pq']:.2f}  PQ_st {a['Stuff']['pq']:.2f}")
        report["pq_drop"] = report["pq"]["fp32"]["All"]["pq"] - report["pq"]["int8"]["All"]["pq"]
        print(f"PQ drop fp32 -> int8: {report['pq_drop']:.2f}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
