"""``hle export``: a checkpoint to a self-describing ONNX file, an ONNX file to a TensorRT engine.

    hle export onnx --checkpoint runs/r50/best.pt --out r50.onnx --height 512 --width 1024 --simplify
    hle export onnx --checkpoint runs/r50/best.pt --out r50_dyn.onnx --dynamic
    hle export onnx --checkpoint models/hle_street.pt --out street.int8.onnx --int8 --calibration 32
    hle export tensorrt --onnx r50.onnx --out r50.engine --fp16 --workspace 4096
    hle export tensorrt --onnx r50_dyn.onnx --out r50_dyn.engine --min 1x3x256x512 --opt 1x3x512x1024 \\
        --max 1x3x1024x2048

The ONNX file carries the resolved config, class table and decode parameters in its metadata; the engine is
written with a JSON sidecar (``<engine>.json``: TensorRT version, GPU, ONNX hash, precision, shapes) without
which the runtime refuses to load it. See docs/TENSORRT.md.

``--int8`` writes the fp32 export beside ``--out`` (``<stem>.fp32.onnx``) and ``--out`` as its static int8
quantization (onnxruntime QDQ, per-channel int8 weights, uint8 activations calibrated on ``--calibration``
synthetic scenes of seed ``--calibration-seed``, never an evaluation seed), plus the calibration ranges as
``<out>.calibration.json`` (onnxruntime) and ``<out>.calibration.cache`` (TensorRT's format, for
``hle export tensorrt --onnx <stem>.fp32.onnx --calibration-cache <out>.calibration.cache``).
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

__all__ = ["add_parser", "run", "parse_shape"]


def parse_shape(text: str) -> tuple[int, int, int, int]:
    """``"1x3x512x1024"`` -> (1, 3, 512, 1024)."""
    m = re.fullmatch(r"\s*(\d+)x(\d+)x(\d+)x(\d+)\s*", text.lower())
    if not m:
        raise argparse.ArgumentTypeError(f"shape must look like BxCxHxW (e.g. 1x3x512x1024), got {text!r}")
    return tuple(int(v) for v in m.groups())  # type: ignore[return-value]


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("export", help="export a checkpoint to ONNX, or an ONNX file to a TensorRT engine",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="export_target", required=True, metavar="{onnx,tensorrt,checkpoint}")

    o = sub.add_parser("onnx", help="checkpoint -> ONNX (opset 17, metadata with config and decode parameters)")
    o.add_argument("--checkpoint", required=True, help="HLE checkpoint (.pt) written by training")
    o.add_argument("--out", required=True, help="output .onnx path")
    o.add_argument("--height", type=int, default=None, help="static input height, a multiple of 32 (default 512)")
    o.add_argument("--width", type=int, default=None, help="static input width, a multiple of 32 (default 1024)")
    o.add_argument("--dynamic", action="store_true", help="symbolic batch, height and width (instead of a size)")
    o.add_argument("--simplify", action="store_true", help="simplify with onnxslim / onnxsim when installed")
    o.add_argument("--opset", type=int, default=None, help="ONNX opset (default 17)")
    o.add_argument("--int8", action="store_true",
                   help="write --out as a static int8 (QDQ) quantization for CPUs (the fp32 file beside it)")
    o.add_argument("--calibration", type=int, default=32, metavar="N",
                   help="with --int8: synthetic calibration scenes (default 32)")
    o.add_argument("--calibration-seed", type=int, default=None, metavar="S",
                   help="with --int8: scene seed of the calibration set (default 5555, used by no evaluation)")

    t = sub.add_parser("tensorrt", help="ONNX -> serialized TensorRT engine (+ JSON sidecar)")
    t.add_argument("--onnx", required=True, help="an ONNX file written by `hle export onnx`")
    t.add_argument("--out", required=True, help="output engine path (sidecar written as <out>.json)")
    t.add_argument("--fp16", action="store_true", help="allow FP16 kernels (BuilderFlag.FP16)")
    t.add_argument("--int8", action="store_true",
                   help="INT8 engine (BuilderFlag.INT8): of a QDQ file from `hle export onnx --int8`, or of an "
                        "fp32 file with --calibration-cache")
    t.add_argument("--calibration-cache", default=None, metavar="FILE",
                   help="TensorRT calibration cache (<int8>.onnx.calibration.cache); implies --int8")
    t.add_argument("--workspace", type=int, default=1024, help="builder workspace limit in MiB (default 1024)")
    t.add_argument("--min", type=parse_shape, default=None, help="dynamic profile minimum BxCxHxW")
    t.add_argument("--opt", type=parse_shape, default=None, help="dynamic profile optimum BxCxHxW")
    t.add_argument("--max", type=parse_shape, default=None, help="dynamic profile maximum BxCxHxW")
    t.add_argument("--verbose", action="store_true", help="TensorRT verbose log")
    c = sub.add_parser("checkpoint", help="training checkpoint -> deployable weights-only checkpoint")
    c.add_argument("--checkpoint", required=True, help="HLE checkpoint (.pt) written by training")
    c.add_argument("--out", required=True, help="output .pt path")
    c.add_argument("--fp32", action="store_true", help="keep float32 weights (default: stored as float16)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    if args.export_target == "onnx":
        return _run_onnx(args)
    if args.export_target == "checkpoint":
        from ..model import release_checkpoint

        out = release_checkpoint(args.checkpoint, args.out, half=not args.fp32)
        print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB, weights "
              f"{'float32' if args.fp32 else 'float16'}, no optimizer state)")
        return 0
    return _run_tensorrt(args)


def _run_onnx(args: argparse.Namespace) -> int:
    from ..runtime.export import ONNX_OPSET, export_onnx, read_onnx_metadata

    if args.dynamic and (args.height is not None or args.width is not None):
        raise ValueError(f"--dynamic excludes --height/--width, got height={args.height} width={args.width}")
    if not args.dynamic and (args.height is None) != (args.width is None):
        raise ValueError(f"give both --height and --width, got height={args.height} width={args.width}")
    height = args.height if args.height is not None else (None if args.dynamic else 512)
    width = args.width if args.width is not None else (None if args.dynamic else 1024)
    if not args.int8 and (args.calibration != 32 or args.calibration_seed is not None):
        raise ValueError("--calibration / --calibration-seed only apply with --int8")
    if args.int8 and args.calibration < 1:
        raise ValueError(f"--calibration must be >= 1, got {args.calibration}")
    target = Path(args.out)
    fp32_out = target.with_name(target.stem + ".fp32" + target.suffix) if args.int8 else target
    out = export_onnx(args.checkpoint, fp32_out, height=height, width=width, dynamic=args.dynamic,
                      simplify=args.simplify, opset=args.opset or ONNX_OPSET)
    info = read_onnx_metadata(out)
    size = "dynamic" if info.dynamic else f"{info.height}x{info.width}"
    print(f"wrote {out}: {info.config.model.backbone}, input {size}, outputs {', '.join(info.output_names)}, "
          f"{len(info.config.classes)} classes")
    if args.int8:
        from ..runtime.quantize import CALIBRATION_SEED, quantize_onnx

        seed = CALIBRATION_SEED if args.calibration_seed is None else args.calibration_seed
        q = quantize_onnx(out, target, num_calibration=args.calibration, calibration_seed=seed)
        print(f"wrote {q.onnx}: int8 QDQ (per-channel weights), calibrated on {q.num_calibration} synthetic scenes "
              f"of seed {q.calibration_seed} at {q.size[0]}x{q.size[1]}; ranges of {q.tensors} tensors in "
              f"{q.ort_cache.name} and {q.tensorrt_cache.name} (TensorRT)")
    return 0


def _run_tensorrt(args: argparse.Namespace) -> int:
    from ..runtime.tensorrt_build import ProfileShapes
    from ..runtime.tensorrt_backend import export_engine

    shapes = (args.min, args.opt, args.max)
    if any(s is not None for s in shapes) and not all(s is not None for s in shapes):
        raise ValueError(f"give all of --min/--opt/--max or none, got min={args.min} opt={args.opt} max={args.max}")
    profile = ProfileShapes(*shapes) if args.min is not None else None
    out, key = export_engine(args.onnx, args.out, fp16=args.fp16, workspace_mb=args.workspace, profile=profile,
                             verbose=args.verbose, int8=args.int8, calibration_cache=args.calibration_cache)
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB, TensorRT {key.tensorrt_version}, {key.gpu_name}, "
          f"{key.precision}, profile {list(key.input_shapes)}) and its sidecar {out.name}.json")
    return 0
