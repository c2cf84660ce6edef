#!/usr/bin/env python3
"""Where the things are lost: matched / missed / spurious thing segments per class and per area bin.

PQ's recognition quality (RQ = TP / (TP + ½FP + ½FN)) says *how many* things were missed; this table says *which*:
a ground-truth thing counts as matched when one prediction of its class overlaps it with IoU > 0.5 (PQ's matching
rule, which makes the match unique), as missed otherwise; a predicted thing matched by no ground truth is
spurious and binned by its own area. Areas in pixels of the evaluated image; COCO's small / medium / large cut-offs
are 32² and 96² at COCO's resolution, here the bins are finer because synthetic things are small.

    python scripts/thing_recall_by_size.py --gt-json D/annotations/panoptic_val.json \
        --gt-folder D/annotations/panoptic_val --pred-json E/predictions.json --pred-folder E/predictions

Reads the COCO panoptic files that ``hle synth`` and ``hle evaluate`` write; prints a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hle_core.panoptic_io import read_panoptic_png  # noqa: E402

DEFAULT_BINS = (0, 100, 200, 400, 800, 1600)


def count_by_size(gt_json: Path, gt_folder: Path, pred_json: Path, pred_folder: Path,
                  bins: tuple[int, ...] = DEFAULT_BINS) -> dict[str, np.ndarray]:
    """{class name: (len(bins), 3) int array of [matched, missed, spurious]} over every image of ``gt_json``."""
    gt, pred = json.loads(gt_json.read_text()), json.loads(pred_json.read_text())
    things = {c["id"]: c["name"] for c in gt["categories"] if c.get("isthing")}
    pred_by_image = {a["image_id"]: a for a in pred["annotations"]}
    edges = np.asarray(bins[1:])
    counts = {name: np.zeros((len(bins), 3), np.int64) for name in things.values()}
    for g_ann in gt["annotations"]:
        p_ann = pred_by_image.get(g_ann["image_id"])
        if p_ann is None:
            raise SystemExit(f"no prediction for image {g_ann['image_id']!r} in {pred_json}")
        g_ids = read_panoptic_png(gt_folder / g_ann["file_name"]).astype(np.int64)
        p_ids = read_panoptic_png(pred_folder / p_ann["file_name"]).astype(np.int64)
        g_cat = {s["id"]: s["category_id"] for s in g_ann["segments_info"]}
        p_cat = {s["id"]: s["category_id"] for s in p_ann["segments_info"]}
        # joint histogram of (gt id, pred id) pairs: every overlap at once
        pairs, inter = np.unique(np.stack([g_ids.ravel(), p_ids.ravel()]), axis=1, return_counts=True)
        g_area = dict(zip(*np.unique(g_ids, return_counts=True)))
        p_area = dict(zip(*np.unique(p_ids, return_counts=True)))
        matched_g, matched_p = set(), set()
        for (gid, pid), n in zip(pairs.T, inter):
            cat = g_cat.get(gid)
            if cat not in things or p_cat.get(pid) != cat:
                continue
            if n / (g_area[gid] + p_area[pid] - n) > 0.5:       # IoU > 0.5: PQ's unique match
                matched_g.add(gid)
                matched_p.add(pid)
        for gid, cat in g_cat.items():
            if cat in things:
                b = int(np.searchsorted(edges, g_area.get(gid, 0), side="right"))
                counts[things[cat]][b, 0 if gid in matched_g else 1] += 1
        for pid, cat in p_cat.items():
            if cat in things and pid not in matched_p:
                counts[things[cat]][int(np.searchsorted(edges, p_area.get(pid, 0), side="right")), 2] += 1
    return counts


def markdown(counts: dict[str, np.ndarray], bins: tuple[int, ...] = DEFAULT_BINS) -> str:
    labels = [f"{lo}–{hi}" for lo, hi in zip(bins, bins[1:])] + [f"≥ {bins[-1]}"]
    lines = ["| class | area [px] | matched | missed | spurious | recall |", "| --- | --- | --- | --- | --- | --- |"]
    for name, c in counts.items():
        for label, (tp, fn, fp) in zip(labels, c):
            recall = f"{tp / (tp + fn):.2f}" if tp + fn else "–"
            lines.append(f"| {name} | {label} | {tp} | {fn} | {fp} | {recall} |")
        tp, fn, fp = c.sum(0)
        lines.append(f"| **{name}** | all | {tp} | {fn} | {fp} | {tp / max(tp + fn, 1):.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gt-json", type=Path, required=True)
    ap.add_argument("--gt-folder", type=Path, required=True)
    ap.add_argument("--pred-json", type=Path, required=True)
    ap.add_argument("--pred-folder", type=Path, required=True)
    ap.add_argument("--bins", type=int, nargs="+", default=list(DEFAULT_BINS),
                    help="lower area edges of the bins, increasing, starting at 0")
    args = ap.parse_args(argv)
    bins = tuple(args.bins)
    if bins[0] != 0 or any(b <= a for a, b in zip(bins, bins[1:])):
        ap.error("--bins must start at 0 and increase")
    print(markdown(count_by_size(args.gt_json, args.gt_folder, args.pred_json, args.pred_folder, bins), bins))
    return 0


if __name__ == "__main__":
    sys.exit(main())
