"""The fleet report of ``hle bag-eval --bags``: metrics from the statistics summed over all frames of all bags.

* :func:`aggregate` — per-bag rows (with their ``sums``, see :meth:`hle_core.bags.scoring.FrameScorer.sums`)
  → fleet PQ / PQ_th / PQ_st (panopticapi's PQ of the summed per-category TP / FP / FN / ΣIoU), STQ = sqrt(AQ ×
  SQ) with AQ = Σ AQ-numerators / Σ tubes and SQ from the summed semantic confusion, VPQ from the summed
  window statistics, ID switches summed, latency percentiles over every frame after each bag's warm-up (from
  summed log-spaced histograms, :func:`latency_histogram`: within 1 %; mean, max and counts exact).
  Bags are added in the fleet's order, so every executor gives the same floating-point sums.
* :func:`write_fleet_report` — ``fleet.json``, ``fleet_report.md``, ``fleet_pq.png`` (per-bag PQ).
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = ["aggregate", "sum_statistics", "write_fleet_report", "render_fleet_markdown", "latency_histogram",
           "histogram_percentiles", "LATENCY_BIN_RATIO"]

#: Latency histograms: bin i holds values in [LATENCY_MIN_MS·r^i, LATENCY_MIN_MS·r^(i+1)), r = 1.01, so a
#: percentile read from the merged histogram is within 1 % of the exact one (mean, max and counts are exact).
LATENCY_BIN_RATIO = 1.01
LATENCY_MIN_MS = 1e-3


def latency_histogram(timings: Sequence[dict[str, float]]) -> dict[str, dict[str, Any]]:
    """Per-frame ``timings_ms`` dicts → a summable histogram per stage: ``{stage: {"n", "sum", "max", "bins":
    {bin index (str): count}}}`` (sparse, log-spaced bins: its size does not grow with the bag's length)."""
    out: dict[str, dict[str, Any]] = {}
    for stage in sorted({k for t in timings for k in t}):
        v = np.asarray([t[stage] for t in timings if stage in t], np.float64)
        idx = np.floor(np.log(np.maximum(v, LATENCY_MIN_MS) / LATENCY_MIN_MS) / np.log(LATENCY_BIN_RATIO))
        bins, counts = np.unique(idx.astype(np.int64), return_counts=True)
        out[stage] = {"n": int(v.size), "sum": float(v.sum()), "max": float(v.max()),
                      "bins": {str(int(b)): int(c) for b, c in zip(bins, counts)}}
    return out


def _merge_histograms(total: dict[str, dict[str, Any]], h: dict[str, dict[str, Any]]) -> None:
    for stage, x in h.items():
        t = total.setdefault(stage, {"n": 0, "sum": 0.0, "max": float("-inf"), "bins": {}})
        t["n"] += int(x["n"])
        t["sum"] += float(x["sum"])
        t["max"] = max(t["max"], float(x["max"]))
        for b, c in x["bins"].items():
            t["bins"][b] = t["bins"].get(b, 0) + int(c)


def histogram_percentiles(hist: dict[str, dict[str, Any]], percentiles: Sequence[int] = (50, 90, 99)
                          ) -> dict[str, dict[str, float]]:
    """``{stage: {"p50", "p90", "p99", "max", "mean", "n"}}`` as
    :func:`~hle_core.bags.metrics.stage_latency_percentiles`, the percentiles read from the histogram (nearest rank;
    the bin's geometric centre, at most the maximum)."""
    out = {}
    for stage, h in hist.items():
        if not h["n"]:
            continue
        bins = sorted((int(b), c) for b, c in h["bins"].items())
        cum = np.cumsum([c for _, c in bins])
        row = {}
        for q in percentiles:
            k = int(np.searchsorted(cum, max(1, int(np.ceil(q / 100 * h["n"])))))
            centre = LATENCY_MIN_MS * LATENCY_BIN_RATIO ** (bins[min(k, len(bins) - 1)][0] + 0.5)
            row[f"p{q}"] = float(min(centre, h["max"]))
        out[stage] = {**row, "max": float(h["max"]), "mean": h["sum"] / h["n"], "n": int(h["n"])}
    return out


def sum_statistics(sums: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """Add per-bag summable statistics (in the given order); None when there are none."""
    total: dict[str, Any] | None = None
    for s in sums:
        if total is None:
            total = {"categories": s["categories"], "frames_scored": 0, "id_switches": 0, "latency": {},
                     "pq": {k: np.zeros_like(np.asarray(v)) for k, v in s["pq"].items()},
                     "stq": {"aq_sum": 0.0, "tubes": 0, "confusion": np.zeros_like(np.asarray(s["stq"]["confusion"]))}}
            if "vpq" in s:
                total["vpq"] = {n: {k: (0 if k == "num_windows" else np.zeros_like(np.asarray(v)))
                                    for k, v in w.items()} for n, w in s["vpq"].items()}
        if s["categories"] != total["categories"]:
            raise ValueError(f"bags were evaluated with different categories: {s['categories']['ids']} vs "
                             f"{total['categories']['ids']}")
        total["frames_scored"] += int(s["frames_scored"])
        total["id_switches"] += int(s["id_switches"])
        _merge_histograms(total["latency"], s.get("latency", {}))
        for k, v in s["pq"].items():
            total["pq"][k] = total["pq"][k] + np.asarray(v)
        total["stq"]["aq_sum"] += float(s["stq"]["aq_sum"])
        total["stq"]["tubes"] += int(s["stq"]["tubes"])
        total["stq"]["confusion"] = total["stq"]["confusion"] + np.asarray(s["stq"]["confusion"])
        for n, w in s.get("vpq", {}).items():
            for k, v in w.items():
                total["vpq"][n][k] = total["vpq"][n][k] + (int(v) if k == "num_windows" else np.asarray(v))
    return total


def _scores(total: dict[str, Any]) -> dict[str, Any]:
    """PQ / STQ / VPQ / ID switches of summed statistics (as a single bag's ``metrics.json`` computes them)."""
    from ..evaluation.pq import Categories, PQStats
    from .scoring import video_metrics_from_sums

    c = total["categories"]
    stats = PQStats(Categories(tuple(c["ids"]), tuple(bool(t) for t in c["isthing"]), tuple(c["names"])))
    for k, v in total["pq"].items():
        setattr(stats, k, int(v) if k == "images" else v)
    pq = stats.results()
    out = {"PQ": pq["All"]["pq"], "PQ_th": pq["Things"]["pq"], "PQ_st": pq["Stuff"]["pq"], "SQ": pq["All"]["sq"],
           "RQ": pq["All"]["rq"], "pq": {k: pq[k] for k in ("All", "Things", "Stuff", "per_class")}}
    video = video_metrics_from_sums(total, c["ids"], c["isthing"])
    out["STQ"], out["AQ"], out["SQ_sem"] = video["stq"]["STQ"], video["stq"]["AQ"], video["stq"]["SQ_sem"]
    if "vpq" in video:
        out.update(VPQ=video["vpq"]["VPQ"], VPQ_things=video["vpq"]["VPQ_things"],
                   VPQ_stuff=video["vpq"]["VPQ_stuff"])
    out["id_switches"] = video["id_switches"]
    return out


def aggregate(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Fleet figures of the bag rows (``status`` ok rows carry ``sums`` and frame counts).

    Raises:
        AssertionError: a bag's frames do not add up (evaluated + rejected != total): a bug, not bad input.
    """
    from .scoring import json_safe

    ok = [r for r in rows if r["status"] == "ok"]
    frames = {k: sum(int(r[k] or 0) for r in ok)
              for k in ("frames_total", "frames_evaluated", "frames_rejected", "frames_scored")}
    for r in ok:
        if r["frames_evaluated"] + r["frames_rejected"] != r["frames_total"]:
            raise AssertionError(f"frame accounting broken for {r['bag']}: {r['frames_evaluated']} evaluated + "
                                 f"{r['frames_rejected']} rejected != {r['frames_total']}")
    rejected: Counter = Counter()
    for r in ok:
        rejected.update(r.get("rejected_by_reason") or {})
    out: dict[str, Any] = {"bags": len(rows), "bags_ok": len(ok), "bags_failed": len(rows) - len(ok),
                           "bags_damaged": sum(1 for r in ok if r.get("read_error")), **frames,
                           "rejected_by_reason": dict(sorted(rejected.items()))}
    total = sum_statistics([r["sums"] for r in ok])
    if total is None or not total["frames_scored"]:
        out["not_scored"] = "no frame of any bag had valid ground truth: PQ, STQ, VPQ and ID switches skipped"
    else:
        out.update(_scores(total))
    out["latency_ms"] = histogram_percentiles(total["latency"]) if total is not None else {}
    return json_safe(out)


def _pct(v: Any) -> str:
    return "–" if v is None else f"{100 * v:.1f}"


def render_fleet_markdown(result: dict[str, Any], files: dict[str, Any]) -> str:
    """``fleet_report.md`` of a :func:`hle_core.bags.fleet.run_fleet` result."""
    from .report import _table

    f, run = result["fleet"], result["run"]
    lines = ["# Fleet evaluation", "",
             f"- model: `{result['model']}` (sha256 {result['model_sha256'][:12]}…)",
             f"- settings: `{json.dumps(result['settings'], sort_keys=True)}`",
             f"- run: {run['executor']}, {run['workers']} worker(s) × {run['threads']} torch thread(s); "
             f"{run['evaluated']} bag(s) evaluated, {run['reused']} up to date (reused); {run['elapsed_s']:.1f} s"
             + (f"; Ray start-up {run['ray_init_s']:.1f} s" if run.get("ray_init_s") is not None else ""), ""]
    lines += ["## Frames", ""]
    lines += _table(["bags", "read", "failed", "damaged (salvaged)", "frames total", "evaluated", "rejected", "scored"],
                    [[f["bags"], f["bags_ok"], f["bags_failed"], f["bags_damaged"], f["frames_total"],
                      f["frames_evaluated"], f["frames_rejected"], f["frames_scored"]]])
    lines += ["", "evaluated + rejected = total for every bag read; a bag that could not be read is a row below "
              "with its reason." + (" Rejected by reason: " + ", ".join(f"`{k}` {v}" for k, v in
                                                                        f["rejected_by_reason"].items())
                                    if f["rejected_by_reason"] else ""), ""]
    lines += ["## Fleet metrics (summed over all frames of all bags, not averaged per bag)", ""]
    if "PQ" in f:
        lines += _table(["PQ", "PQ_th", "PQ_st", "SQ", "RQ", "STQ", "AQ", "SQ (semantic)", "VPQ", "ID switches"],
                        [[_pct(f["PQ"]), _pct(f["PQ_th"]), _pct(f["PQ_st"]), _pct(f["SQ"]), _pct(f["RQ"]),
                          _pct(f["STQ"]), _pct(f["AQ"]), _pct(f["SQ_sem"]), _pct(f.get("VPQ")), f["id_switches"]]])
    else:
        lines.append(f["not_scored"])
    lat = f.get("latency_ms", {})
    lines += ["", "Latency per pipeline stage [ms], every evaluated frame after each bag's warm-up:", ""]
    lines += _table(["stage", "p50", "p90", "p99", "max", "mean", "frames"],
                    [[k, *(f"{v[q]:.2f}" for q in ("p50", "p90", "p99", "max", "mean")), v["n"]]
                     for k, v in lat.items()]) if lat else ["No frame was processed."]
    lines += ["", "## Bags", ""]
    rows = []
    for b in result["bags"]:
        name = f"[{Path(b['bag']).name}]({b['report']})" if b.get("report") else f"`{b['bag']}`"
        if b["status"] == "ok":
            note = ("damaged: " + str(b["read_error"])) if b.get("read_error") else ""
            note += (" (up to date, reused)" if b.get("reused") else "")
            rows.append([name, b["frames_total"], b["frames_evaluated"], b["frames_rejected"], b["frames_scored"],
                         _pct(b.get("PQ")), note.strip()])
        else:
            rows.append([name, "–", "–", "–", "–", "–", f"**not evaluated**: {b.get('reason')}"])
    lines += _table(["bag", "frames", "evaluated", "rejected", "scored", "PQ", "notes"], rows)
    if files.get("plots"):
        lines += ["", *[f"![{Path(p).stem}]({p})" for p in files["plots"]]]
    elif files.get("plots_skipped"):
        lines += ["", f"Plot skipped: {files['plots_skipped']}"]
    lines.append("")
    return "\n".join(lines)


def _plot_pq(result: dict[str, Any], out: Path) -> str:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bags = result["bags"]
    names = [Path(b["bag"]).name for b in bags]
    pq = [100 * b["PQ"] if b["status"] == "ok" and b.get("PQ") is not None else 0.0 for b in bags]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.35 * len(bags) + 2), 3.2))
    colors = ["tab:blue" if b["status"] == "ok" and b.get("PQ") is not None else "tab:red" for b in bags]
    ax.bar(range(len(bags)), pq, color=colors)
    fleet_pq = result["fleet"].get("PQ")
    if fleet_pq is not None:
        ax.axhline(100 * fleet_pq, color="black", lw=1, ls="--", label=f"fleet PQ {100 * fleet_pq:.1f}")
        ax.legend(fontsize=8)
    ax.set_xticks(range(len(bags)))
    ax.set_xticklabels(names, rotation=60, ha="right", fontsize=7)
    ax.set(ylabel="PQ [%]", title="PQ per bag (red: not evaluated / not scored)")
    fig.tight_layout()
    fig.savefig(out / "fleet_pq.png", dpi=100)
    plt.close(fig)
    return "fleet_pq.png"


def write_fleet_report(result: dict[str, Any], rows: Sequence[dict[str, Any]], out: str | Path) -> dict[str, Any]:
    """Write ``fleet_pq.png`` (when plots are on and matplotlib is installed), ``fleet_report.md`` and
    ``fleet.json`` into ``out``; returns ``{"report", "json", "plots", "plots_skipped"}`` (relative paths)."""
    from ..atomic_io import atomic_write_bytes

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Any] = {"report": "fleet_report.md", "json": "fleet.json", "plots": [], "plots_skipped": None}
    if result["settings"].get("plots", True):
        try:
            files["plots"].append(_plot_pq(result, out))
        except ImportError:
            files["plots_skipped"] = "matplotlib is not installed"
    else:
        files["plots_skipped"] = "plots switched off"
    atomic_write_bytes(out / "fleet_report.md", render_fleet_markdown(result, files).encode())
    atomic_write_bytes(out / "fleet.json", json.dumps({**result, "files": files}, indent=1).encode())
    return files
