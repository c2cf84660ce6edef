"""Launch the HLE panoptic node: ``ros2 launch hle_ros panoptic.launch.py model:=/path/model.pt image:=/camera/image``.

Defaults live in the parameters file (``config/panoptic.yaml`` installed with the package). The launch arguments
only *override* it: an argument left empty changes nothing, so the file stays the single source of defaults.
The node is a lifecycle node that walks itself to *active* (its ``autostart`` parameter).
"""
from __future__ import annotations

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode

from hle_ros.parameters import BACKENDS

PACKAGE = "hle_ros"
NODE_NAME = "hle_panoptic"


def _node(context, *args, **kwargs):
    """The node, with only the arguments the user gave passed as parameter overrides."""
    arg = lambda name: LaunchConfiguration(name).perform(context)  # noqa: E731
    overrides = {name: arg(name) for name in ("model", "backend", "device") if arg(name)}
    image = arg("image")
    return [LifecycleNode(
        package=PACKAGE,
        executable="panoptic_node",
        name=NODE_NAME,
        namespace=arg("namespace"),
        parameters=[arg("params_file")] + ([overrides] if overrides else []),
        remappings=[("image", image), ("image/compressed", f"{image}/compressed")],
        output="screen",
        emulate_tty=True,
    )]


def generate_launch_description() -> LaunchDescription:
    default_params = os.path.join(get_package_share_directory(PACKAGE), "config", "panoptic.yaml")
    return LaunchDescription([
        DeclareLaunchArgument("params_file", default_value=default_params,
                              description="ROS 2 parameters file of the node (all defaults live there)"),
        DeclareLaunchArgument("model", default_value="",
                              description="model file: checkpoint (.pt), ONNX (.onnx) or TensorRT .engine "
                                          "(empty: the parameters file's value)"),
        DeclareLaunchArgument("backend", default_value="", choices=["", *BACKENDS],
                              description="inference backend (empty: the parameters file's value)"),
        DeclareLaunchArgument("device", default_value="",
                              description="auto | cpu | cuda | cuda:N (empty: the parameters file's value)"),
        DeclareLaunchArgument("image", default_value="image",
                              description="input sensor_msgs/Image topic (image/compressed follows it)"),
        DeclareLaunchArgument("namespace", default_value="",
                              description="namespace of the node (outputs: <namespace>/hle_panoptic/...)"),
        OpaqueFunction(function=_node),
    ])
