"""``hle evaluate``: panoptic evaluation (paper §4.2).

    hle evaluate --checkpoint runs/synthetic_small/final.pt --data data/synth_val --split val [--flip]
    hle evaluate pq --gt-json gt.json --gt-folder gt/ --pred-json pred.json --pred-folder pred/ --out results.json

Without a MODE, ``--checkpoint C --data DIR`` evaluates a network: it predicts every image of the data set
(``hle_core.data.PanopticDataset``, COCO or Cityscapes layout; ``--flip`` averages the maps of each image and
its mirror image), writes the predictions as COCO panoptic files (``OUT/predictions.json`` + ``predictions/``),
scores them against the data set's own COCO panoptic ground truth (or, when it has none, the ground truth
written to ``OUT/ground_truth.json``) and writes ``OUT/results.json``.

``pq`` evaluates COCO panoptic files (PNG ids R + 256G + 256²B plus JSON ``segments_info``) exactly as
panopticapi's ``pq_compute`` does and prints its All / Things / Stuff table (PQ SQ RQ N), then PQ†, parsing
covering and mIoU; ``--out`` writes panopticapi's result keys (``All``, ``Things``, ``Stuff``, ``per_class``)
plus ``pq_dagger``, ``pc`` and ``miou`` as JSON. Only NumPy and OpenCV are imported on this path (no torch), so
start-up is fast.

Also runnable without the ``hle`` script: ``python -m hle_core.commands.evaluate pq ...``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

__all__ = ["add_parser", "run", "main"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("evaluate", help="panoptic evaluation (PQ / PQ† / PC / mIoU) of a checkpoint on a "
                                               "data set, or of COCO panoptic prediction files",
                              usage="hle evaluate --checkpoint C --data DIR [options]\n"
                                    "       hle evaluate pq --gt-json F --pred-json F [options]",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(func=run, evaluate_command=None)
    ck = p.add_argument_group("checkpoint evaluation (no MODE): predict on a data set, write and score predictions")
    ck.add_argument("--checkpoint", type=Path, default=None, help="HLE checkpoint (.pt) written by hle train")
    ck.add_argument("--data", type=Path, default=None, help="data set root (layout of hle synth / the official one)")
    ck.add_argument("--format", choices=("coco", "cityscapes"), default="coco", help="data set layout (default coco)")
    ck.add_argument("--split", default="val", help="split name in the data set paths (default val)")
    ck.add_argument("--flip", action="store_true", help="flip test-time augmentation (average with the mirror image)")
    ck.add_argument("--decoder", type=Path, default=None, metavar="YAML",
                    help="YAML whose 'hle: decoder:' section overrides the checkpoint's decoder thresholds "
                         "(e.g. the output of hle tune-decoder)")
    ck.add_argument("--out", dest="out_dir", type=Path, default=None, metavar="OUTDIR",
                    help="folder for predictions.json, predictions/ and results.json "
                         "(default: eval_<split>[_flip] beside the checkpoint)")
    ck.add_argument("--test-scale", type=float, default=None, metavar="S",
                    help="resize each image by S before the network (hle.model.test_scale; default: the "
                         "checkpoint's own, 1 unless its release set one); results are scored at the image's size")
    ck.add_argument("--device", default="auto", help="auto (CUDA when available) | cpu | cuda | cuda:N")
    ck.add_argument("--limit", type=int, default=None, help="evaluate only the first N images")
    ck.add_argument("--workers", type=int, default=None,
                    help="scoring threads (default: number of CPU cores; 1 = this thread only)")
    ck.add_argument("--per-class", action="store_true", help="also print the per-category table")
    ck.add_argument("--no-progress", action="store_true", help="no progress bar")
    modes = p.add_subparsers(dest="evaluate_command", metavar="MODE", title="modes")

    pq = modes.add_parser("pq", help="panoptic quality of COCO panoptic prediction files (panopticapi-exact)",
                          description="PQ exactly as panopticapi's pq_compute, plus PQ†, PC and mIoU. Predictions are "
                                      "matched to ground-truth annotations by image_id (int or string).")
    pq.add_argument("--gt-json", type=Path, required=True, help="ground-truth COCO panoptic JSON (with categories)")
    pq.add_argument("--gt-folder", type=Path, default=None,
                    help="folder of ground-truth PNGs (default: the --gt-json path without .json, as panopticapi)")
    pq.add_argument("--pred-json", type=Path, required=True, help="prediction COCO panoptic JSON")
    pq.add_argument("--pred-folder", type=Path, default=None,
                    help="folder of predicted PNGs (default: the --pred-json path without .json)")
    pq.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    pq.add_argument("--workers", type=int, default=None,
                    help="worker threads over images (default: number of CPU cores; 1 = this thread only)")
    pq.add_argument("--per-class", action="store_true", help="also print the per-category table")
    pq.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    if args.evaluate_command == "pq":
        if getattr(args, "checkpoint", None) is not None or getattr(args, "data", None) is not None:
            print("hle evaluate: error: --checkpoint / --data evaluate a network and take no MODE; "
                  "`hle evaluate pq` scores prediction files", file=sys.stderr)
            return 2
        return _run_pq(args)
    if args.checkpoint is None or args.data is None:
        print("hle evaluate: error: give --checkpoint C and --data DIR to evaluate a network, or a MODE "
              "(`hle evaluate pq --help` scores COCO panoptic files)", file=sys.stderr)
        return 2
    return _run_checkpoint(args)


def _run_checkpoint(args: argparse.Namespace) -> int:
    """Predict, write COCO panoptic predictions, score them; torch is imported here only."""
    import json

    from ..config import ConfigError
    from ..evaluation import PanopticFormatError, format_extra_table, format_pq_table
    from ..evaluation.checkpoint_eval import evaluate_checkpoint
    from ..model import CheckpointError

    for flag, value in (("--limit", args.limit), ("--workers", args.workers)):
        if value is not None and value < 1:
            print(f"hle evaluate: error: {flag} must be >= 1, got {value}", file=sys.stderr)
            return 2
    out_dir = args.out_dir or args.checkpoint.parent / f"eval_{args.split}{'_flip' if args.flip else ''}"
    try:
        ev = evaluate_checkpoint(args.checkpoint, args.data, out_dir, format=args.format, split=args.split,
                                 flip=args.flip, decoder_yaml=args.decoder, device=args.device, limit=args.limit,
                                 workers=args.workers, progress=not args.no_progress, test_scale=args.test_scale)
    except (CheckpointError, ConfigError, FileNotFoundError, PanopticFormatError) as exc:
        print(f"hle evaluate: error: {exc}", file=sys.stderr)
        return 2
    print(format_pq_table(ev.results))
    print()
    print(format_extra_table(ev.results, ev.stats.categories, per_class=args.per_class))
    results_path = out_dir / "results.json"
    results_path.write_text(json.dumps({**ev.results, "evaluation": ev.info}, indent=2) + "\n")
    print(f"{ev.info['images']} images, flip {'on' if args.flip else 'off'}, test scale {ev.info['test_scale']:g}, "
          f"ground truth {ev.ground_truth.json}")
    print(f"wrote {ev.predictions_json} (+ {ev.predictions_folder.name}/) and {results_path}")
    return 0


def _run_pq(args: argparse.Namespace) -> int:
    import json
    import os

    # no linear algebra here: spare NumPy's import the start of an OpenBLAS thread pool
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

    from ..evaluation import PanopticFormatError, format_extra_table, format_pq_table, pq_compute

    if args.workers is not None and args.workers < 1:
        print(f"hle evaluate pq: error: --workers must be >= 1, got {args.workers}", file=sys.stderr)
        return 2
    try:
        results, stats = pq_compute(args.gt_json, args.pred_json, args.gt_folder, args.pred_folder,
                                    workers=args.workers, return_stats=True)
    except PanopticFormatError as exc:
        print(f"hle evaluate pq: error: {exc}", file=sys.stderr)
        return 2
    print(format_pq_table(results))
    print()
    print(format_extra_table(results, stats.categories, per_class=args.per_class))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m hle_core.commands.evaluate ...``: this command alone, without the other ``hle`` commands."""
    parser = argparse.ArgumentParser(prog="hle")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["evaluate", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
