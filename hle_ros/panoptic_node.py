"""The HLE panoptic segmentation node: a managed (lifecycle) ROS 2 node around :class:`hle_core.pipeline.Pipeline`.

Data flow: ``image`` / ``image/compressed`` → (subscription callback: validate, zero-copy view) → latest-frame
slot → inference thread: decode compressed → Pipeline.process (preprocess → backend → decode → track) →
publish ``~/panoptic`` and ``~/detections`` (vision_msgs/Detection2DArray, ``id`` = track id), ``~/camera_info``
when the camera's ``camera_info`` (the image topic's namespace, e.g. ``/cam/image_raw`` → ``/cam/camera_info``)
has a message of the frame's stamp, and ``~/labels`` / ``~/overlay`` / ``~/embedding`` when someone subscribes.
``~/label_info`` (vision_msgs/LabelInfo, transient local) carries the class table. Every output carries the
input image's header. ``/diagnostics`` reports rate, latency, drops and rejections. Incompatible QoS between an
image publisher and the subscription is logged with both sides' policies.

With ``pipeline_overlap`` (default) the single-camera work runs on two threads
(:class:`hle_ros.worker.PipelinedWorker`): decode compressed + Pipeline.infer (preprocess → backend) |
Pipeline.finish (decode → track) + publish, so frame N+1 is in the network while frame N is decoded and published;
outputs leave in stamp order (a frame older than one already published is dropped and counted).

Several cameras (``cameras: [front, left]``): ``front/image`` → ``~/front/panoptic``, ``~/front/detections``, ...;
one model, a latest-frame slot per camera, frames that arrive within ``batch_window_ms`` of each other inferred
as one batch (:meth:`hle_core.pipeline.Pipeline.process_batch`), a tracker and a diagnostics status per camera.

Lifecycle:
  * configure: read and validate all parameters (hle_ros/parameters.py), create publishers and diagnostics;
  * activate: create the backend and pipeline (loads the model), start the inference thread, subscribe;
  * deactivate: unsubscribe, stop the thread, free the model and GPU memory;
  * cleanup / shutdown: drop publishers and timers.
With ``autostart`` (default) the node walks itself to *active*; a failed configure or activate then ends the
process with a non-zero status and the reason logged.

Run: ``panoptic_node --ros-args --params-file config/panoptic.yaml -r image:=/camera/image`` (no ``model``: the
shipped default model, :mod:`hle_ros.default_model`; ``-p model:=model.pt`` for another)
(remap ``image/compressed`` separately when ``subscribe_compressed`` is on; the launch file does both).
Fast DDS's LARGE_DATA transport is selected before ``rclpy.init`` unless FASTDDS_BUILTIN_TRANSPORTS is set.
"""
from __future__ import annotations

import gc
import os
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, MutableMapping

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.event_handler import QoSRequestedIncompatibleQoSInfo, SubscriptionEventCallbacks
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleState, Node, TransitionCallbackReturn
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSCompatibility, QoSProfile, ReliabilityPolicy,
                       qos_check_compatible, qos_policy_name_from_kind)
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from hle_core.allocator import keep_freed_memory
from hle_ros.conversions import (
    ImageConversionError,
    array_to_image,
    as_rgb,
    build_detections_msg,
    build_label_info_msg,
    build_panoptic_msg,
    camera_info_for_labels,
    compressed_to_rgb,
    image_to_rgb,
    labels_to_image,
)
from hle_ros.diagnostics import FrameStats, StatsSnapshot, diagnostic_array, diagnostic_status
from hle_ros.parameters import PARAMETERS, PARAMETERS_BY_NAME, NodeParameters, ParameterError, check_change, \
    validate_one, validate_parameters
from hle_ros.worker import BatchInferenceWorker, InferenceWorker, PipelinedWorker

__all__ = ["PanopticNode", "main", "run", "DEFAULT_NODE_NAME", "configure_transport", "camera_info_topic",
           "describe_qos"]

DEFAULT_NODE_NAME = "hle_panoptic"
#: Seconds between repeated warnings about rejected / failed frames.
WARN_THROTTLE_S = 5.0
#: Seconds a deactivation waits for the frame in flight; a SIGINT shutdown waits far less (see main).
DEACTIVATE_WAIT_S = 30.0
SHUTDOWN_WAIT_S = 0.4
#: Seconds between an incompatible-QoS event and its log line (the publisher's node name reaches the graph late).
INCOMPATIBLE_QOS_DELAY_S = 0.5
#: CameraInfo messages kept per camera for matching by stamp.
CAMERA_INFO_CACHE = 16
_TRANSPORT_VAR = "FASTDDS_BUILTIN_TRANSPORTS"


def configure_transport(environ: MutableMapping[str, str] = os.environ) -> str:
    """Use Fast DDS's LARGE_DATA transport (shared memory + TCP for big samples) unless the user chose one.

    Must run before ``rclpy.init``; multi-megabyte images arrive ~4x faster and reliably with it.
    """
    return environ.setdefault(_TRANSPORT_VAR, "LARGE_DATA")


def camera_info_topic(image_topic: str) -> str:
    """The camera_info topic beside a (resolved) image topic: ``/cam/image_raw`` → ``/cam/camera_info`` (the
    image_transport convention; ``/image`` → ``/camera_info``)."""
    parent = image_topic.rsplit("/", 1)[0]
    return f"{parent}/camera_info"


def describe_qos(qos: QoSProfile) -> str:
    """``reliability=... durability=... history=...(depth) deadline=... liveliness=...`` of a profile."""
    def name(policy: Any) -> str:
        return getattr(policy, "name", str(policy)).lower()

    def duration(d: Any) -> str:
        ns = getattr(d, "nanoseconds", 0)
        return "infinite" if ns in (0, 0x7FFFFFFFFFFFFFFF) or ns >= 2**63 - 1 else f"{ns / 1e9:g}s"

    history = name(qos.history) + (f"({qos.depth})" if qos.history == HistoryPolicy.KEEP_LAST else "")
    return (f"reliability={name(qos.reliability)} durability={name(qos.durability)} history={history} "
            f"deadline={duration(qos.deadline)} liveliness={name(qos.liveliness)}")


@dataclass
class _Frame:
    """One received frame waiting for the inference thread."""

    header: Any                                 # std_msgs/Header of the input, copied to every output
    received_at: float                          # time.perf_counter() in the subscription callback
    image: np.ndarray | None = None             # (H, W, 3) RGB or (H, W) mono view of a raw Image
    compressed: CompressedImage | None = None   # decoded on the inference thread
    camera: int = 0                             # index of the camera (PanopticNode._cameras) it came from


class _CameraInfoCache:
    """The last few CameraInfo messages of one camera, by header stamp (written by the executor thread, read by
    the inference thread)."""

    def __init__(self, size: int = CAMERA_INFO_CACHE) -> None:
        self._items: OrderedDict[tuple[int, int], CameraInfo] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def put(self, msg: CameraInfo) -> None:
        key = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        with self._lock:
            self._items[key] = msg
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def get(self, stamp: Any) -> CameraInfo | None:
        with self._lock:
            return self._items.get((stamp.sec, stamp.nanosec))


@dataclass
class _Camera:
    """One camera of the node: its topics, outputs, statistics, tracker and camera_info cache."""

    name: str                                   # "" for the single-camera node
    pubs: dict[str, Any]
    stats: FrameStats
    label_info_pub: Any = None
    tracker: Any = None                         # own EmbeddingTracker with several cameras (single: the pipeline's)
    subs: list[Any] = field(default_factory=list)
    infos: _CameraInfoCache = field(default_factory=_CameraInfoCache)
    last_report: StatsSnapshot | None = None

    def topic(self, name: str) -> str:
        """Input topic ``name`` of this camera (relative: node namespace, remappable)."""
        return f"{self.name}/{name}" if self.name else name

    def output(self, name: str) -> str:
        """Output topic ``name`` of this camera (private: ``~/name`` or ``~/<camera>/name``)."""
        return f"~/{self.name}/{name}" if self.name else f"~/{name}"


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
        self._cameras: list[_Camera] = []
        self._worker: InferenceWorker[_Frame] | BatchInferenceWorker[_Frame] | PipelinedWorker[_Frame] | None = None
        self._diag_pub = None
        self._diag_timer = None
        self._model_path = ""
        self._fit: tuple[int, int] | float | None = None  # the pipeline's fit: input size, or test scale
        self._state = "unconfigured"

    @property
    def stats(self) -> FrameStats | None:
        """The (first) camera's frame statistics; None before configure."""
        return self._cameras[0].stats if self._cameras else None

    @property
    def _pubs(self) -> dict[str, Any]:
        """The (first) camera's output publishers."""
        return self._cameras[0].pubs if self._cameras else {}

    # --- lifecycle ----------------------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        values = {spec.name: self.get_parameter(spec.name).value for spec in PARAMETERS}
        try:
            self.params = validate_parameters(values)
        except ParameterError as exc:
            self.get_logger().error(str(exc))
            return TransitionCallbackReturn.FAILURE
        p = self.params
        try:
            self._model_path = p.model_path
        except ParameterError as exc:           # the default model vanished since validation
            self.get_logger().error(str(exc))
            return TransitionCallbackReturn.FAILURE
        from vision_msgs.msg import Detection2DArray, LabelInfo   # a ROS install's, or vendor/vision_msgs (PyPI)

        out_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=p["qos.depth"],
                             reliability=ReliabilityPolicy.RELIABLE)
        latched = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self._cameras = []
        for name in p.cameras or ("",):
            cam = _Camera(name, {}, FrameStats(p["diagnostics.window"]))
            cam.pubs = {
                "panoptic": self.create_lifecycle_publisher(_panoptic_type(), cam.output("panoptic"), out_qos),
                "detections": self.create_lifecycle_publisher(Detection2DArray, cam.output("detections"), out_qos),
                "camera_info": self.create_lifecycle_publisher(CameraInfo, cam.output("camera_info"), out_qos),
                "labels": self.create_lifecycle_publisher(Image, cam.output("labels"), out_qos),
                "overlay": self.create_lifecycle_publisher(Image, cam.output("overlay"), out_qos),
                "embedding": self.create_lifecycle_publisher(Image, cam.output("embedding"), out_qos),
            }
            cam.label_info_pub = self.create_publisher(LabelInfo, cam.output("label_info"), latched)
            self._cameras.append(cam)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._diag_timer = self.create_timer(p["diagnostics.period"], self._publish_diagnostics)
        self._state = "inactive"
        if p.uses_default_model:
            from hle_ros.default_model import find_default_model

            size = p.input_size
            model = (f"{self._model_path!r} (the shipped default model, found via the "
                     f"{find_default_model().source or 'lookup'}; input "
                     + (f"{size[0]}x{size[1]} {p['resize_mode']})" if size else "native)"))
        else:
            model = repr(self._model_path)
        cams = f", cameras {list(p.cameras)}" if p.cameras else ""
        self.get_logger().info(f"configured: model {model}, backend {p['backend']}, device {p['device']}{cams}")
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        assert self.params is not None          # lifecycle guarantees configure ran
        p = self.params
        try:
            self.pipeline = self._create_pipeline(p)
        except Exception as exc:                # model missing / corrupt, backend unavailable: reported, refused
            self.get_logger().error(f"cannot create the {p['backend']} backend for {self._model_path!r}: "
                                    f"{type(exc).__name__}: {exc}")
            return TransitionCallbackReturn.FAILURE
        multi = bool(p.cameras)
        if multi:                               # one network, a tracker per camera
            from hle_core.tracking import EmbeddingTracker

            tracker_cfg = p.tracker_config()
            for cam in self._cameras:
                cam.tracker = EmbeddingTracker(tracker_cfg) if tracker_cfg is not None else None
            self._worker = BatchInferenceWorker(len(self._cameras), lambda f: f.camera, self._process_batch,
                                                self._on_batch_error, self._on_dropped,
                                                window_s=p["batch_window_ms"] / 1e3)
        elif p["pipeline_overlap"]:             # inference of frame N+1 overlaps decode / track / publish of N
            self._worker = PipelinedWorker(self._infer_stage, self._finish_stage, self._on_worker_error,
                                           self._on_dropped, order_key=_stamp_key, on_late=self._on_late)
        else:
            self._worker = InferenceWorker(self._process, self._on_worker_error, self._on_dropped)
        self._worker.start()
        in_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=p["qos.depth"],
                            reliability=ReliabilityPolicy.RELIABLE if p["qos.reliability"] == "reliable"
                            else ReliabilityPolicy.BEST_EFFORT)
        info_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=max(5, p["qos.depth"]),
                              reliability=in_qos.reliability)
        for index, cam in enumerate(self._cameras):
            image_topic = self.resolve_topic_name(cam.topic("image"))
            cam.subs = [self._subscribe(Image, cam.topic("image"), lambda m, i=index: self._on_image(m, i), in_qos)]
            if p["subscribe_compressed"]:
                cam.subs.append(self._subscribe(CompressedImage, cam.topic("image/compressed"),
                                                lambda m, i=index: self._on_compressed(m, i), in_qos))
            cam.subs.append(self.create_subscription(CameraInfo, camera_info_topic(image_topic), cam.infos.put,
                                                     info_qos))
        self._fit = self.pipeline.fit             # input size set, or the size a static model takes, or test scale
        self._state = "active"
        result = super().on_activate(state)
        stamp = self.get_clock().now().to_msg()
        for cam in self._cameras:               # the class table, once (transient local: late joiners get it)
            header = _header(stamp)
            cam.label_info_pub.publish(build_label_info_msg(header, self.pipeline.classes,
                                                            self.pipeline.decoder.seed_threshold))
        size = (f"{self._fit} ({p['resize_mode']})" if isinstance(self._fit, tuple)
                else "native" if self._fit == 1 else f"native x {self._fit:g} (the model's test_scale)")
        topics = ", ".join(f"{cam.subs[0].topic_name} (camera_info {cam.subs[-1].topic_name})"
                           for cam in self._cameras)
        self.get_logger().info(f"active: {self.pipeline.backend.describe()}, model {self._model_path}, input size "
                               f"{size}, tracking {'on' if p.tracker_config() else 'off'}, stages "
                               f"{'overlapped' if isinstance(self._worker, PipelinedWorker) else 'on one thread'}, "
                               f"images {topics}")
        return result

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
    def _subscribe(self, msg_type: type, topic: str, callback: Callable[[Any], None], qos: QoSProfile) -> Any:
        """An image subscription whose incompatible-QoS events are logged with both sides' policies."""
        box: list[Any] = []
        events = SubscriptionEventCallbacks(
            incompatible_qos=lambda info: self._on_incompatible_qos(box[0] if box else None, qos, info))
        sub = self.create_subscription(msg_type, topic, callback, qos, event_callbacks=events)
        box.append(sub)
        return sub

    def _on_incompatible_qos(self, sub: Any, requested: QoSProfile, info: QoSRequestedIncompatibleQoSInfo) -> None:
        """Log, in one line, the topic, the policy in conflict, what this node requests and what each incompatible
        publisher offers. The publisher's node name reaches the graph a little after the event: the line is
        written from a one-shot timer half a second later."""
        holder: list[Any] = []

        def report() -> None:
            if holder:
                self.destroy_timer(holder.pop())
            self._log_incompatible_qos(sub, requested, info)

        holder.append(self.create_timer(INCOMPATIBLE_QOS_DELAY_S, report))

    def _log_incompatible_qos(self, sub: Any, requested: QoSProfile, info: QoSRequestedIncompatibleQoSInfo) -> None:
        topic = sub.topic_name if sub is not None else "?"
        policy = qos_policy_name_from_kind(info.last_policy_kind)
        offered = []
        try:
            for pub in self.get_publishers_info_by_topic(topic):
                compatible, _ = qos_check_compatible(pub.qos_profile, requested)
                if compatible == QoSCompatibility.ERROR:
                    known = pub.node_name and not pub.node_name.startswith("_NODE_NAME_UNKNOWN")
                    who = f"{pub.node_namespace.rstrip('/')}/{pub.node_name}" if known else "a publisher (node unknown)"
                    offered.append(f"{who} offers {describe_qos(pub.qos_profile)}")
        except Exception as exc:                # the graph query is a courtesy; the event is logged regardless
            offered.append(f"(publishers unknown: {exc})")
        hint = ""
        if policy == "RELIABILITY" and requested.reliability == ReliabilityPolicy.RELIABLE:
            hint = "; hint: -p qos.reliability:=best_effort accepts best-effort publishers"
        self.get_logger().error(
            f"incompatible QoS on {topic} (policy {policy}, {info.total_count} publisher(s) so far): no data is "
            f"received from it; requested {describe_qos(requested)}; "
            + ("; ".join(offered) or "offered: unknown") + hint)

    def _on_image(self, msg: Image, camera: int = 0) -> None:
        t = time.perf_counter()
        cam = self._cameras[camera]
        cam.stats.on_received()
        try:
            image = image_to_rgb(msg, self.params["max_pixels"], self._fit)  # O(1) checks + a view, no copy
        except ImageConversionError as exc:
            self._reject(exc, camera)
            return
        self._submit(_Frame(msg.header, t, image=image, camera=camera))

    def _on_compressed(self, msg: CompressedImage, camera: int = 0) -> None:
        self._cameras[camera].stats.on_received()
        self._submit(_Frame(msg.header, time.perf_counter(), compressed=msg, camera=camera))

    def _submit(self, frame: _Frame) -> None:
        worker = self._worker
        if worker is not None:
            worker.submit(frame)

    def _on_dropped(self, frame: _Frame) -> None:
        cams = self._cameras
        if frame.camera < len(cams):            # a frame discarded after cleanup has nobody left to count it
            cams[frame.camera].stats.on_dropped()

    def _on_late(self, frame: _Frame) -> None:
        """A frame older than one already published (stamps went backwards): dropped, counted, never published."""
        self._on_dropped(frame)
        self.get_logger().warning(f"frame {frame.header.stamp.sec}.{frame.header.stamp.nanosec:09d} dropped: older "
                                  f"than one already published", throttle_duration_sec=WARN_THROTTLE_S)

    def _reject(self, exc: ImageConversionError, camera: int = 0) -> None:
        cam = self._cameras[camera]
        cam.stats.on_rejected(exc.reason)
        where = f" from camera {cam.name}" if cam.name else ""
        self.get_logger().warning(f"image rejected{where} ({exc.reason}): {exc}",
                                  throttle_duration_sec=WARN_THROTTLE_S)

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
    def _frame_image(self, frame: _Frame) -> np.ndarray:
        """The frame's RGB image: converted at reception, or its compressed data decoded now (on the worker)."""
        if frame.image is not None:
            return frame.image
        return compressed_to_rgb(frame.compressed, self.params["max_pixels"], self._fit)

    def _process(self, frame: _Frame) -> None:
        """The single-camera node's frame: Pipeline.process with the pipeline's own tracker."""
        pipe, pubs = self.pipeline, self._pubs
        image = self._frame_image(frame)
        want_embedding = pubs["embedding"].get_subscription_count() > 0
        result = pipe.process(image, keep_embedding=want_embedding)
        self._publish(frame, image, result)

    def _infer_stage(self, frame: _Frame) -> tuple[np.ndarray, Any, dict[str, float]]:
        """Stage 1 of the overlapped single-camera node (``pipeline_overlap``): decode compressed data,
        Pipeline.infer (preprocess + network)."""
        image = self._frame_image(frame)
        (inferred,), shared = self.pipeline.infer([image])
        return image, inferred, shared

    def _finish_stage(self, frame: _Frame, staged: tuple[np.ndarray, Any, dict[str, float]]) -> None:
        """Stage 2, on the other thread, in stage-1 order: Pipeline.finish (decode, transfer, the pipeline's
        tracker), publish. ``total`` is both stages' work, without the wait between them."""
        image, inferred, shared = staged
        pipe, pubs = self.pipeline, self._pubs
        want_embedding = pubs["embedding"].get_subscription_count() > 0
        result = pipe.finish(inferred, keep_embedding=want_embedding, tracker=pipe.tracker)
        result.timings_ms = {**shared, **result.timings_ms}
        result.timings_ms["total"] = sum(result.timings_ms.values())
        self._publish(frame, image, result)

    def _process_batch(self, frames: list[_Frame]) -> None:
        """A multi-camera batch (at most one frame per camera): one Pipeline.process_batch call, each camera's
        tracker, outputs per camera. A frame whose compressed data cannot be decoded is rejected alone."""
        pipe = self.pipeline
        images, kept = [], []
        for frame in frames:
            try:
                images.append(self._frame_image(frame))
                kept.append(frame)
            except ImageConversionError as exc:
                self._reject(exc, frame.camera)
        if not kept:
            return
        cams = [self._cameras[f.camera] for f in kept]
        want_embedding = any(c.pubs["embedding"].get_subscription_count() > 0 for c in cams)
        results = pipe.process_batch(images, keep_embedding=want_embedding, trackers=[c.tracker for c in cams])
        for frame, image, result in zip(kept, images, results):
            try:
                self._publish(frame, image, result)
            except Exception as exc:            # one camera's publishing failed: the others still publish
                self._on_worker_error(frame, exc)

    def _on_batch_error(self, frames: list[_Frame], exc: BaseException) -> None:
        for frame in frames:
            self._on_worker_error(frame, exc)

    def _publish(self, frame: _Frame, image: np.ndarray, result: Any) -> None:
        """Every output of one processed frame, on its camera's topics."""
        p, pipe = self.params, self.pipeline
        cam = self._cameras[frame.camera]
        pubs = cam.pubs
        segmented_ms = (time.perf_counter() - frame.received_at) * 1e3
        t0 = time.perf_counter()
        labels = labels_to_image(result.panoptic, frame.header)
        msg = build_panoptic_msg(frame.header, result, pipe.classes, pipe.embedding_dim, pipe.backend.name,
                                 segmented_ms, labels)
        pubs["panoptic"].publish(msg)
        pubs["detections"].publish(build_detections_msg(frame.header, result))
        info = cam.infos.get(frame.header.stamp)
        if info is not None:                    # optional: frames without camera_info are served all the same
            pubs["camera_info"].publish(camera_info_for_labels(info, frame.header, labels.width, labels.height))
        if pubs["labels"].get_subscription_count() > 0:
            pubs["labels"].publish(labels)
        if pubs["overlay"].get_subscription_count() > 0:
            from hle_core.visualize import overlay

            pubs["overlay"].publish(array_to_image(
                overlay(as_rgb(image), result.panoptic, pipe.classes, p["overlay_alpha"]), "rgb8", frame.header))
        if result.embedding is not None and pubs["embedding"].get_subscription_count() > 0:
            from hle_core.visualize import embedding_to_rgb

            pubs["embedding"].publish(array_to_image(
                embedding_to_rgb(result.embedding, p["embedding_mode"]), "rgb8", frame.header))
        done = time.perf_counter()
        stages = dict(result.timings_ms)
        stages["publish"] = (done - t0) * 1e3
        cam.stats.on_processed((done - frame.received_at) * 1e3, stages)

    def _on_worker_error(self, frame: _Frame, exc: BaseException) -> None:
        if isinstance(exc, ImageConversionError):
            self._reject(exc, frame.camera)
            return
        if not self.context.ok() or self._worker is None:
            return                              # shutting down / deactivating: publishing failed, not the frame
        cam = self._cameras[frame.camera]
        cam.stats.on_failed(type(exc).__name__, str(exc))
        where = f" of camera {cam.name}" if cam.name else ""
        self.get_logger().error(f"frame {frame.header.stamp.sec}.{frame.header.stamp.nanosec:09d}{where} failed: "
                                f"{type(exc).__name__}: {exc}", throttle_duration_sec=WARN_THROTTLE_S)

    # --- diagnostics (executor thread) --------------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        if not self._cameras or self._diag_pub is None:
            return
        backend = self.pipeline.backend.describe() if self.pipeline is not None else "none"
        fqn = self.get_fully_qualified_name()
        statuses = []
        for cam in self._cameras:               # one status per camera
            snap = cam.stats.snapshot()
            name = f"{fqn}: panoptic segmentation" + (f" ({cam.name})" if cam.name else "")
            statuses.append(diagnostic_status(snap, name, f"{fqn}/{cam.name}" if cam.name else fqn, backend,
                                              self._state, cam.last_report))
            cam.last_report = snap
        self._diag_pub.publish(diagnostic_array(self.get_clock().now().to_msg(), statuses))

    # --- construction / teardown --------------------------------------------------------------------------
    def _create_pipeline(self, p: NodeParameters) -> Any:
        from hle_core.runtime import build_pipeline

        return build_pipeline(self._model_path, p["backend"], device=p["device"],
                              input_size=p.input_size, resize=p["resize_mode"], decoder=p.decoder_config,
                              tracker=None if p.cameras else p.tracker_config(),   # several: one per camera
                              logger=self.get_logger(), fp16=p["fp16"],
                              engine_cache_dir=p["engine_cache_dir"] or None, force_rebuild=p["force_rebuild"],
                              fallback=p["fallback"], workspace_mb=p["workspace_mb"],
                              intra_op_threads=p["intra_op_threads"])

    def _release_pipeline(self, wait_s: float, collect: bool) -> None:
        for cam in self._cameras:
            for sub in cam.subs:
                self.destroy_subscription(sub)
            cam.subs = []
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
        for cam in self._cameras:
            for pub in cam.pubs.values():
                self.destroy_lifecycle_publisher(pub)
            if cam.label_info_pub is not None:
                self.destroy_publisher(cam.label_info_pub)
        self._cameras = []
        if self._diag_timer is not None:
            self.destroy_timer(self._diag_timer)
            self._diag_timer = None
        if self._diag_pub is not None:
            self.destroy_publisher(self._diag_pub)
            self._diag_pub = None


def _stamp_key(frame: _Frame) -> tuple[int, int]:
    """A frame's order: its header stamp."""
    stamp = frame.header.stamp
    return stamp.sec, stamp.nanosec


def _header(stamp: Any, frame_id: str = "") -> Any:
    from std_msgs.msg import Header

    return Header(stamp=stamp, frame_id=frame_id)


def _panoptic_type() -> type:
    from hle_ros.msg import PanopticSegmentation   # generated from msg/ (scripts/setup_env.sh, colcon)

    return PanopticSegmentation


def run(args: list[str] | None = None) -> int:
    """Start the node (walking it to *active* with ``autostart``), spin until SIGINT / SIGTERM, release it.

    Returns:
        0 after a normal shutdown, 1 when start-up failed (invalid parameters, model or backend unusable).
    """
    configure_transport()
    allocator = keep_freed_memory()               # freed tensors stay in the process for the next frame
    rclpy.init(args=sys.argv if args is None else args)
    node = PanopticNode()
    node.get_logger().info(f"memory allocator: {allocator}")
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
    except Exception:
        # SIGINT can shut the context down between two waits of the executor; rclpy then raises RCLError
        # ("failed to initialize wait set: the given context is not valid") instead of ExternalShutdownException.
        if rclpy.ok():
            raise
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
