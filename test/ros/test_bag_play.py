"""``hle bag-play`` as its own process on real DDS: a subscriber here receives the bag's images with their stamps.

Isolation as in test_node_process.py: a ROS_DOMAIN_ID of this test module's own, discovery on localhost only.
The bag is written by hle_core (rosbags); the oracle is the list of (stamp, pixels) that went into it.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("rosbags")
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from hle_core.bags import BagWriter  # noqa: E402
from hle_core.bags.types import IMAGE_TYPE  # noqa: E402
from hle_core.bags.writer import image_message  # noqa: E402
from hle_core.image_codec import encode_array  # noqa: E402
from hle_ros.conversions import image_to_array  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DOMAIN_ID = 200 + os.getpid() % 30            # apart from the node tests' 100..199 and conftest's 1..100
RNG = np.random.default_rng(3)


def write_bag(path: Path) -> list[tuple[int, str, np.ndarray]]:
    """Five small frames (rgb8 and one bgr8) with irregular stamps, written in stamp order."""
    frames = [(1_700_000_000_000_000_000 + k * 50_000_000 + k * k, "rgb8" if k != 3 else "bgr8",
               RNG.integers(0, 256, (24, 40, 3), dtype=np.uint8)) for k in range(5)]
    with BagWriter(path) as bag:
        bag.add_topic("/camera/image_raw", IMAGE_TYPE)
        for stamp, encoding, pixels in frames:
            bag.write("/camera/image_raw", stamp, image_message(bag.typestore, encode_array(pixels, encoding), stamp,
                                                                "camera"))
    return frames


def test_bag_play_publishes_the_bag_with_its_stamps(tmp_path: Path) -> None:
    frames = write_bag(tmp_path / "cam.mcap")
    context = rclpy.Context()                   # test/conftest.py keeps discovery on localhost
    rclpy.init(context=context, domain_id=DOMAIN_ID)
    node = rclpy.create_node("bag_play_listener", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    received: list[Image] = []
    node.create_subscription(Image, "/replayed", received.append,
                             QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))
    env = dict(os.environ, ROS_DOMAIN_ID=str(DOMAIN_ID), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               PYTHONUNBUFFERED="1")
    log = tmp_path / "play.log"
    cmd = [sys.executable, "-m", "hle_core.cli", "bag-play", "--bag", str(tmp_path / "cam.mcap"),
           "--topic", "/camera/image_raw", "--publish-topic", "/replayed", "--rate", "4", "--wait", "30",
           "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while len(received) < len(frames) and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        rc = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        executor.shutdown(timeout_sec=0.5)
        node.destroy_node()
        rclpy.try_shutdown(context=context)
    output = log.read_text()
    assert rc == 0, output
    assert f"published {len(frames)} messages" in output
    assert len(received) == len(frames), output
    for msg, (stamp, encoding, pixels) in zip(received, frames):            # recording order = stamp order here
        assert msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec == stamp
        assert msg.header.frame_id == "camera" and msg.encoding == encoding
        np.testing.assert_array_equal(image_to_array(msg), pixels)


def test_bag_play_script_refuses_a_missing_topic(tmp_path: Path) -> None:
    write_bag(tmp_path / "cam.mcap")
    env = dict(os.environ, ROS_DOMAIN_ID=str(DOMAIN_ID), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    out = subprocess.run([sys.executable, "-m", "hle_ros.bag_play", "--bag", str(tmp_path / "cam.mcap"),
                          "--topic", "/nope", "--wait", "0"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2
    assert "/nope" in out.stderr and "/camera/image_raw" in out.stderr


def test_output_bag_messages_equal_the_nodes() -> None:
    """hle_core.bags.writer.panoptic_message (rosbags, bag-eval --output-bag) builds the same message, byte for byte
    after a rosbags round trip, as the node's hle_ros.conversions.build_panoptic_msg (rclpy)."""
    pytest.importorskip("hle_ros.msg", reason="hle_ros messages not built (make setup)")
    from rclpy.serialization import serialize_message
    from std_msgs.msg import Header

    from hle_core.bags.types import PANOPTIC_TYPE, hle_typestore
    from hle_core.bags.types import header as bag_header
    from hle_core.bags.writer import panoptic_message
    from hle_core.config import street_class_table
    from hle_core.pipeline import FrameResult
    from hle_ros.conversions import build_panoptic_msg

    pan = np.zeros((6, 9), np.int32)
    pan[:2], pan[3:5, 1:4], pan[4:6, 6:9], pan[5, 0] = 23, 26000, 26001, 7
    ids = np.array([7, 23, 26000, 26001], np.int64)
    emb = RNG.normal(size=(4, 12)).astype(np.float32)
    result = FrameResult(panoptic=pan, ids=ids, category_ids=np.array([7, 23, 26, 26]),
                         is_thing=np.array([False, False, True, True]),
                         scores=np.linspace(0.2, 0.9, 4, dtype=np.float32),
                         areas=np.array([(pan == v).sum() for v in ids]),
                         boxes=np.array([[0, 5, 0, 5], [0, 0, 8, 1], [1, 3, 3, 4], [6, 4, 8, 5]]),
                         embeddings=emb / np.linalg.norm(emb, axis=1, keepdims=True),
                         track_ids=np.array([-1, -1, 4, 9]))
    classes = street_class_table()
    rclpy_header = Header(frame_id="camera")
    rclpy_header.stamp.sec, rclpy_header.stamp.nanosec = 1_700_000_000, 5
    node_msg = build_panoptic_msg(rclpy_header, result, classes, 12, "torch", 3.5)
    store = hle_typestore()
    ours = panoptic_message(store, bag_header(store, 1_700_000_000 * 10**9 + 5, "camera"), result, classes, 12,
                            "torch", 3.5)
    theirs = store.deserialize_cdr(bytes(serialize_message(node_msg)), PANOPTIC_TYPE)
    assert bytes(store.serialize_cdr(theirs, PANOPTIC_TYPE)) == bytes(store.serialize_cdr(ours, PANOPTIC_TYPE))
