"""ROS 2 adapter of HLE: message conversion, the panoptic node and bag tools; no ML math (that is hle_core).

The messages ``hle_ros.msg.PanopticSegmentation`` / ``PanopticInstance`` are generated from ``msg/`` by rosidl
and installed in a different directory than this source package when the project is installed with
``pip install -e .`` (the generated part lives in ``<venv>/lib/python3.X/site-packages/hle_ros/msg``).
Extending ``__path__`` with every other ``hle_ros`` directory on ``sys.path`` makes both one package.
On a colcon install both are in the same directory already and this is a no-op.
"""
from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
