"""Text tables of panoptic evaluation results (paper §4.2): panopticapi's PQ / SQ / RQ summary and the extras
(PQ†, parsing covering, mIoU, optionally per category), as ``hle evaluate`` prints them."""
from __future__ import annotations

from typing import Any, Mapping

from .pq import Categories

__all__ = ["format_pq_table", "format_extra_table"]


def format_pq_table(results: Mapping[str, Any]) -> str:
    """panopticapi's summary table: PQ SQ RQ (in %) and N for All / Things / Stuff."""
    lines = ["{:10s}| {:>5s}  {:>5s}  {:>5s} {:>5s}".format("", "PQ", "SQ", "RQ", "N"), "-" * (10 + 7 * 4)]
    for name in ("All", "Things", "Stuff"):
        r = results[name]
        lines.append("{:10s}| {:5.1f}  {:5.1f}  {:5.1f} {:5d}".format(
            name, 100 * r["pq"], 100 * r["sq"], 100 * r["rq"], r["n"]))
    return "\n".join(lines)


def format_extra_table(results: Mapping[str, Any], categories: Categories | None = None,
                       per_class: bool = False) -> str:
    """PQ† and PC for All / Things / Stuff and mIoU (in %); with ``per_class`` one row per category."""
    lines = ["{:10s}| {:>5s}  {:>5s}".format("", "PQ†", "PC"), "-" * 24]
    for name in ("All", "Things", "Stuff"):
        lines.append("{:10s}| {:5.1f}  {:5.1f}".format(
            name, 100 * results["pq_dagger"][name]["pq_dagger"], 100 * results["pc"][name]["pc"]))
    lines.append("mIoU {:5.1f} over {} categories".format(100 * results["miou"]["miou"], results["miou"]["n"]))
    if per_class:
        names = dict(zip(categories.ids, categories.names)) if categories is not None else {}
        fmt = lambda v: "    -" if v is None else "{:5.1f}".format(100 * v)  # noqa: E731
        lines.append("")
        lines.append("{:>6s} {:16s}| {:>5s} {:>5s} {:>5s} {:>5s} {:>5s} {:>5s} {:>6s} {:>6s} {:>6s}".format(
            "id", "name", "PQ", "SQ", "RQ", "PQ†", "PC", "IoU", "TP", "FP", "FN"))
        for cid, r in results["per_class"].items():
            lines.append("{:>6} {:16.16s}| {:5.1f} {:5.1f} {:5.1f} {} {} {} {:6d} {:6d} {:6d}".format(
                cid, names.get(cid, ""), 100 * r["pq"], 100 * r["sq"], 100 * r["rq"], fmt(r["pq_dagger"]),
                fmt(r["pc"]), fmt(r["semantic_iou"]), r["tp"], r["fp"], r["fn"]))
    return "\n".join(lines)

