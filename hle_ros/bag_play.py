"""Replay one topic of a rosbag2 bag over rclpy, as recorded: ``hle bag-play`` (:mod:`hle_ros.commands.bag_play`)
and the ``hle_bag_play`` script.

For a live end-to-end check of the node where ``ros2 bag play`` is not installed. The bag is read with
rosbags (:class:`hle_core.bags.BagReader`, mcap / sqlite3, directory or single file) and each message is
published as its stored serialised bytes (``Publisher.publish(bytes)``), so header stamps, frame ids and
encodings reach the subscriber exactly as recorded. Pacing follows the recording (log) times divided by
``rate``; ``rate <= 0`` publishes as fast as possible.

    hle_bag_play --bag camera.mcap --topic /camera/image_raw --publish-topic image --rate 2
"""
from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import rclpy
from rclpy.duration import Duration
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

from hle_core.bags import BagError, BagReader

__all__ = ["message_class", "play_bag", "run_from_args", "main"]


def message_class(msgtype: str) -> type:
    """The rclpy message class of a rosbag2 type name, e.g. ``sensor_msgs/msg/Image`` → ``sensor_msgs.msg.Image``.

    Raises:
        BagError: the type's Python package is not installed here.
    """
    package, kind, name = (msgtype.split("/") + ["", ""])[:3]
    if kind != "msg" or not name:
        raise BagError(f"cannot publish message type {msgtype!r}: expected <package>/msg/<Name>")
    try:
        return getattr(importlib.import_module(f"{package}.msg"), name)
    except (ImportError, AttributeError) as exc:
        raise BagError(f"message type {msgtype} is not available to rclpy here ({exc})") from exc


def play_bag(bag: str | Path, topic: str, node: Any, *, publish_topic: str | None = None, rate: float = 1.0,
             loop: bool = False, wait_s: float = 10.0, reliability: str = "reliable", depth: int = 10,
             progress: bool = True, should_stop: Callable[[], bool] | None = None) -> int:
    """Publish the messages of ``topic`` in ``bag`` with ``node`` (an rclpy node of an initialised context).

    Args:
        publish_topic: name to publish under (default ``topic``).
        rate: speed factor on the recording times; ``<= 0``: no pacing.
        loop: replay until ``should_stop()`` returns True (or Ctrl-C).
        wait_s: wait up to this long for a first subscriber before publishing (0: do not wait).
        reliability, depth: publisher QoS (reliable reaches best-effort subscribers too).
    Returns:
        the number of messages published.
    Raises:
        FileNotFoundError: no bag. BagError: the topic is not in the bag or its type is unknown here.
    """
    from tqdm import tqdm

    with BagReader(bag) as reader:
        reader.require_topics([topic])
        info = reader.topics.get(topic)
        msgtype = info.msgtype if info is not None else ""
        total = info.declared if info is not None else None
    if not msgtype:                                                     # salvaged file without metadata
        with BagReader(bag) as reader:
            first = next(iter(reader.messages([topic], deserialize=False)), None)
        if first is None:
            raise BagError(f"no readable message on {topic} in {bag}")
        msgtype = first.msgtype
    qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=max(1, int(depth)),
                     reliability=ReliabilityPolicy.RELIABLE if reliability == "reliable"
                     else ReliabilityPolicy.BEST_EFFORT)
    publisher = node.create_publisher(message_class(msgtype), publish_topic or topic, qos)
    log = node.get_logger()
    deadline = time.monotonic() + max(0.0, wait_s)
    while wait_s > 0 and publisher.get_subscription_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    if wait_s > 0 and publisher.get_subscription_count() == 0:
        log.warning(f"no subscriber on {publisher.topic_name} after {wait_s:.1f} s; publishing anyway")
    published = 0
    stop = should_stop or (lambda: False)
    try:
        while True:
            with BagReader(bag) as reader, tqdm(total=total, unit="msg", desc=f"bag-play {publisher.topic_name}",
                                                disable=not progress) as bar:
                start_wall = start_log = None
                for rec in reader.messages([topic], deserialize=False):
                    if stop():
                        return published
                    if rate > 0:
                        if start_log is None:
                            start_wall, start_log = time.monotonic(), rec.log_time
                        delay = start_wall + (rec.log_time - start_log) / 1e9 / rate - time.monotonic()
                        if delay > 0:
                            time.sleep(delay)
                    publisher.publish(rec.raw)
                    published += 1
                    bar.update(1)
                if reader.error:
                    log.warning(f"bag {bag}: {reader.error}")
            if not loop or stop():
                break
    finally:
        if reliability == "reliable":                                  # let the last samples reach the reader
            publisher.wait_for_all_acked(Duration(seconds=2.0))
        node.destroy_publisher(publisher)
    return published


def run_from_args(args: argparse.Namespace, ros_args: Sequence[str] | None = None) -> int:
    """Run a replay from parsed ``hle bag-play`` options in a ROS context of its own; returns the exit code."""
    from hle_ros.panoptic_node import configure_transport

    configure_transport()                                              # large images: LARGE_DATA transport
    context = rclpy.Context()
    rclpy.init(args=list(ros_args) if ros_args is not None else None, context=context)
    node = rclpy.create_node("hle_bag_play", context=context)
    try:
        n = play_bag(args.bag, args.topic, node, publish_topic=args.publish_topic, rate=args.rate, loop=args.loop,
                     wait_s=args.wait, reliability=args.qos_reliability, depth=args.qos_depth,
                     progress=not args.no_progress)
        print(f"published {n} messages from {args.bag} on {args.publish_topic or args.topic}")
        return 0
    except (BagError, FileNotFoundError) as exc:
        print(f"bag-play: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        node.destroy_node()
        rclpy.try_shutdown(context=context)


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point ``hle_bag_play`` (options of ``hle bag-play``; ``--ros-args ...`` are passed to rclpy)."""
    from rclpy.utilities import remove_ros_args

    from hle_ros.commands.bag_play import add_arguments

    argv = list(sys.argv if argv is None else ["hle_bag_play", *argv])
    parser = add_arguments(argparse.ArgumentParser(prog="hle_bag_play", description=__doc__,
                                                   formatter_class=argparse.RawDescriptionHelpFormatter))
    args = parser.parse_args(remove_ros_args(argv)[1:])
    from hle_core.allocator import keep_freed_memory

    keep_freed_memory()                           # as the hle command does (hle bag-play comes through it)
    return run_from_args(args, ros_args=argv)


if __name__ == "__main__":
    sys.exit(main())
