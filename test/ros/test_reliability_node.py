"""Issue 11, the node's cases: parameters of a running node validated as a whole (7), a model of another fixed size
(8), no spurious failure at shutdown (9). The node runs in this process (no DDS traffic needed): its
set-parameters callback, lifecycle transitions and inference thread are driven directly."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("hle_ros.msg", reason="hle_ros messages not built (make setup)")
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from hle_ros.parameters import check_change, default_parameters  # noqa: E402

SUCCESS = TransitionCallbackReturn.SUCCESS


def make_node(model: Path, **overrides):
    from hle_ros.panoptic_node import PanopticNode

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=99)
    values = {"model": str(model), "backend": "torch", "device": "cpu", "autostart": False, **overrides}
    node = PanopticNode(context=context, parameter_overrides=[Parameter(k, value=v) for k, v in values.items()])
    return node, context


def close(node, context) -> None:
    node.release(1.0, collect=False)
    node.destroy_node()
    rclpy.try_shutdown(context=context)


@pytest.fixture
def active_node(tiny_model: Path):
    node, context = make_node(tiny_model)
    assert node.trigger_configure() == SUCCESS and node.trigger_activate() == SUCCESS
    yield node, context
    close(node, context)


# --- case 7: set_parameters validates the whole set, as configure does --------------------------------------------
def test_case07_check_change_is_configures_validation(tiny_model: Path) -> None:
    current = {**default_parameters(), "model": str(tiny_model)}
    for changes, needle in [({"device": "banana"}, "device"), ({"model": "/nonexistent.pt"}, "file not found"),
                            ({"input_height": 33}, "input_height/input_width"),
                            ({"input_height": 256}, "set both or neither")]:
        verdict = check_change(current, changes)
        assert not verdict.ok and needle in verdict.reason(), changes
    verdict = check_change(current, {"input_height": 256, "input_width": 512, "overlay_alpha": 0.2})
    assert verdict.ok and verdict.live == ("overlay_alpha",) and verdict.deferred == ("input_height", "input_width")
    assert "next configure" in verdict.reason() and "applied now: overlay_alpha" in verdict.reason()
    # a set that is incomplete already (no model yet) does not block an unrelated, valid change
    assert check_change(default_parameters(), {"device": "cpu"}).ok


def capture(node, level: str) -> list[str]:
    """Messages the node logs at ``level`` from now on (and still logged)."""
    seen: list[str] = []
    logger = node.get_logger()
    real = getattr(logger, level)

    def log(msg, *args, **kwargs):
        seen.append(msg)
        return real(msg, *args, **kwargs)

    setattr(logger, level, log)
    return seen


def test_case07_running_node_refuses_bad_sets_and_applies_safe_ones(active_node) -> None:
    node, _ = active_node
    infos = capture(node, "info")
    for name, value, needle in [("device", "banana", "device"), ("model", "/nonexistent.pt", "file not found"),
                                ("input_height", 33, "input_height")]:
        [result] = node.set_parameters([Parameter(name, value=value)])
        assert not result.successful and needle in result.reason, (name, result.reason)
        assert node.get_parameter(name).value != value
    [result] = node.set_parameters([Parameter("overlay_alpha", value=0.25)])
    assert result.successful and node.params["overlay_alpha"] == 0.25
    assert "applied now: overlay_alpha" in infos[-1]          # rclpy drops a successful result's reason: logged
    [result] = node.set_parameters([Parameter("decoder.seed_threshold", value=0.45)])
    assert result.successful and node.pipeline.decoder.seed_threshold == 0.45
    result = node.set_parameters_atomically([Parameter("input_height", value=64), Parameter("input_width", value=64)])
    assert result.successful and "next configure" in infos[-1] and "input_height" in infos[-1]
    assert node.pipeline.input_size is None                           # not yet: at the next configure
    # the node is never left unable to configure
    assert node.trigger_deactivate() == SUCCESS and node.trigger_cleanup() == SUCCESS
    assert node.trigger_configure() == SUCCESS and node.trigger_activate() == SUCCESS
    assert node.pipeline.input_size == (64, 64) and node.params["overlay_alpha"] == 0.25


# --- case 8: a model of one fixed size gets every frame fitted to it; persistent failures are an ERROR ----------------
def test_case08_static_onnx_model_fits_frames_of_another_size(tiny_model: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from hle_core.runtime import build_pipeline, export_onnx

    onnx_path = export_onnx(tiny_model, tmp_path / "static.onnx", height=64, width=64)
    pipe = build_pipeline(onnx_path, "onnxruntime", device="cpu")
    try:
        assert pipe.input_size == (64, 64)
        result = pipe.process(np.zeros((40, 90, 3), np.uint8))       # before: ValueError on every frame
        assert result.panoptic.shape == (40, 90)
    finally:
        pipe.close()
    with pytest.raises(ValueError, match="takes only 64x64 inputs"):
        build_pipeline(onnx_path, "onnxruntime", device="cpu", input_size=(128, 128))


def test_case08_diagnostics_are_error_when_every_frame_fails() -> None:
    from diagnostic_msgs.msg import DiagnosticStatus

    from hle_ros.diagnostics import FAILURES_FOR_ERROR, FrameStats, diagnostic_status

    stats = FrameStats(10)
    for _ in range(FAILURES_FOR_ERROR):
        stats.on_failed("ValueError", "model.onnx takes input shape (1, 3, 64, 64)")
    status = diagnostic_status(stats.snapshot(), "n", "hw", "onnxruntime", "active")
    assert status.level == DiagnosticStatus.ERROR and "64, 64" in status.message
    stats.on_processed(5.0)                                           # one frame through: no longer an error
    assert diagnostic_status(stats.snapshot(), "n", "hw", "b", "active").level != DiagnosticStatus.ERROR


# --- case 9: no failed frame, no ERROR, when the context goes away under a frame in flight -------------------------
def test_case09_shutdown_under_a_frame_is_not_a_failed_frame(active_node) -> None:
    from hle_ros.panoptic_node import _Frame

    node, context = active_node
    errors = capture(node, "error")
    rclpy.shutdown(context=context)                                   # SIGINT: the context goes first
    h = Header(frame_id="camera")
    h.stamp.sec = 7
    node._submit(_Frame(h, time.perf_counter(), image=np.zeros((32, 32, 3), np.uint8)))
    worker, deadline = node._worker, time.monotonic() + 30
    time.sleep(0.05)
    while (worker.pending or worker.busy) and time.monotonic() < deadline:    # the frame runs into publish
        time.sleep(0.05)
    worker.stop(30.0)
    snap = node.stats.snapshot()
    assert snap.failed == {} and snap.processed == 0, snap.failed
    assert not any("failed" in e for e in errors), errors


def test_sigint_racing_the_executor_is_a_clean_shutdown(monkeypatch):
    """SIGINT may shut the context down between two waits of the executor: rclpy then raises RCLError ("failed to
    initialize wait set: the given context is not valid") rather than ExternalShutdownException. `run` must
    treat that as the shutdown it is (exit status 0), and still re-raise the same error while ROS is up."""
    from hle_ros import panoptic_node

    class RacingExecutor(panoptic_node.SingleThreadedExecutor):
        shut_down_first = True

        def spin(self) -> None:                 # what the signal handler + the next wait do, deterministically
            if self.shut_down_first:
                rclpy.shutdown()
            raise RuntimeError("failed to initialize wait set: the given context is not valid")

    monkeypatch.setattr(panoptic_node, "SingleThreadedExecutor", RacingExecutor)
    args = ["panoptic_node", "--ros-args", "-p", "autostart:=false"]
    assert panoptic_node.run(args) == 0
    RacingExecutor.shut_down_first = False     # the same error with the context alive is a real failure
    with pytest.raises(RuntimeError, match="wait set"):
        panoptic_node.run(args)
