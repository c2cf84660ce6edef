"""Message types for bags written and read without ROS: the rosbags typestore, plus the node's own messages.

Standard types (``sensor_msgs/msg/Image`` ...) come from rosbags' bundled definitions; the node's
``hle_ros/msg/PanopticSegmentation`` and ``PanopticInstance`` are registered from the ``.msg`` files themselves
(the repository's ``msg/`` folder, or ``<prefix>/share/hle_ros/msg`` of an installed package), so a bag written
here carries exactly the definitions the node publishes.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["IMAGE_TYPE", "COMPRESSED_TYPE", "PANOPTIC_TYPE", "INSTANCE_TYPE", "NODE_MESSAGES", "base_typestore",
           "hle_typestore", "find_msg_dir", "header", "stamp_ns"]

IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"
PANOPTIC_TYPE = "hle_ros/msg/PanopticSegmentation"
INSTANCE_TYPE = "hle_ros/msg/PanopticInstance"
#: The node's message files, dependencies first.
NODE_MESSAGES = ("PanopticInstance", "PanopticSegmentation")


def base_typestore() -> Any:
    """rosbags typestore with the standard ROS 2 message types (the newest distribution rosbags knows)."""
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.LATEST)


def find_msg_dir() -> Path:
    """The folder holding the node's ``.msg`` files.

    Raises:
        FileNotFoundError: none of the searched places has them (the places are listed).
    """
    candidates = [Path(__file__).resolve().parents[2] / "msg", Path(sys.prefix) / "share" / "hle_ros" / "msg"]
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix:
            candidates.append(Path(prefix) / "share" / "hle_ros" / "msg")
    for folder in candidates:
        if all((folder / f"{name}.msg").is_file() for name in NODE_MESSAGES):
            return folder
    raise FileNotFoundError("the node's message definitions (PanopticSegmentation.msg, PanopticInstance.msg) were "
                            f"not found in any of {[str(c) for c in candidates]}")


def hle_typestore(msg_dir: str | Path | None = None) -> Any:
    """:func:`base_typestore` plus ``hle_ros/msg/PanopticInstance`` and ``PanopticSegmentation`` from ``msg_dir``."""
    from rosbags.typesys import get_types_from_msg

    folder = Path(msg_dir) if msg_dir is not None else find_msg_dir()
    store = base_typestore()
    types: dict[str, Any] = {}
    for name in NODE_MESSAGES:
        path = folder / f"{name}.msg"
        try:
            types.update(get_types_from_msg(path.read_text(encoding="utf-8"), f"hle_ros/msg/{name}"))
        except Exception as exc:
            raise ValueError(f"cannot parse message definition {path}: {exc}") from exc
    store.register(types)
    return store


def header(store: Any, stamp: int, frame_id: str) -> Any:
    """``std_msgs/msg/Header`` with ``stamp`` (ns since the epoch) and ``frame_id``."""
    time_type = store.types["builtin_interfaces/msg/Time"]
    return store.types["std_msgs/msg/Header"](stamp=time_type(sec=int(stamp // 1_000_000_000),
                                                              nanosec=int(stamp % 1_000_000_000)),
                                              frame_id=frame_id)


def stamp_ns(msg_header: Any) -> int:
    """A header's stamp in nanoseconds."""
    return int(msg_header.stamp.sec) * 1_000_000_000 + int(msg_header.stamp.nanosec)
