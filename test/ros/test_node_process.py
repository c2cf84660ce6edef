"""The panoptic node as its own process on real DDS (Fast DDS over loopback), driven by a test node.

One node process (module fixture) serves most checks: outputs match inputs, visual topics, a stream of bad
images, parameters from two YAML files and ``-p`` overrides, lifecycle transitions, SIGINT shutdown (last).
Isolation: a ROS_DOMAIN_ID of its own and ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("hle_ros.msg", reason="hle_ros messages not built (make setup)")
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from lifecycle_msgs.msg import Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState, GetState  # noqa: E402
from rcl_interfaces.srv import GetParameters  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

import ros_harness  # noqa: E402
from hle_ros.conversions import array_to_image, image_to_array  # noqa: E402
from ros_harness import DriverNode  # noqa: E402
from hle_ros.msg import PanopticSegmentation  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow                   # node processes: ~1.5 min on the 2-core machine
NODE = "/hle_panoptic"
DOMAIN_ID = 100 + os.getpid() % 100           # its own domain: parallel test runs do not see each other


def start_node(extra_args: list[str], log: Path) -> subprocess.Popen:
    return ros_harness.start_node([sys.executable, "-m", "hle_ros.panoptic_node"], extra_args, log, DOMAIN_ID,
                                  cwd=ROOT)


class RosDriver(DriverNode):
    """A test-side ROS node in its own context: publishes images, collects the node's outputs."""

    def __init__(self) -> None:
        super().__init__("hle_test_driver", DOMAIN_ID, transports="LARGE_DATA")    # the 8000 x 8000 frame
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.image_pub = self.node.create_publisher(Image, "image", reliable)
        self.compressed_pub = self.node.create_publisher(CompressedImage, "image/compressed", reliable)
        self.received: dict[str, list[Any]] = {"panoptic": [], "diagnostics": []}
        self.node.create_subscription(PanopticSegmentation, f"{NODE}/panoptic", self.received["panoptic"].append, 50)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self.received["diagnostics"].append, 50)

    def subscribe(self, name: str, msg_type: type = Image) -> list[Any]:
        self.received[name] = []
        self.node.create_subscription(msg_type, f"{NODE}/{name}", self.received[name].append, 10)
        return self.received[name]

    def panoptic_for(self, sec: int, timeout: float = 10.0) -> PanopticSegmentation | None:
        def find() -> PanopticSegmentation | None:
            return next((m for m in self.received["panoptic"] if m.header.stamp.sec == sec), None)

        self.spin_until(lambda: find() is not None, timeout)
        return find()

    def call(self, srv_type: type, name: str, request: Any, timeout: float = 10.0) -> Any:
        client = self.node.create_client(srv_type, name)
        assert client.wait_for_service(timeout_sec=timeout), f"service {name} not available"
        future = client.call_async(request)
        self.spin_until(future.done, timeout)
        self.node.destroy_client(client)
        return future.result()


def header(sec: int, frame: str = "camera") -> Header:
    h = Header(frame_id=frame)
    h.stamp.sec, h.stamp.nanosec = sec, 123456
    return h


RNG = np.random.default_rng(1)


def picture(h: int, w: int) -> np.ndarray:
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


# --- the shared node --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def node(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("node")
    override = tmp / "override.yaml"                # a second parameters file, node-specific, on top of the base
    override.write_text("hle_panoptic:\n  ros__parameters:\n    diagnostics:\n      period: 0.25\n"
                        "    tracking:\n      min_hits: 1\n")
    log = tmp / "node.log"
    proc = start_node(["--params-file", str(ROOT / "config" / "panoptic.yaml"), "--params-file", str(override),
                       "-p", f"model:={tiny_model}", "-p", "backend:=torch", "-p", "device:=cpu",
                       "-p", "qos.reliability:=reliable", "-p", "subscribe_compressed:=true",
                       "-p", "embedding_mode:=first3",
                       "-p", "pipeline_overlap:=true"], log)   # the two-thread path (the default is one thread)
    tester = RosDriver()
    try:
        up = tester.spin_until(lambda: tester.image_pub.get_subscription_count() > 0 and
                               tester.compressed_pub.get_subscription_count() > 0, 60.0)
        if not up:
            pytest.fail(f"node did not subscribe within 60 s; exit code {proc.poll()}; log:\n{log.read_text()}")
        yield proc, tester, log
    finally:
        tester.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def publish_and_wait(tester: RosDriver, msg: Image, sec: int) -> PanopticSegmentation:
    msg.header = header(sec)
    tester.image_pub.publish(msg)
    out = tester.panoptic_for(sec)
    assert out is not None, f"no panoptic message for stamp {sec}"
    return out


# --- tests --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("encoding,pad", [("rgb8", 0), ("bgr8", 5), ("mono8", 0), ("bgra8", 0)])
def test_panoptic_output_matches_the_input(node, encoding: str, pad: int) -> None:
    _, tester, _ = node
    rgb = picture(48, 80)
    pixels = {"rgb8": rgb, "bgr8": rgb[..., ::-1], "mono8": rgb[..., 0],
              "bgra8": np.concatenate([rgb[..., ::-1], np.full((48, 80, 1), 255, np.uint8)], 2)}[encoding]
    msg = array_to_image(np.ascontiguousarray(pixels), encoding)
    if pad:                                             # rows padded with garbage
        rows = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.step)
        msg.data = np.concatenate([rows, np.full((msg.height, pad), 77, np.uint8)], 1).tobytes()
        msg.step += pad
    sec = 1000 + ["rgb8", "bgr8", "mono8", "bgra8"].index(encoding)
    out = publish_and_wait(tester, msg, sec)
    assert (out.header.stamp.sec, out.header.stamp.nanosec, out.header.frame_id) == (sec, 123456, "camera")
    assert out.labels.header == out.header
    labels = image_to_array(out.labels)
    assert labels.shape == (48, 80) and out.labels.encoding == "32SC1"
    ids = set(np.unique(labels).tolist()) - {0}
    assert ids == {i.id for i in out.instances}          # label image and instance list agree
    assert out.embedding_dim > 0 and out.label_divisor == 1000 and out.backend == "torch"
    assert len(out.class_names) == len(out.class_ids) == len(out.class_is_thing)
    for inst in out.instances:
        ys, xs = np.nonzero(labels == inst.id)
        assert inst.area == xs.size
        assert (inst.bbox.x_offset, inst.bbox.width) == (xs.min(), xs.max() - xs.min() + 1)
        assert (inst.bbox.y_offset, inst.bbox.height) == (ys.min(), ys.max() - ys.min() + 1)
        assert out.class_ids[inst.class_index] == inst.class_id
        assert inst.is_thing == (inst.id >= out.label_divisor)
        e = np.asarray(inst.embedding)
        assert e.shape == (out.embedding_dim,) and abs(np.linalg.norm(e) - 1.0) < 1e-4


def test_compressed_images(node) -> None:
    import cv2

    _, tester, _ = node
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(picture(40, 56)[..., ::-1]))
    msg = CompressedImage(header=header(1100), format="png", data=buf.tobytes())
    tester.compressed_pub.publish(msg)
    out = tester.panoptic_for(1100)
    assert out is not None and (out.labels.height, out.labels.width) == (40, 56)


def test_visual_topics_when_subscribed(node) -> None:
    _, tester, _ = node
    got = {name: tester.subscribe(name) for name in ("labels", "overlay", "embedding")}
    # the node learns about the new subscribers asynchronously: publish until every topic delivered once
    sec = 1200
    ok = False
    while not ok and sec < 1240:
        publish_and_wait(tester, array_to_image(picture(32, 64), "rgb8"), sec)
        ok = tester.spin_until(lambda: all(any(m.header.stamp.sec == sec for m in v) for v in got.values()), 0.3)
        sec += 1
    assert ok, {k: len(v) for k, v in got.items()}
    sec -= 1
    pan = tester.panoptic_for(sec)
    labels, = [m for m in got["labels"] if m.header.stamp.sec == sec]
    assert labels.encoding == "32SC1" and bytes(labels.data) == bytes(pan.labels.data)
    for name in ("overlay", "embedding"):
        img, = [m for m in got[name] if m.header.stamp.sec == sec]
        assert (img.encoding, img.height, img.width, img.header.frame_id) == ("rgb8", 32, 64, "camera")


def diagnostics_values(tester: RosDriver, newer_than: float, timeout: float = 5.0) -> dict[str, str]:
    """Key/values of the node's first /diagnostics status received after ``newer_than`` (monotonic)."""
    box: list[dict[str, str]] = []

    def take(msg: DiagnosticArray) -> None:
        if time.monotonic() > newer_than:
            for st in msg.status:
                if st.hardware_id == NODE:
                    box.append({kv.key: kv.value for kv in st.values} | {"__level": st.level, "__msg": st.message})

    sub = tester.node.create_subscription(DiagnosticArray, "/diagnostics", take, 10)
    tester.spin_until(lambda: bool(box), timeout)
    tester.node.destroy_subscription(sub)
    assert box, "no /diagnostics from the node"
    return box[-1]


def test_bad_images_leave_the_node_alive_and_counted(node) -> None:
    proc, tester, log = node
    bad = [
        Image(height=4, width=4, encoding="yuv422", step=8, data=b"\0" * 32),        # unsupported encoding
        Image(height=4, width=4, encoding="32FC1", step=16, data=b"\0" * 64),         # not an image to segment
        Image(height=4, width=10, encoding="rgb8", step=20, data=b"\0" * 80),        # step < width * 3
        Image(height=0, width=0, encoding="rgb8", step=0),                            # empty
        Image(height=4, width=4, encoding="rgb8", step=12, data=b"\0" * 47),          # data size mismatch
    ]
    for i, msg in enumerate(bad):
        msg.header = header(1300 + i)
        tester.image_pub.publish(msg)
        tester.spin_until(lambda: False, 0.05)
    huge = Image(header=header(1310), height=8000, width=8000, encoding="mono8", step=8000)
    huge.data = np.zeros(8000 * 8000, np.uint8).tobytes()                            # a real 64 MB frame
    tester.image_pub.publish(huge)
    del huge
    # keep-last 1: a frame published now could replace the 64 MB one in the node's queue; wait for its verdict
    deadline = time.monotonic() + 20
    while (time.monotonic() < deadline
           and diagnostics_values(tester, time.monotonic()).get("rejected.too_large") is None):
        pass
    tiny = publish_and_wait(tester, array_to_image(picture(1, 1), "rgb8"), 1320)        # 1 x 1 is valid
    assert (tiny.labels.height, tiny.labels.width) == (1, 1)
    publish_and_wait(tester, array_to_image(picture(32, 32), "rgb8"), 1321)             # still serving
    assert proc.poll() is None
    v = diagnostics_values(tester, time.monotonic())
    counts = {k: int(v.get(f"rejected.{k}", "0")) for k in ("encoding", "step", "empty", "size", "too_large")}
    assert counts == {"encoding": 2, "step": 1, "empty": 1, "size": 1, "too_large": 1}, (counts, v)
    assert int(v["rejected"]) == 6 and v["failed"] == "0"
    assert "image rejected" in log.read_text()                                         # warned (throttled)


def test_parameters_from_yaml_files_and_overrides(node) -> None:
    _, tester, _ = node
    names = ["diagnostics.period", "tracking.min_hits", "backend", "qos.reliability", "max_pixels",
             "overlay_alpha", "decoder.seed_threshold", "embedding_mode"]
    res = tester.call(GetParameters, f"{NODE}/get_parameters", GetParameters.Request(names=names))
    got = {}
    for name, value in zip(names, res.values):
        by_type = {1: value.bool_value, 2: value.integer_value, 3: value.double_value, 4: value.string_value}
        got[name] = by_type[value.type]
    assert got == {
        "diagnostics.period": 0.25, "tracking.min_hits": 1,               # second YAML file
        "backend": "torch", "qos.reliability": "reliable", "embedding_mode": "first3",   # -p overrides
        "max_pixels": 16777216, "overlay_alpha": 0.5, "decoder.seed_threshold": -1.0,    # base YAML
    }


def test_lifecycle_deactivate_and_activate(node) -> None:
    _, tester, _ = node

    def state() -> str:
        return tester.call(GetState, f"{NODE}/get_state", GetState.Request()).current_state.label

    def change(transition: int) -> bool:
        req = ChangeState.Request()
        req.transition.id = transition
        return tester.call(ChangeState, f"{NODE}/change_state", req, timeout=30.0).success

    assert state() == "active"
    assert change(Transition.TRANSITION_DEACTIVATE) and state() == "inactive"
    msg = array_to_image(picture(32, 32), "rgb8")
    msg.header = header(1400)
    tester.image_pub.publish(msg)                       # no subscription while inactive: nothing comes back
    assert tester.panoptic_for(1400, timeout=0.5) is None
    v = diagnostics_values(tester, time.monotonic())
    assert v["state"] == "inactive" and v["backend"] == "none"
    assert change(Transition.TRANSITION_ACTIVATE) and state() == "active"
    assert tester.spin_until(lambda: tester.image_pub.get_subscription_count() > 0, 10)
    publish_and_wait(tester, array_to_image(picture(32, 32), "rgb8"), 1401)


def test_sigint_shuts_down_within_a_second(node) -> None:
    proc, _, log = node                                 # runs last: ends the shared node
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    rc = proc.wait(timeout=10)
    elapsed = time.monotonic() - t0
    assert rc == 0, log.read_text()
    assert elapsed < 1.0, f"took {elapsed:.2f} s"
    assert "Traceback" not in log.read_text()


# --- start-up refusals: their own short-lived processes -------------------------------------------------------
def test_invalid_parameters_are_refused_at_start(tmp_path: Path) -> None:
    log = tmp_path / "bad.log"
    proc = start_node(["--params-file", str(ROOT / "config" / "panoptic.yaml"), "-p", "backend:=tensorflow",
                       "-p", "qos.depth:=0"], log)
    rc = proc.wait(timeout=60)
    text = log.read_text()
    assert rc != 0
    assert "backend: expected one of ['auto', 'tensorrt', 'onnxruntime', 'torch'], got 'tensorflow'" in text
    assert "qos.depth: expected a value in [1, 1000], got 0" in text
    assert "model:" not in text                          # no model given: the shipped default, not an error


def test_unloadable_model_is_refused_at_start(tmp_path: Path) -> None:
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"this is not a checkpoint")
    log = tmp_path / "broken.log"
    proc = start_node(["-p", f"model:={broken}", "-p", "backend:=torch"], log)
    rc = proc.wait(timeout=60)
    text = log.read_text()
    assert rc != 0 and "cannot create the torch backend" in text and "broken.pt" in text, text


def test_large_data_transport_unless_the_user_chose_one() -> None:
    from hle_ros.panoptic_node import configure_transport

    env: dict[str, str] = {}
    assert configure_transport(env) == "LARGE_DATA" and env == {"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"}
    env = {"FASTDDS_BUILTIN_TRANSPORTS": "UDPv4"}
    assert configure_transport(env) == "UDPv4" and env == {"FASTDDS_BUILTIN_TRANSPORTS": "UDPv4"}
