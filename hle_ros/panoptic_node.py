"""The HLE panoptic segmentation node: a managed (lifecycle) ROS 2 node around :class:`hle_core.pipeline.Pipeline`.

Data flow: ``image`` / ``image/compressed`` → (subscription callback: validate, zero-copy view) → latest-frame
slot → inference thread: decode compressed → Pipeline.process (preprocess → backend → decode → track) →
publish ``~/panoptic``, and ``~/labels`` / ``~/overlay`` / ``~/embedding`` when someone subscribes.
Every output carries the input image's header. ``/diagnostics`` reports rate, latency, drops and rejections.

Lifecycle:
  * configure: read and validate all parameters (hle_ros/parameters.py), create publishers and diagnostics;
  * activate: create the backend and pipeline (loads the model), start the inference thread, subscribe;
  * deactivate: unsubscribe, stop the thread, free the model and GPU memory;
  * cleanup / shutdown: drop publishers and timers.
With ``autostart`` (default) the node walks itself to *active*; a failed configure or activate then ends the
process with a non-zero status and the reason logged.

Run: ``panoptic_node --ros-args --params-file config/panoptic.yaml -p model:=model.pt -r image:=/camera/image``
(remap ``image/compressed`` separately when ``subscribe_compressed`` is on; the launch file does both).
Fast DDS's LARGE_DATA transport is selected before ``rclpy.init`` unless FASTDDS_BUILTIN_TRANSPORTS is set.
"""
from __future__ import annotations

import gc
import os
import sys
import time
from dataclasses import dataclass
from typing import Any, MutableMapping

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleState, Node, TransitionCallbackReturn
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image

from hle_ros.conversions import (
    ImageConversionError,
    array_to_image,
    as_rgb,
    build_panoptic_msg,
    compressed_to_rgb,
    image_to_rgb,
    labels_to_image,
)
from hle_ros.diagnostics import FrameStats, StatsSnapshot, diagnostic_array, diagnostic_status
from hle_ros.parameters import PARAMETERS, PARAMETERS_BY_NAME, NodeParameters, ParameterError, check_change, \
    validate_one, validate_parameters
from hle_ros.worker import InferenceWorker

__all__ = ["PanopticNode", "main", "run", "DEFAULT_NODE_NAME", "configure_transport"]

DEFAULT_NODE_NAME = "hle_panoptic"
#: Seconds between repeated warnings about rejected / failed frames.
WARN_THROTTLE_S = 5.0
#: Seconds a deactivation waits for the frame in flight; a SIGINT shutdown waits far less (see main).
DEACTIVATE_WAIT_S = 30.0
SHUTDOWN_WAIT_S = 0.4
_TRANSPORT_VAR = "FASTDDS_BUILTIN_TRANSPORTS"


def configure_transport(environ: MutableMapping[str, str] = os.environ) -> str:
    """Use Fast DDS's LARGE_DATA transport (shared memory + TCP for big samples) unless the user chose one.

    Must run before ``rclpy.init``; multi-megabyte images arrive ~4x faster and reliably with it.
    """
    return environ.setdefault(_TRANSPORT_VAR, "LARGE_DATA")


@dataclass
class _Frame:
    """One received frame waiting for the inference thread."""

    header: Any                                 # std_msgs/Header of the input, copied to every output
    received_at: float                          # time.perf_counter() in the subscription callback
    image: np.ndarray | None = None             # (H, W, 3) RGB or (H, W) mono view of a raw Image
    compressed: CompressedImage | None = None   # decoded on the inference thread


class PanopticNode(Node):
    """Managed node publishing HLE panoptic segmentations of an image stream (see the module docstring)."""

    def __init__(self, node_name: str = DEFAULT_NODE_NAME, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        for spec in PARAMETERS:                 # all declared here, from the one table; validated in configure
            self.declare_parameter(spec.name, spec.default, ParameterDescriptor(
                description=spec.description, additional_constraints=spec.constraints(), dynamic_typing=True))
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.params: NodeParameters | None = None
        self.pipeline = None
        self.stats: FrameStats | None = None
        self._worker: InferenceWorker[_Frame] | None = None
        self._image_subs: list[Any] = []
        self._pubs: dict[str, Any] = {}
        self._diag_pub = None
        self._diag_timer = None
        self._last_report: StatsSnapshot | None = None
        self._fit: tuple[int, int] | None = None    # the pipeline's network input size (None: padded images)
        self._state = "unconfigured"

    # --- lifecycle ----------------------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        values = {spec.name: self.get_parameter(spec.name).value for spec in PARAMETERS}
        try:
            self.params = validate_parameters(values)
        except ParameterError as exc:
            self.get_logger().error(str(exc))
            return TransitionCallbackReturn.FAILURE
        p = self.params
        out_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=p["qos.depth"],
                             reliability=ReliabilityPolicy.RELIABLE)
        self._pubs = {
            "panoptic": self.create_lifecycle_publisher(_panoptic_type(), "~/panoptic", out_qos),
            "labels": self.create_lifecycle_publisher(Image, "~/labels", out_qos),
            "overlay": self.create_lifecycle_publisher(Image, "~/overlay", out_qos),
            "embedding": self.create_lifecycle_publisher(Image, "~/embedding", out_qos),
        }
        self.stats = FrameStats(p["diagnostics.window"])
        self._last_report = None
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._diag_timer = self.create_timer(p["diagnostics.period"], self._publish_diagnostics)
        self._state = "inactive"
        self.get_logger().info(f"configured: model {p['model']!r}, backend {p['backend']}, device {p['device']}")
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        assert self.params is not None          # lifecycle guarantees configure ran
        p = self.params
        try:
            self.pipeline = self._create_pipeline(p)
        except Exception as exc:                # model missing / corrupt, backend unavailable: reported, refused
            self.get_logger().error(f"cannot create the {p['backend']} backend for {p['model']!r}: "
                                    f"{type(exc).__name__}: {exc}")
            return TransitionCallbackReturn.FAILURE
        self._worker = InferenceWorker(self._process, self._on_worker_error, self._on_dropped)
        self._worker.start()
        in_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=p["qos.depth"],
                            reliability=ReliabilityPolicy.RELIABLE if p["qos.reliability"] == "reliable"
                            else ReliabilityPolicy.BEST_EFFORT)
        self._image_subs = [self.create_subscription(Image, "image", self._on_image, in_qos)]
        if p["subscribe_compressed"]:
            self._image_subs.append(
                self.create_subscription(CompressedImage, "image/compressed", self._on_compressed, in_qos))
        self._fit = self.pipeline.input_size      # set, or the size a static model takes
        self._state = "active"
        size = f"{self._fit} ({p['resize_mode']})" if self._fit else "native"
        self.get_logger().info(f"active: {self.pipeline.backend.describe()}, input size {size}, "
                               f"tracking {'on' if p.tracker_config() else 'off'}")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release_pipeline(DEACTIVATE_WAIT_S, collect=True)
        self._state = "inactive"
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release_outputs()
        self._state = "unconfigured"
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.release(DEACTIVATE_WAIT_S)
        return super().on_shutdown(state)

    def release(self, wait_s: float, collect: bool = True) -> None:
        """Free everything (subscriptions, inference thread, model, publishers); safe in any state.

        ``collect`` also runs the garbage collector and empties the CUDA cache (pointless when the process is
        about to exit).
        """
        self._release_pipeline(wait_s, collect)
        self._release_outputs()
        self._state = "finalized"

    # --- callbacks (executor thread; never block) ---------------------------------------------------------
    def _on_image(self, msg: Image) -> None:
        t = time.perf_counter()
        self.stats.on_received()
        try:
            image = image_to_rgb(msg, self.params["max_pixels"], self._fit)  # O(1) checks + a view, no copy
        except ImageConversionError as exc:
            self._reject(exc)
            return
        self._submit(_Frame(msg.header, t, image=image))

    def _on_compressed(self, msg: CompressedImage) -> None:
        self.stats.on_received()
        self._submit(_Frame(msg.header, time.perf_counter(), compressed=msg))

    def _submit(self, frame: _Frame) -> None:
        worker = self._worker
        if worker is not None:
            worker.submit(frame)

    def _on_dropped(self, frame: _Frame) -> None:
        self.stats.on_dropped()

    def _reject(self, exc: ImageConversionError) -> None:
        self.stats.on_rejected(exc.reason)
        self.get_logger().warning(f"image rejected ({exc.reason}): {exc}", throttle_duration_sec=WARN_THROTTLE_S)

    def _on_set_parameters(self, params: list[Any]) -> SetParametersResult:
        """Validate the change as configure does (the whole set, cross-parameter rules, the model file) and refuse
        it with the reason; once configured, decoder thresholds, overlay / embedding colouring and max_pixels apply
        at once, anything else at the next configure (logged, and in the result's reason)."""
        changes = {p.name: p.value for p in params if p.name in PARAMETERS_BY_NAME}   # others: e.g. use_sim_time
        if not changes:
            return SetParametersResult(successful=True)
        current = {spec.name: self.get_parameter(spec.name).value for spec in PARAMETERS}
        verdict = check_change(current, changes, configured=self.params is not None)
        if not verdict.ok:
            return SetParametersResult(successful=False, reason=verdict.reason())
        if verdict.live:
            self._apply_live(verdict.live, verdict.values)
        # rclpy drops the reason of a successful result, so the log says what applies when
        self.get_logger().info(f"parameters set: {verdict.reason()}")
        return SetParametersResult(successful=True, reason=verdict.reason())

    def _apply_live(self, names: tuple[str, ...], values: Any) -> None:
        params = NodeParameters({**self.params.values, **{n: values[n] for n in names}})
        pipeline = self.pipeline
        if pipeline is not None and any(n.startswith("decoder.") for n in names):
            pipeline.decoder = params.decoder_config(pipeline.config.decoder)    # the model's own, overridden
        self.params = params                    # one reference swap: the threads read either the old or the new

    # --- inference thread ---------------------------------------------------------------------------------
    def _process(self, frame: _Frame) -> None:
        p, pipe, pubs = self.params, self.pipeline, self._pubs
        image = frame.image if frame.image is not None \
            else compressed_to_rgb(frame.compressed, p["max_pixels"], self._fit)
        want_embedding = pubs["embedding"].get_subscription_count() > 0
        result = pipe.process(image, keep_embedding=want_embedding)
        segmented_ms = (time.perf_counter() - frame.received_at) * 1e3
        t0 = time.perf_counter()
        labels = labels_to_image(result.panoptic, frame.header)
        msg = build_panoptic_msg(frame.header, result, pipe.classes, pipe.embedding_dim, pipe.backend.name,
                                 segmented_ms, labels)
        pubs["panoptic"].publish(msg)
        if pubs["labels"].get_subscription_count() > 0:
            pubs["labels"].publish(labels)
        if pubs["overlay"].get_subscription_count() > 0:
            from hle_core.visualize import overlay

            pubs["overlay"].publish(array_to_image(
                overlay(as_rgb(image), result.panoptic, pipe.classes, p["overlay_alpha"]), "rgb8", frame.header))
        if want_embedding and result.embedding is not None:
            from hle_core.visualize import embedding_to_rgb

            pubs["embedding"].publish(array_to_image(
                embedding_to_rgb(result.embedding, p["embedding_mode"]), "rgb8", frame.header))
        done = time.perf_counter()
        stages = dict(result.timings_ms)
        stages["publish"] = (done - t0) * 1e3
        self.stats.on_processed((done - frame.received_at) * 1e3, stages)

    def _on_worker_error(self, frame: _Frame, exc: BaseException) -> None:
        if isinstance(exc, ImageConversionError):
            self._reject(exc)
            return
        if not self.context.ok() or self._worker is None:
            return                              # shutting down / deactivating: publishing failed, not the frame
        self.stats.on_failed(type(exc).__name__, str(exc))
        self.get_logger().error(f"frame {frame.header.stamp.sec}.{frame.header.stamp.nanosec:09d} failed: "
                                f"{type(exc).__name__}: {exc}", throttle_duration_sec=WARN_THROTTLE_S)

    # --- diagnostics (executor thread) --------------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        if self.stats is None or self._diag_pub is None:
            return
        snap = self.stats.snapshot()
        backend = self.pipeline.backend.describe() if self.pipeline is not None else "none"
        status = diagnostic_status(snap, f"{self.get_fully_qualified_name()}: panoptic segmentation",
                                   self.get_fully_qualified_name(), backend, self._state, self._last_report)
        self._last_report = snap
        self._diag_pub.publish(diagnostic_array(self.get_clock().now().to_msg(), [status]))

    # --- construction / teardown --------------------------------------------------------------------------
    def _create_pipeline(self, p: NodeParameters) -> Any:
        from hle_core.runtime import build_pipeline

        return build_pipeline(os.path.expanduser(p["model"]), p["backend"], device=p["device"],
                              input_size=p.input_size, resize=p["resize_mode"], decoder=p.decoder_config,
                              tracker=p.tracker_config(),
                              logger=self.get_logger(), fp16=p["fp16"],
                              engine_cache_dir=p["engine_cache_dir"] or None, force_rebuild=p["force_rebuild"],
                              fallback=p["fallback"], workspace_mb=p["workspace_mb"],
                              intra_op_threads=p["intra_op_threads"])

    def _release_pipeline(self, wait_s: float, collect: bool) -> None:
        for sub in self._image_subs:
            self.destroy_subscription(sub)
        self._image_subs = []
        worker, self._worker = self._worker, None
        stopped = worker.stop(wait_s) if worker is not None else True
        pipeline, self.pipeline = self.pipeline, None
        if pipeline is None:
            return
        if not stopped:                         # a frame is still in inference: leave the model to it
            self.get_logger().warning(f"inference thread still busy after {wait_s:.1f} s; not freeing the model")
            return
        pipeline.close()
        del pipeline
        if collect:                             # give the model's (GPU) memory back now, not at some later GC
            gc.collect()
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    def _release_outputs(self) -> None:
        for pub in self._pubs.values():
            self.destroy_lifecycle_publisher(pub)
        self._pubs = {}
        if self._diag_timer is not None:
            self.destroy_timer(self._diag_timer)
            self._diag_timer = None
        if self._diag_pub is not None:
            self.destroy_publisher(self._diag_pub)
            self._diag_pub = None


def _panoptic_type() -> type:
    from hle_ros.msg import PanopticSegmentation   # generated from msg/ (scripts/setup_env.sh, colcon)

    return PanopticSegmentation


def run(args: list[str] | None = None) -> int:
    """Start the node (walking it to *active* with ``autostart``), spin until SIGINT / SIGTERM, release it.

    Returns:
        0 after a normal shutdown, 1 when start-up failed (invalid parameters, model or backend unusable).
    """
    configure_transport()
    rclpy.init(args=sys.argv if args is None else args)
    node = PanopticNode()
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    status = 0
    try:
        autostart, reason = validate_one(PARAMETERS_BY_NAME["autostart"], node.get_parameter("autostart").value)
        if reason:
            node.get_logger().error(f"invalid node parameters:\n  autostart: {reason}")
            status = 1
        elif autostart:
            if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                node.get_logger().fatal("configure failed (reason above); exiting")
                status = 1
            elif node.trigger_activate() != TransitionCallbackReturn.SUCCESS:
                node.get_logger().fatal("activate failed (reason above); exiting")
                status = 1
        if status == 0:
            executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass                                    # SIGINT / SIGTERM: rclpy shut the context down
    finally:
        node.release(SHUTDOWN_WAIT_S, collect=False)
        executor.shutdown(timeout_sec=0.1)
        node.destroy_node()
        rclpy.try_shutdown()
    return status


def main(args: list[str] | None = None) -> None:
    """Console entry point ``panoptic_node``: :func:`run`, then end the process at once with its status.

    ROS is already shut down and the node released when :func:`run` returns; ``os._exit`` skips only Python's
    module teardown, which takes about a second with torch loaded (too slow for the SIGINT-within-a-second
    requirement) and is unsafe while an inference thread that missed the stop deadline is still inside torch.
    """
    status = run(args)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":
    main()
