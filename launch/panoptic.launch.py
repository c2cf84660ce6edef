"""Launch the HLE panoptic node: ``ros2 launch hle_ros panoptic.launch.py [image:=/camera/image_raw] [model:=...]``.

With no arguments the node runs the shipped default model (share/hle_ros/models/hle_street.pt) on ``image``.
Defaults live in the parameters file (``config/panoptic.yaml`` installed with the package). The launch arguments
only *override* it: an argument left empty changes nothing, so the file stays the single source of defaults;
their descriptions and choices come from the node's parameter table (hle_ros/parameters.py).
The node is a lifecycle node that walks itself to *active* (its ``autostart`` parameter).

Several cameras, one network: ``cameras:="[front, left]"`` subscribes ``<namespace>/front/image``, ... and
publishes ``<namespace>/hle_panoptic/front/panoptic``, ...; remap each camera's ``<name>/image`` (and its
``<name>/camera_info`` next to it) with your own ``remappings`` when the topics live elsewhere.
"""
from __future__ import annotations

import os

import yaml
from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode

from hle_ros.parameters import PARAMETERS_BY_NAME, ParameterError, validate_one

PACKAGE = "hle_ros"
NODE_NAME = "hle_panoptic"
#: Node parameters exposed as launch arguments: argument name -> parameter name.
OVERRIDES = {
    "model": "model",
    "backend": "backend",
    "device": "device",
    "cameras": "cameras",
    "batch_window_ms": "batch_window_ms",
    "input_height": "input_height",
    "input_width": "input_width",
    "resize_mode": "resize_mode",
    "qos_reliability": "qos.reliability",
    "subscribe_compressed": "subscribe_compressed",
}


def _typed(arg: str, text: str):
    """A launch argument's text as the parameter's type (YAML for non-strings), checked like the node does."""
    spec = PARAMETERS_BY_NAME[OVERRIDES[arg]]
    value = text if spec.type is str else yaml.safe_load(text)
    value, reason = validate_one(spec, value)
    if reason:
        raise ParameterError(f"launch argument {arg}:={text!r}: {reason}")
    return value


def _node(context, *args, **kwargs):
    """The node, with only the arguments the user gave passed as parameter overrides."""
    arg = lambda name: LaunchConfiguration(name).perform(context)  # noqa: E731
    overrides = {OVERRIDES[name]: _typed(name, arg(name)) for name in OVERRIDES if arg(name)}
    image = arg("image")
    remappings = [] if overrides.get("cameras") else \
        [("image", image), ("image/compressed", f"{image}/compressed")]
    return [LifecycleNode(
        package=PACKAGE,
        executable="panoptic_node",
        name=NODE_NAME,
        namespace=arg("namespace"),
        parameters=[arg("params_file")] + ([overrides] if overrides else []),
        remappings=remappings,
        output="screen",
        emulate_tty=True,
    )]


def _argument(name: str, what: str = "") -> DeclareLaunchArgument:
    spec = PARAMETERS_BY_NAME[OVERRIDES[name]]
    choices = ["", *spec.choices] if spec.choices else (["", "true", "false"] if spec.type is bool else None)
    extra = {"choices": choices} if choices else {}
    return DeclareLaunchArgument(name, default_value="", description=f"{what or spec.description} "
                                 f"(empty: the parameters file's value)", **extra)


def generate_launch_description() -> LaunchDescription:
    default_params = os.path.join(get_package_share_directory(PACKAGE), "config", "panoptic.yaml")
    return LaunchDescription([
        DeclareLaunchArgument("params_file", default_value=default_params,
                              description="ROS 2 parameters file of the node (all defaults live there)"),
        _argument("model"),
        _argument("backend"),
        _argument("device"),
        _argument("input_height"),
        _argument("input_width"),
        _argument("resize_mode"),
        _argument("cameras", "camera names served by one node and one network, e.g. \"[front, left]\": "
                             "<name>/image -> ~/<name>/panoptic, ~/<name>/detections, ...; the image argument "
                             "then does not apply"),
        _argument("batch_window_ms"),
        _argument("qos_reliability", "reliability of the image subscriptions (best_effort matches every publisher)"),
        _argument("subscribe_compressed"),
        DeclareLaunchArgument("image", default_value="image",
                              description="input sensor_msgs/Image topic of the single-camera node "
                                          "(image/compressed follows it; camera_info is read beside it, e.g. "
                                          "/cam/image_raw -> /cam/camera_info)"),
        DeclareLaunchArgument("namespace", default_value="",
                              description="namespace of the node (outputs: <namespace>/hle_panoptic/...)"),
        OpaqueFunction(function=_node),
    ])
