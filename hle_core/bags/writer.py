"""Writing rosbag2 bags without ROS (rosbags): the synthetic camera bag and the node-message output bag.

Path rule (:func:`resolve_target`): ``PATH.mcap`` / ``PATH.db3`` → a single storage file of that kind (what
``ros2 bag record`` puts inside its folder; rosbags and ``ros2 bag play`` read it directly); any other PATH →
a rosbag2 directory (``metadata.yaml`` + storage file) in ``storage`` (mcap by default).

:func:`write_synthetic_bag` turns clips of :class:`hle_core.data.SceneGenerator` into ``/camera/image_raw``
(``sensor_msgs/msg/Image`` rgb8) and ``/camera/panoptic_gt`` (32SC1, Cityscapes convention: stuff = class id,
things = class × 1000 + k with k stable over a clip) with equal header stamps at a fixed frame rate.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ..image_codec import ImageFields, encode_array
from .reader import is_storage_file
from .types import IMAGE_TYPE, INSTANCE_TYPE, PANOPTIC_TYPE, base_typestore, header

__all__ = ["STORAGES", "DEFAULT_IMAGE_TOPIC", "DEFAULT_GT_TOPIC", "DEFAULT_START_NS", "BagWriter",
           "resolve_target", "check_target",
           "image_message", "panoptic_message", "SyntheticBagInfo", "write_synthetic_bag"]

STORAGES = ("mcap", "sqlite3")
_SUFFIX_STORAGE = {".mcap": "mcap", ".db3": "sqlite3"}
DEFAULT_IMAGE_TOPIC = "/camera/image_raw"
DEFAULT_GT_TOPIC = "/camera/panoptic_gt"
#: First header stamp of a synthetic bag (2023-11-14 22:13:20 UTC): fixed, so a bag is a function of its seed.
DEFAULT_START_NS = 1_700_000_000 * 1_000_000_000


def resolve_target(path: str | Path, storage: str | None = None) -> tuple[Path, str, bool]:
    """``(path, storage, single_file)`` for a bag to write (see the module docstring).

    Raises:
        ValueError: unknown ``storage``, or a ``.mcap`` / ``.db3`` suffix that contradicts it.
    """
    path = Path(path)
    if storage is not None and storage not in STORAGES:
        raise ValueError(f"bag storage must be one of {STORAGES}, got {storage!r}")
    implied = _SUFFIX_STORAGE.get(path.suffix.lower())
    if implied is not None:
        if storage is not None and storage != implied:
            raise ValueError(f"bag path {path} names a {implied} file but storage {storage!r} was asked for; "
                             f"drop the suffix to write a {storage} bag directory")
        return path, implied, True
    return path, storage or "mcap", False


#: What a rosbag2 directory holds: ``metadata.yaml`` and storage files (sqlite3 side files, zstd-compressed files).
_BAG_DIR_SUFFIXES = (".mcap", ".db3", ".db3-shm", ".db3-wal", ".zstd")


def _same_or_nested(a: Path, b: Path) -> bool:
    """``a`` and ``b`` are the same path, or one lies inside the other (symbolic links resolved)."""
    ra, rb = a.resolve(), b.resolve()
    return ra == rb or ra in rb.parents or rb in ra.parents


def check_target(path: str | Path, storage: str | None = None, *, overwrite: bool = False,
                 protect: Iterable[str | Path] = ()) -> tuple[Path, str, bool]:
    """Check that a bag may be written at ``path`` before anything is read, run or deleted; returns
    :func:`resolve_target`'s ``(path, storage, single_file)``.

    Nothing is ever replaced unless ``overwrite`` is given, and even then only a bag: a ``.mcap`` / ``.db3``
    storage file (recognised by its first bytes, not its name), an empty folder, or a rosbag2 directory
    (``metadata.yaml`` and storage files, nothing else). A symbolic link is never replaced, and no path of
    ``protect`` (the input bags) is ever written over, into or around, whatever ``overwrite`` says.

    Raises:
        ValueError: bad ``storage`` (see :func:`resolve_target`).
        FileExistsError: ``path`` exists and may not be replaced (the message says why).
    """
    path, storage, single = resolve_target(path, storage)
    for other in protect:
        if other is not None and _same_or_nested(path, Path(other)):
            raise FileExistsError(f"output bag {path} is (or contains, or lies inside) the input bag {other}; "
                                  f"never writing over an input: choose another path")
    if not (path.exists() or path.is_symlink()):
        return path, storage, single
    if not overwrite:
        raise FileExistsError(f"bag {path} exists already (overwrite=True, or --overwrite, replaces it)")
    if path.is_symlink():
        raise FileExistsError(f"{path} is a symbolic link; not replacing it (remove it yourself)")
    if path.is_dir():
        entries = list(path.iterdir())
        if entries and not (path / "metadata.yaml").is_file():
            raise FileExistsError(f"{path} exists and is not a rosbag2 directory (no metadata.yaml); not removing it")
        other = [e.name for e in entries if e.name != "metadata.yaml" and
                 not (e.is_file() and not e.is_symlink() and e.name.lower().endswith(_BAG_DIR_SUFFIXES))]
        if other:
            raise FileExistsError(f"{path} holds more than a bag ({', '.join(sorted(other)[:5])}); not removing it")
    elif not (path.is_file() and is_storage_file(path)):
        raise FileExistsError(f"{path} exists and is not a bag storage file (no MCAP or SQLite header); "
                              f"not replacing it")
    return path, storage, single


def _remove_existing(path: Path) -> None:
    """Delete an earlier bag at ``path`` that :func:`check_target` accepted."""
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


class BagWriter:
    """A rosbag2 bag open for writing: ``add_topic`` then ``write`` (a message object) or ``write_raw`` (CDR bytes).

    Args:
        path, storage: see :func:`resolve_target`.
        typestore: rosbags typestore of the message types (default: :func:`base_typestore`).
        overwrite: replace an existing bag at ``path`` (else ``FileExistsError``); only a bag is ever replaced
            (see :func:`check_target`).
        custom_data: string key/values stored in ``metadata.yaml`` (directory bags only).
        protect: paths never written over, into or around (the input bags), whatever ``overwrite`` says.
    """

    def __init__(self, path: str | Path, storage: str | None = None, typestore: Any = None, overwrite: bool = False,
                 custom_data: dict[str, str] | None = None, protect: Iterable[str | Path] = ()) -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer

        self.path, self.storage, self.single_file = check_target(path, storage, overwrite=overwrite, protect=protect)
        if self.path.exists():
            _remove_existing(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.typestore = typestore if typestore is not None else base_typestore()
        # a single file is written as a bag directory beside it, then moved out of it on close
        self._dir = self.path.parent / f".{self.path.name}.partial" if self.single_file else self.path
        if self._dir.exists():
            shutil.rmtree(self._dir)
        plugin = StoragePlugin.MCAP if self.storage == "mcap" else StoragePlugin.SQLITE3
        self._writer = Writer(self._dir, version=9, storage_plugin=plugin)
        for key, value in (custom_data or {}).items():
            self._writer.set_custom_data(key, value)
        self._writer.open()
        self._connections: dict[str, Any] = {}
        self.counts: dict[str, int] = {}
        self.closed = False

    def add_topic(self, topic: str, msgtype: str) -> None:
        """Declare ``topic`` of type ``msgtype`` (e.g. ``sensor_msgs/msg/Image``)."""
        if topic in self._connections:
            raise ValueError(f"topic {topic} already added")
        self._connections[topic] = self._writer.add_connection(topic, msgtype, typestore=self.typestore)
        self.counts[topic] = 0

    def write(self, topic: str, stamp: int, msg: Any) -> None:
        """Serialise ``msg`` (a typestore message object) and write it at log time ``stamp`` (ns)."""
        conn = self._connection(topic)
        self.write_raw(topic, stamp, self.typestore.serialize_cdr(msg, conn.msgtype))

    def write_raw(self, topic: str, stamp: int, data: bytes | memoryview) -> None:
        """Write already serialised (CDR) bytes — also bytes that do not deserialise, for robustness tests."""
        self._writer.write(self._connection(topic), int(stamp), bytes(data))
        self.counts[topic] += 1

    def _connection(self, topic: str) -> Any:
        try:
            return self._connections[topic]
        except KeyError:
            raise ValueError(f"topic {topic} was not added (have {sorted(self._connections)})") from None

    def close(self) -> Path:
        """Finish the bag; returns its path (the storage file or the bag directory)."""
        if self.closed:
            return self.path
        self._writer.close()
        self.closed = True
        if self.single_file:
            inner = next(p for p in self._dir.iterdir() if p.suffix in (".mcap", ".db3"))
            inner.replace(self.path)
            shutil.rmtree(self._dir)
        return self.path

    def abort(self) -> None:
        """Drop a half-written bag."""
        if self.closed:
            return
        self.closed = True
        try:
            self._writer.close()
        except Exception:
            pass
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> "BagWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


# ----------------------------------------------------------------------------------------------------
# messages
def image_message(store: Any, fields: ImageFields, stamp: int, frame_id: str) -> Any:
    """``sensor_msgs/msg/Image`` (rosbags object) with the pixel ``fields`` and header ``stamp`` (ns) / ``frame_id``."""
    return store.types[IMAGE_TYPE](header=header(store, stamp, frame_id), height=fields.height, width=fields.width,
                                   encoding=fields.encoding, is_bigendian=fields.is_bigendian, step=fields.step,
                                   data=np.frombuffer(fields.data, np.uint8))


def panoptic_message(store: Any, msg_header: Any, result: Any, classes: Any, embedding_dim: int, backend: str,
                     processing_time_ms: float) -> Any:
    """The node's ``hle_ros/msg/PanopticSegmentation`` (rosbags object, ``store`` from
    :func:`~hle_core.bags.types.hle_typestore`) for one FrameResult; fields as the node fills them
    (:mod:`hle_core.message_fields`)."""
    from ..message_fields import class_table_fields, instance_fields

    roi = store.types["sensor_msgs/msg/RegionOfInterest"]
    instance = store.types[INSTANCE_TYPE]
    table = class_table_fields(classes)
    labels = encode_array(np.ascontiguousarray(result.panoptic, dtype=np.int32), "32SC1")
    instances = []
    for f in instance_fields(result, classes, embedding_dim):
        x, y, w, h = f["bbox"]
        instances.append(instance(id=f["id"], track_id=f["track_id"], class_id=f["class_id"],
                                  class_index=f["class_index"], is_thing=f["is_thing"], score=f["score"],
                                  area=f["area"], bbox=roi(x_offset=x, y_offset=y, height=h, width=w,
                                                           do_rectify=False),
                                  embedding=np.asarray(f["embedding"], np.float32)))
    label_msg = store.types[IMAGE_TYPE](header=msg_header, height=labels.height, width=labels.width,
                                        encoding=labels.encoding, is_bigendian=labels.is_bigendian,
                                        step=labels.step, data=np.frombuffer(labels.data, np.uint8))
    return store.types[PANOPTIC_TYPE](
        header=msg_header, labels=label_msg, instances=instances, class_names=table["class_names"],
        class_ids=np.asarray(table["class_ids"], np.uint16), class_is_thing=np.asarray(table["class_is_thing"], bool),
        embedding_dim=int(embedding_dim), label_divisor=int(table["label_divisor"]), backend=backend,
        processing_time_ms=float(processing_time_ms))


# ----------------------------------------------------------------------------------------------------
# the synthetic camera bag
@dataclass
class SyntheticBagInfo:
    """What :func:`write_synthetic_bag` wrote."""

    path: str
    storage: str
    image_topic: str
    gt_topic: str
    clips: int
    frames_per_clip: int
    size: tuple[int, int]
    seed: int
    fps: float
    frame_id: str
    clip_start_ns: list[int] = field(default_factory=list)   # header stamp of each clip's first frame

    @property
    def frames(self) -> int:
        return self.clips * self.frames_per_clip

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "frames": self.frames}


def write_synthetic_bag(path: str | Path, *, num_clips: int = 1, frames: int = 30, size: tuple[int, int] = (256, 512),
                        seed: int = 0, fps: float = 10.0, storage: str | None = None,
                        image_topic: str = DEFAULT_IMAGE_TOPIC, gt_topic: str = DEFAULT_GT_TOPIC,
                        frame_id: str = "camera", start_ns: int = DEFAULT_START_NS, clip_gap_s: float = 5.0,
                        classes: Any = None, overwrite: bool = False, progress: bool = True) -> SyntheticBagInfo:
    """Write ``num_clips`` synthetic clips (``SceneGenerator(size, seed).video(frames, index=i)``) as a camera bag.

    Frame ``t`` of clip ``i`` is stamped ``start_ns + i·(frames·Δ + clip_gap_s) + t·Δ`` with ``Δ = 1/fps``
    (rounded to whole nanoseconds); image and ground truth share the stamp, which is also the bag's log time. Clips are
    separated by ``clip_gap_s`` seconds so that :func:`hle_core.bags.evaluate_bag` sees them as sequences.
    Deterministic: the bytes depend only on the arguments.

    Raises:
        ValueError: bad counts, frame rate or storage; FileExistsError: ``path`` exists and not ``overwrite``.
    """
    from tqdm import tqdm

    from ..config import street_class_table
    from ..data import SceneGenerator

    if num_clips < 1 or frames < 1:
        raise ValueError(f"need num_clips >= 1 and frames >= 1, got {num_clips} and {frames}")
    if not fps > 0 or clip_gap_s < 0:
        raise ValueError(f"need fps > 0 and clip_gap_s >= 0, got {fps} and {clip_gap_s}")
    classes = classes if classes is not None else street_class_table()
    gen = SceneGenerator(tuple(size), seed=seed, classes=classes)
    period = int(round(1e9 / fps))
    clip_period = frames * period + int(round(clip_gap_s * 1e9))
    info = SyntheticBagInfo(str(path), "", image_topic, gt_topic, num_clips, frames, (int(size[0]), int(size[1])),
                            int(seed), float(fps), frame_id)
    custom = {"hle.synthetic": json.dumps({"seed": int(seed), "size": list(info.size), "clips": num_clips,
                                           "frames_per_clip": frames, "fps": float(fps)})}
    with BagWriter(path, storage, overwrite=overwrite, custom_data=custom) as bag:
        info.path, info.storage = str(bag.path), bag.storage
        bag.add_topic(image_topic, IMAGE_TYPE)
        bag.add_topic(gt_topic, IMAGE_TYPE)
        store = bag.typestore
        with tqdm(total=num_clips * frames, desc=f"synthetic bag {bag.path.name}", unit="frame",
                  disable=not progress) as bar:
            for i in range(num_clips):
                clip_start = start_ns + i * clip_period
                info.clip_start_ns.append(clip_start)
                for t, frame in enumerate(gen.video(frames, index=i).frames):
                    stamp = clip_start + t * period
                    bag.write(image_topic, stamp, image_message(store, encode_array(frame.image, "rgb8"), stamp,
                                                                frame_id))
                    gt = encode_array(np.ascontiguousarray(frame.panoptic, dtype=np.int32), "32SC1")
                    bag.write(gt_topic, stamp, image_message(store, gt, stamp, frame_id))
                    bar.update(1)
    return info
