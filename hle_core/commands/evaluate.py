"""``hle evaluate``: panoptic evaluation (paper §4.2).

    hle evaluate pq --gt-json gt.json --gt-folder gt/ --pred-json pred.json --pred-folder pred/ --out results.json

``pq`` evaluates COCO panoptic files (PNG ids R + 256G + 256²B plus JSON ``segments_info``) exactly as
panopticapi's ``pq_compute`` does and prints its All / Things / Stuff table (PQ SQ RQ N), then PQ†, parsing
covering and mIoU; ``--out`` writes panopticapi's result keys (``All``, ``Things``, ``Stuff``, ``per_class``)
plus ``pq_dagger``, ``pc`` and ``miou`` as JSON. Evaluating a checkpoint directly (``--checkpoint``) is a later
mode of this command. Only NumPy and OpenCV are imported on this path (no torch), so start-up is fast.

Also runnable without the ``hle`` script: ``python -m hle_core.commands.evaluate pq ...``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

__all__ = ["add_parser", "run", "main"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("evaluate", help="panoptic evaluation: PQ / PQ† / PC / mIoU of COCO panoptic files",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(func=run, evaluate_command=None)
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
                    help="worker processes over images (default: number of CPU cores; 1 = this process)")
    pq.add_argument("--per-class", action="store_true", help="also print the per-category table")
    pq.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    if args.evaluate_command != "pq":
        print("hle evaluate: choose a mode, e.g. `hle evaluate pq --help`", file=sys.stderr)
        return 2
    return _run_pq(args)


def _run_pq(args: argparse.Namespace) -> int:
    import json  # noqa: PLC0415 - light imports only: NumPy (+ OpenCV in the workers' PNG reader)

    from ..evaluation import PanopticEvalError, format_extra_table, format_pq_table, pq_compute  # noqa: PLC0415

    if args.workers is not None and args.workers < 1:
        print(f"hle evaluate pq: error: --workers must be >= 1, got {args.workers}", file=sys.stderr)
        return 2
    try:
        results, stats = pq_compute(args.gt_json, args.pred_json, args.gt_folder, args.pred_folder,
                                    workers=args.workers, return_stats=True)
    except PanopticEvalError as exc:
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
