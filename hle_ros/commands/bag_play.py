"""``hle bag-play``: publish a bag's images to a running node over ROS 2, with their original header stamps.

    hle synth --video --bag camera.mcap --num 1 --frames 30
    ros2 run hle_ros panoptic_node --ros-args -p model:=model.pt -r image:=/camera/image_raw &
    hle bag-play --bag camera.mcap --topic /camera/image_raw --rate 1.0

For a live end-to-end check where ``ros2 bag play`` is not installed: the stored messages are published as
they are (serialised bytes, so header stamps and frame ids are the recorded ones), paced by their recording
times divided by ``--rate`` (0 = as fast as possible), in recording order. Needs rclpy (the replay itself is
:mod:`hle_ros.bag_play`, also installed as the ``hle_bag_play`` script). This module is the ``hle`` command,
registered through the ``hle.commands`` entry point; it imports rclpy only in :func:`run`.
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

__all__ = ["add_parser", "add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of ``hle bag-play`` / ``hle_bag_play`` (shared by both entry points)."""
    p.add_argument("--bag", type=Path, required=True, help="rosbag2 directory, or a .mcap / .db3 file")
    p.add_argument("--topic", required=True, help="topic of the bag to publish (any message type)")
    p.add_argument("--publish-topic", default=None, help="publish under this name instead (default: --topic)")
    p.add_argument("--rate", type=float, default=1.0,
                   help="playback speed factor on the recording times; 0 = as fast as possible (default 1)")
    p.add_argument("--loop", action="store_true", help="start over at the end (until Ctrl-C)")
    p.add_argument("--wait", type=float, default=10.0, metavar="S",
                   help="wait up to S seconds for a subscriber before the first message (0: do not wait; default 10)")
    p.add_argument("--qos-reliability", choices=("reliable", "best_effort"), default="reliable",
                   help="publisher reliability (reliable also reaches best-effort subscribers; default reliable)")
    p.add_argument("--qos-depth", type=int, default=10, help="publisher keep-last depth (default 10)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("bag-play", help="publish a bag's images to a running node over ROS 2 (rclpy)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    if not args.bag.exists():
        raise FileNotFoundError(f"bag not found: {args.bag}")
    if importlib.util.find_spec("rclpy") is None:
        print("hle bag-play: error: rclpy is not installed; it needs ROS 2 Python (source a ROS 2 install, or "
              "`make setup` for the pip-installed ROS 2 of this project). Without ROS, evaluate the bag with "
              "`hle bag-eval`.", file=sys.stderr)
        return 2
    from ..bag_play import run_from_args          # ROS only from here on

    return run_from_args(args)
