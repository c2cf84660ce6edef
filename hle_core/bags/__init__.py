"""rosbag2 bags without ROS (rosbags): write synthetic camera bags, read damaged ones, evaluate a model on a bag.

* :func:`write_synthetic_bag` — ``hle synth --video --bag``: images + Cityscapes-convention ground truth.
* :class:`BagReader` — mcap / sqlite3, directories or single files; salvages truncated MCAP files.
* :func:`evaluate_bag` — ``hle bag-eval``: the node's :class:`~hle_core.pipeline.Pipeline` on every image in
  header-stamp order; PQ, STQ, VPQ, ID switches, embedding stability, latency; every frame accounted for.
* :func:`write_report` — ``report.md`` and plots from the metrics.
* :func:`run_fleet` — ``hle bag-eval --bags``: many bags, one model, one report from the summed statistics;
  serial, a process pool or Ray; resumable (:mod:`hle_core.bags.fleet`).

Importing this package does not import rosbags, torch or matplotlib; the functions do.
"""
from .evaluate import DEFAULT_MAX_PIXELS, default_output_bag, evaluate_bag
from .fleet import FleetSettings, run_fleet
from .reader import BagError, BagReader, BagRecord, TopicSummary
from .report import render_markdown, write_report
from .writer import (DEFAULT_GT_TOPIC, DEFAULT_IMAGE_TOPIC, STORAGES, BagWriter, SyntheticBagInfo, check_target,
                     resolve_target, write_synthetic_bag)

__all__ = [
    "evaluate_bag", "default_output_bag", "DEFAULT_MAX_PIXELS", "write_report", "render_markdown",
    "run_fleet", "FleetSettings",
    "BagError", "BagReader", "BagRecord", "TopicSummary",
    "DEFAULT_GT_TOPIC", "DEFAULT_IMAGE_TOPIC", "STORAGES", "BagWriter", "SyntheticBagInfo", "resolve_target",
    "check_target", "write_synthetic_bag",
]
