"""pip install of the Python side of HLE-ROS: `pip install -e .` gives the `hle` command and `import hle_core`.

The ROS 2 messages (hle_ros.msg) are not built by pip: `make setup` (scripts/setup_env.sh) builds them with
CMake into the virtual environment, and colcon builds everything on a ROS 2 install (see README.md).
"""
import re
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).resolve().parent
# The version lives once, in hle_core/__init__.py (read, not imported: the build must not need torch).
VERSION = re.search(r'^__version__ = "([^"]+)"', (ROOT / "hle_core" / "__init__.py").read_text(), re.M).group(1)

setup(
    # Distribution name "hle", not "hle_ros": the CMake message build installs an hle_ros egg-info of its own into
    # the same environment, and pip would otherwise try to uninstall it (taking the generated messages with it).
    name="hle",
    version=VERSION,
    description="Hierarchical Lovász Embeddings for proposal-free panoptic segmentation, with a ROS 2 node",
    long_description=(ROOT / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=("hle_core", "hle_core.*", "hle_ros", "hle_ros.*")),
    include_package_data=False,
    # The shipped default model, where hle_ros.default_model looks for it on a (non-editable) pip install:
    # <prefix>/share/hle_ros/models (the same relative place as a colcon install's share directory).
    data_files=[("share/hle_ros/models",
                 [str(p.relative_to(ROOT)) for p in sorted((ROOT / "models").glob("hle_street*"))])],
    install_requires=[
        "numpy",
        "scipy",
        "pyyaml",
        "tqdm",
        "pillow",
        "opencv-python-headless",
        "torch",
        "torchvision",
    ],
    extras_require={
        "onnx": ["onnx", "onnxruntime"],
        "ros": ["ros-rclpy", "ros-sensor-msgs", "ros-std-msgs", "ros-diagnostic-msgs", "ros-lifecycle-msgs",
                "rosbags"],
        "train": ["tensorboard", "optuna", "matplotlib"],
        # `hle bag-eval --bags --ray` (local runtime or cluster); the process pool needs nothing extra
        "fleet": ["ray"],
        "test": ["pytest"],
    },
    entry_points={
        "console_scripts": [
            "hle = hle_core.cli:main",
            "panoptic_node = hle_ros.panoptic_node:main",
            "hle_bag_play = hle_ros.bag_play:main",
        ],
        # Commands other packages add to `hle` (hle_core.cli.PLUGIN_GROUP): the ROS side registers its own, so
        # hle_core never imports hle_ros. Takes effect on (re)install: `make setup` / `pip install -e .`.
        "hle.commands": [
            "bag-play = hle_ros.commands.bag_play",
        ],
    },
)
