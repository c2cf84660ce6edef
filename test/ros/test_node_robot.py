"""Issue 12 on real DDS with the node's own executable (``panoptic_node``, as ``ros2 run`` starts it): the shipped
default model with no ``model`` parameter, camera_info matched by stamp, vision_msgs detections whose ids are the
panoptic message's track ids, the latched class table, incompatible QoS logged, and several cameras in one node.

Isolation as in test_node_process.py: a ROS_DOMAIN_ID of its own and ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("hle_ros.msg", reason="hle_ros messages not built (make setup)")
pytest.importorskip("vision_msgs.msg", reason="vision_msgs not built (make setup builds vendor/vision_msgs)")
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402
from vision_msgs.msg import Detection2DArray, LabelInfo  # noqa: E402

import ros_harness  # noqa: E402
from hle_ros.conversions import array_to_image  # noqa: E402
from ros_harness import DriverNode  # noqa: E402
from hle_ros.msg import PanopticSegmentation  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
NODE = "/hle_panoptic"
pytestmark = pytest.mark.slow                   # node processes: ~1.5 min on the 2-core machine

DOMAIN_ID = 200 + os.getpid() % 15              # 200..214; the multi-camera node 215..229 (DDS: <= 232)
EXECUTABLE = Path(sys.executable).parent / "panoptic_node"       # the console script `pip install -e .` made


def start_node(args: list[str], log: Path, domain: int) -> subprocess.Popen:
    if not EXECUTABLE.exists():
        pytest.skip(f"{EXECUTABLE} not installed (make setup)")
    return ros_harness.start_node([str(EXECUTABLE)], args, log, domain, cwd="/")


class Driver(DriverNode):
    """A test-side node in its own context: publishers and collecting subscriptions by topic."""

    def __init__(self, domain: int) -> None:
        super().__init__("hle_robot_driver", domain)
        self.got: dict[str, list[Any]] = {}
        self.reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)

    def collect(self, msg_type: type, topic: str, qos: QoSProfile | None = None) -> list[Any]:
        self.got[topic] = []
        self.node.create_subscription(msg_type, topic, self.got[topic].append, qos or self.reliable)
        return self.got[topic]

    def stamped(self, topic: str, sec: int, timeout: float) -> Any:
        find = lambda: next((m for m in self.got[topic] if m.header.stamp.sec == sec), None)  # noqa: E731
        self.spin_until(lambda: find() is not None, timeout)
        return find()


def header(sec: int, frame: str = "cam_optical") -> Header:
    h = Header(frame_id=frame)
    h.stamp.sec, h.stamp.nanosec = sec, 5000
    return h


def camera_info(sec: int, width: int, height: int) -> CameraInfo:
    info = CameraInfo(header=header(sec), width=width, height=height, distortion_model="plumb_bob")
    info.k = [400.0, 0.0, width / 2 - 0.5, 0.0, 400.0, height / 2 - 0.5, 0.0, 0.0, 1.0]
    info.p = [400.0, 0.0, width / 2 - 0.5, 0.0, 0.0, 400.0, height / 2 - 0.5, 0.0, 0.0, 0.0, 1.0, 0.0]
    info.d = [0.0] * 5
    return info


def stop(proc: subprocess.Popen, log: Path) -> None:
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=10) == 0, log.read_text()
    assert "Traceback" not in log.read_text()


# --- the default-model node on a remapped camera ------------------------------------------------------------------
@pytest.fixture(scope="module")
def robot(tmp_path_factory: pytest.TempPathFactory):
    log = tmp_path_factory.mktemp("robot") / "node.log"
    proc = start_node(["--params-file", str(ROOT / "config" / "panoptic.yaml"), "-p", "backend:=torch",
                       "-p", "device:=cpu", "-p", "qos.reliability:=reliable", "-p", "tracking.min_hits:=1",
                       "-r", "image:=/cam/image_raw"], log, DOMAIN_ID)                   # note: no model
    tester = Driver(DOMAIN_ID)
    try:
        tester.image_pub = tester.node.create_publisher(Image, "/cam/image_raw", tester.reliable)
        tester.info_pub = tester.node.create_publisher(CameraInfo, "/cam/camera_info", tester.reliable)
        for name, kind in (("panoptic", PanopticSegmentation), ("detections", Detection2DArray),
                           ("camera_info", CameraInfo)):
            tester.collect(kind, f"{NODE}/{name}")
        up = tester.spin_until(lambda: tester.image_pub.get_subscription_count() > 0 and
                               tester.info_pub.get_subscription_count() > 0, 90.0)
        if not up:
            pytest.fail(f"node did not subscribe within 90 s; exit code {proc.poll()}; log:\n{log.read_text()}")
        yield proc, tester, log
    finally:
        tester.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_default_model_is_used_and_logged(robot) -> None:
    _, tester, log = robot
    tester.spin_until(lambda: "active:" in log.read_text(), 30.0)   # logged just after the subscriptions appear
    text = log.read_text()
    assert "the shipped default model" in text and "hle_street.pt" in text, text
    assert "input 384x768 letterbox" in text and "active: torch" in text, text
    assert "/cam/image_raw (camera_info /cam/camera_info)" in text, text


def test_camera_info_and_detections_with_track_ids(robot) -> None:
    from hle_core.data.synthetic import generate_video

    _, tester, _ = robot
    video = generate_video(3, size=(240, 320), seed=5150)
    tracked = 0
    for k, frame in enumerate(video.frames):
        sec = 100 + k
        tester.info_pub.publish(camera_info(sec, 640, 480))           # calibrated at twice the image size
        msg = array_to_image(frame.image, "rgb8", header(sec))
        tester.image_pub.publish(msg)
        pan = tester.stamped(f"{NODE}/panoptic", sec, 60.0)
        assert pan is not None, f"no panoptic message for stamp {sec}"
        det = tester.stamped(f"{NODE}/detections", sec, 5.0)
        info = tester.stamped(f"{NODE}/camera_info", sec, 5.0)
        assert det is not None and info is not None
        assert det.header == pan.header == info.header == header(sec)
        # one detection per thing instance, id = track id (empty when untracked), same class, score and box
        things = sorted((str(i.track_id) if i.track_id >= 0 else "", str(i.class_id), round(i.score, 4),
                         i.bbox.x_offset + (i.bbox.width - 1) / 2, i.bbox.y_offset + (i.bbox.height - 1) / 2,
                         float(i.bbox.width), float(i.bbox.height)) for i in pan.instances if i.is_thing)
        dets = sorted((d.id, d.results[0].hypothesis.class_id, round(d.results[0].hypothesis.score, 4),
                       d.bbox.center.position.x, d.bbox.center.position.y, d.bbox.size_x, d.bbox.size_y)
                      for d in det.detections)
        assert dets == things
        tracked += sum(1 for d in det.detections if d.id)
        # the labels are 320 x 240, the calibration 640 x 480: intrinsics halved (c' = (c + 0.5) s - 0.5)
        assert (info.width, info.height) == (320, 240) == (pan.labels.width, pan.labels.height)
        np.testing.assert_allclose(info.k, [200.0, 0.0, 159.5, 0.0, 200.0, 119.5, 0.0, 0.0, 1.0])
    assert tracked > 0, "the default model tracked no thing in three synthetic street frames"
    # a frame without camera_info is served all the same, and gets no camera_info
    tester.image_pub.publish(array_to_image(video.frames[0].image, "rgb8", header(120)))
    assert tester.stamped(f"{NODE}/panoptic", 120, 60.0) is not None
    assert tester.stamped(f"{NODE}/camera_info", 120, 1.0) is None


def test_label_info_is_latched_for_late_subscribers(robot) -> None:
    _, tester, _ = robot
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    got = tester.collect(LabelInfo, f"{NODE}/label_info", latched)
    assert tester.spin_until(lambda: bool(got), 10.0), "no LabelInfo for a late transient-local subscriber"
    pan = tester.got[f"{NODE}/panoptic"][0]
    assert [(c.class_id, c.class_name) for c in got[0].class_map] == list(zip(pan.class_ids, pan.class_names))
    assert 0.0 < got[0].threshold < 1.0


def test_incompatible_qos_is_logged_with_both_sides(robot) -> None:
    proc, tester, log = robot
    best_effort = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
    pub = tester.node.create_publisher(Image, "/cam/image_raw", best_effort)
    needle = "incompatible QoS on /cam/image_raw (policy RELIABILITY"
    assert tester.spin_until(lambda: needle in log.read_text(), 15.0), log.read_text()
    line = next(ln for ln in log.read_text().splitlines() if needle in ln)
    assert "requested reliability=reliable" in line and "/hle_robot_driver offers reliability=best_effort" in line
    assert "qos.reliability:=best_effort" in line
    tester.node.destroy_publisher(pub)
    assert proc.poll() is None
    stop(proc, log)                                                  # last test of the module: SIGINT, clean exit


# --- several cameras, one network ----------------------------------------------------------------------------------
def test_several_cameras_one_node(tiny_model: Path, tmp_path: Path) -> None:
    domain = DOMAIN_ID + 15
    log = tmp_path / "multi.log"
    proc = start_node(["--params-file", str(ROOT / "config" / "panoptic.yaml"), "-p", f"model:={tiny_model}",
                       "-p", "backend:=torch", "-p", "device:=cpu", "-p", "cameras:=[front, left]",
                       "-p", "qos.reliability:=reliable", "-p", "diagnostics.period:=0.25",
                       "-p", "batch_window_ms:=200.0"], log, domain)
    tester = Driver(domain)
    try:
        pubs = {cam: tester.node.create_publisher(Image, f"/{cam}/image", tester.reliable) for cam in ("front", "left")}
        info_pub = tester.node.create_publisher(CameraInfo, "/left/camera_info", tester.reliable)
        for cam in ("front", "left"):
            tester.collect(PanopticSegmentation, f"{NODE}/{cam}/panoptic")
            tester.collect(Detection2DArray, f"{NODE}/{cam}/detections")
            tester.collect(CameraInfo, f"{NODE}/{cam}/camera_info")
        diags = tester.collect(DiagnosticArray, "/diagnostics")
        assert tester.spin_until(lambda: all(p.get_subscription_count() > 0 for p in pubs.values()), 60.0), \
            log.read_text()
        sizes = {"front": (48, 80), "left": (32, 64)}
        for sec in (300, 301):
            info_pub.publish(camera_info(sec, 64, 32))
            for cam, (h, w) in sizes.items():
                pubs[cam].publish(array_to_image(np.zeros((h, w, 3), np.uint8) + sec % 7, "rgb8", header(sec, cam)))
            for cam, (h, w) in sizes.items():                             # each camera on its own topics
                pan = tester.stamped(f"{NODE}/{cam}/panoptic", sec, 30.0)
                assert pan is not None, (cam, sec, log.read_text())
                assert (pan.labels.height, pan.labels.width) == (h, w) and pan.header.frame_id == cam
                assert tester.stamped(f"{NODE}/{cam}/detections", sec, 5.0) is not None
        assert tester.stamped(f"{NODE}/left/camera_info", 301, 5.0) is not None
        assert not tester.got[f"{NODE}/front/camera_info"]              # front published none
        names = set()
        tester.spin_until(lambda: len(diags) > 2, 5.0)
        for msg in diags:
            names |= {s.name for s in msg.status}
        assert {f"{NODE}: panoptic segmentation (front)", f"{NODE}: panoptic segmentation (left)"} <= names, names
        assert "cameras ['front', 'left']" in log.read_text()
        stop(proc, log)
    finally:
        tester.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
