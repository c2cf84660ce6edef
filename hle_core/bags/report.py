"""``report.md``, plots and overlay images of a bag evaluation (:func:`hle_core.bags.evaluate_bag`).

Plots need matplotlib (the ``train`` extra); without it the report says so and only the overlay PNGs (Pillow)
are written. Every figure is drawn from the metrics dict, so a report can be rebuilt from ``metrics.json``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .reasons import REASON_TEXT

__all__ = ["write_report", "render_markdown"]


def _fmt(v: Any, pct: bool = False, digits: int = 1) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{100 * v:.{digits}f}" if pct else f"{v:.{max(digits, 2)}f}"
    return str(v)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out


def render_markdown(m: dict[str, Any], files: dict[str, Any]) -> str:
    """The report text for metrics ``m`` and the written ``files`` (plots, overlays)."""
    lines = [f"# Bag evaluation: {Path(m['bag']).name}", ""]
    lines += [f"- bag: `{m['bag']}` ({m['storage']}{', salvaged by a linear scan' if m.get('salvaged') else ''})",
              f"- image topic: `{m['image_topic']}`; ground truth: `{m['gt_topic']}`" if m.get("gt_topic")
              else f"- image topic: `{m['image_topic']}`; no ground-truth topic",
              (f"- predictions: recorded node output `{m['pred_bag']}` on `{m['pred_topic']}`" if m.get("pred_bag")
               else f"- model: `{m.get('model')}`; backend: {m['backend']['name']} on {m['backend'].get('device')}"
               + (f" ({m['backend']['selection_reason']})" if m["backend"].get("selection_reason") else "")),
              f"- tracker: {m['tracker'] if m.get('tracker') else 'off'}",
              f"- sequences: {m['sequences']} (new sequence after a header-stamp gap > {m['sequence_gap_s']} s or a "
              "frame_id change; the tracker is reset there)", ""]
    lines += ["## Frames", ""]
    lines += _table(["total", "evaluated", "rejected", "scored (with ground truth)", "declared by the bag", "read"],
                    [[m["frames_total"], m["frames_evaluated"], m["frames_rejected"], m.get("frames_scored", 0),
                      _fmt(m.get("frames_declared")), _fmt(m.get("frames_read"))]])
    lines += ["", "evaluated + rejected = total. Evaluated frames all count for latency and tracking; only scored "
              "frames count for PQ / STQ / VPQ / ID switches / stability.", ""]
    if m.get("read_error") or m.get("open_error"):
        lines += ["**The bag is damaged.**",
                  f"- opening: {m.get('open_error') or 'fine'}", f"- reading: {m.get('read_error') or 'fine'}", ""]

    lines += ["## What was skipped and why", ""]
    skipped = [(f"rejected: `{r}`", n, REASON_TEXT.get(r, "")) for r, n in m["rejected_by_reason"].items()]
    skipped += [(f"not scored: `{s}`", n, REASON_TEXT.get(s, "")) for s, n in m["gt_status"].items() if s != "scored"]
    if m.get("gt_unmatched"):
        skipped.append(("ground-truth messages without an image", m["gt_unmatched"], "no image has their stamp"))
    if m.get("gt_duplicate_stamps"):
        skipped.append(("duplicate ground-truth stamps", m["gt_duplicate_stamps"], "the first message is used"))
    if m.get("gt_undecodable_messages"):
        skipped.append(("undecodable ground-truth messages", m["gt_undecodable_messages"], "bytes do not deserialise"))
    if m.get("predictions_unmatched"):
        skipped.append(("recorded predictions without an image", m["predictions_unmatched"],
                        "no camera image has their header stamp"))
    if m.get("predictions_duplicate_stamps"):
        skipped.append(("recorded predictions with a repeated stamp", m["predictions_duplicate_stamps"],
                        "the first one is scored"))
    for reason, n in (m.get("predictions_unreadable") or {}).items():
        skipped.append((f"recorded predictions: `{reason}`", n, "not a readable PanopticSegmentation message"))
    if m.get("latency_warmup_frames_excluded"):
        skipped.append(("latency warm-up frames", m["latency_warmup_frames_excluded"],
                        "left out of the latency percentiles (lazy initialisation)"))
    if files.get("plots_skipped"):
        skipped.append(("plots", "–", files["plots_skipped"]))
    lines += (_table(["what", "count", "why"], skipped) if skipped
              else ["Nothing: every frame was evaluated and scored."])
    for reason, texts in m.get("examples", {}).items():
        lines += ["", f"`{reason}` examples:"] + [f"- {t}" for t in texts]
    lines.append("")

    if "pq" in m:
        pq = m["pq"]
        lines += ["## Panoptic quality over the sequence(s)", ""]
        lines += _table(["", "PQ", "SQ", "RQ", "categories"],
                        [[k, _fmt(pq[k]["pq"], True), _fmt(pq[k]["sq"], True), _fmt(pq[k]["rq"], True), pq[k]["n"]]
                         for k in ("All", "Things", "Stuff")])
        s, v, st = m["stq"], m["vpq"], m["embedding_stability"]
        lines += ["", "## Video panoptic segmentation and tracking", ""]
        lines += _table(["STQ", "AQ", "SQ (semantic)", "VPQ", "VPQ things", "VPQ stuff", "ID switches"],
                        [[_fmt(s["STQ"], True), _fmt(s["AQ"], True), _fmt(s["SQ_sem"], True), _fmt(v["VPQ"], True),
                          _fmt(v["VPQ_things"], True), _fmt(v["VPQ_stuff"], True), m["id_switches"]]])
        lines += ["", "VPQ over windows of 1–4 consecutive scored frames; ID switches by CLEAR MOT (mask IoU > 0.5).",
                  "", "## Embedding temporal stability", ""]
        lines += _table(["object pairs (t-1, t)", "objects", "mean d_cos same object", "mean d_cos nearest other",
                         "closer to itself"],
                        [[st["pairs"], st["objects"], _fmt(st["mean_same_object_distance"], digits=3),
                          _fmt(st["mean_nearest_other_distance"], digits=3),
                          _fmt(st["closer_to_self_fraction"], True)]])
        lines += ["", "Ground-truth objects are matched to predicted segments by IoU > 0.5; d_cos = 1 − cos of the "
                  "segments' mean embeddings in consecutive scored frames; the nearest other object is any other "
                  "matched object of the previous frame.", ""]
    else:
        lines += ["## Scores", "", m.get("not_scored", "not scored"), ""]

    lines += ["## Latency per pipeline stage [ms]", ""]
    lat = m.get("latency_ms", {})
    lines += _table(["stage", "p50", "p90", "p99", "max", "mean", "frames"],
                    [[k, *(f"{v[q]:.2f}" for q in ("p50", "p90", "p99", "max", "mean")), v["n"]]
                     for k, v in lat.items()]) if lat else ["No frame was processed."]
    lines.append("")
    if files.get("plots") or files.get("overlays"):
        lines += ["## Figures", ""]
        lines += [f"![{Path(p).stem}]({p})" for p in files.get("plots", [])]
        if files.get("overlays"):
            lines += ["", "Overlays: " + ", ".join(f"[{Path(p).stem}]({p})" for p in files["overlays"])]
        lines.append("")
    if m.get("output_bag"):
        ob = m["output_bag"]
        lines += [f"Output bag: `{ob['path']}`, {ob['messages']} messages on `{ob['topic']}` "
                  "(hle_ros/msg/PanopticSegmentation).", ""]
    return "\n".join(lines)


def write_report(metrics: dict[str, Any], out: Path, *, overlays: Sequence[tuple[int, np.ndarray, np.ndarray]] = (),
                 classes: Any = None, plots: bool = True) -> dict[str, Any]:
    """Write overlay PNGs, plots (when matplotlib is available) and ``report.md`` into ``out``.

    Args:
        overlays: ``(frame index, (H, W, 3) uint8 RGB image, (H, W) panoptic map)`` of the frames to show.
        classes: the model's class table (overlay colours).
    Returns:
        ``{"report", "plots": [...], "overlays": [...], "plots_skipped": reason or None}``, paths relative to out.
    """
    from PIL import Image as PILImage

    from ..visualize import overlay as overlay_image

    out = Path(out)
    files: dict[str, Any] = {"plots": [], "overlays": [], "plots_skipped": None}
    tiles = []
    for index, image, panoptic in overlays:
        tile = overlay_image(image, panoptic, classes) if classes is not None else image
        name = f"overlay_{index:05d}.png"
        PILImage.fromarray(np.ascontiguousarray(tile)).save(out / name)
        files["overlays"].append(name)
        tiles.append((index, tile))
    if plots:
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            files["plots_skipped"] = "matplotlib is not installed (pip install matplotlib, or the [train] extra)"
        else:
            files["plots"] = _plots(metrics, out, tiles, plt)
    else:
        files["plots_skipped"] = "plots switched off"
    (out / "report.md").write_text(render_markdown(metrics, files), encoding="utf-8")
    files["report"] = "report.md"
    return files


def _sequence_starts(frames: list[dict[str, Any]]) -> list[int]:
    return [f["index"] for k, f in enumerate(frames) if k and f["sequence"] != frames[k - 1]["sequence"]]


def _plots(m: dict[str, Any], out: Path, tiles: list[tuple[int, np.ndarray]], plt: Any) -> list[str]:
    frames = m.get("per_frame", [])
    written = []

    def save(fig: Any, name: str) -> None:
        fig.tight_layout()
        fig.savefig(out / name, dpi=100)
        plt.close(fig)
        written.append(name)

    # PQ per frame
    fig, ax = plt.subplots(figsize=(8, 3))
    xs = [f["index"] for f in frames if f.get("pq") is not None]
    ax.plot(xs, [100 * f["pq"] for f in frames if f.get("pq") is not None], ".-", lw=0.8)
    for s in _sequence_starts(frames):
        ax.axvline(s - 0.5, color="grey", lw=0.5, ls="--")
    ax.set(xlabel="frame (header-stamp order)", ylabel="PQ [%]", title="PQ per frame (scored frames)", ylim=(0, 100))
    save(fig, "pq_per_frame.png")

    # latency histogram
    fig, ax = plt.subplots(figsize=(6, 3))
    lat = [f["latency_ms"] for f in frames if f.get("latency_ms") is not None]
    if lat:
        ax.hist(lat, bins=min(40, max(5, len(lat) // 2)), color="tab:blue", alpha=0.8)
        total = m.get("latency_ms", {}).get("total", {})
        for q, c in (("p50", "k"), ("p90", "tab:orange"), ("p99", "tab:red")):
            if q in total:
                ax.axvline(total[q], color=c, lw=1, label=f"{q} {total[q]:.1f} ms")
        ax.legend(fontsize=8)
    ax.set(xlabel="pipeline total [ms]", ylabel="frames", title="latency per frame")
    save(fig, "latency_hist.png")

    # track timelines: ground-truth objects and predicted tracks over frames
    fig, axes = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
    for ax, key, title in ((axes[0], "gt_objects", "ground-truth objects"), (axes[1], "tracks", "predicted tracks")):
        rank: dict[tuple[int, int], int] = {}
        pts = []
        for f in frames:
            for obj in f.get(key, []):
                pts.append((f["index"], rank.setdefault((f["sequence"], obj), len(rank))))
        if pts:
            x, y = zip(*pts)
            ax.scatter(x, y, s=4, c=y, cmap="tab20", marker="s")
        for s in _sequence_starts(frames):
            ax.axvline(s - 0.5, color="grey", lw=0.5, ls="--")
        ax.set(ylabel="id (order of appearance)", title=f"{title}: {len(rank)}")
    axes[1].set_xlabel("frame (header-stamp order)")
    save(fig, "track_timelines.png")

    # strip of overlays
    if tiles:
        fig, axes = plt.subplots(1, len(tiles), figsize=(3 * len(tiles), 3 * tiles[0][1].shape[0] / tiles[0][1].shape[1]
                                                          + 0.5), squeeze=False)
        for ax, (index, tile) in zip(axes[0], tiles):
            ax.imshow(tile)
            ax.set_title(f"frame {index}", fontsize=8)
            ax.axis("off")
        save(fig, "overlays.png")
    return written
