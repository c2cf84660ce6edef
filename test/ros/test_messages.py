"""The generated hle_ros messages (msg/*.msg): every field survives rclpy's CDR round trip, and rosbags, a second,
pure-Python CDR implementation working from the .msg text alone, agrees with the built type support byte for
byte and on the type hash. Bag evaluation relies on the latter: bags are read and written with rosbags and the
bytes deserialised with rclpy."""
from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from sensor_msgs.msg import Image, RegionOfInterest
from std_msgs.msg import Header

from hle_core.config import LABEL_DIVISOR, VOID_ID
from hle_ros.msg import PanopticInstance, PanopticSegmentation

MSG_DIR = Path(__file__).resolve().parents[2] / "msg"
MSG_NAMES = ("PanopticInstance", "PanopticSegmentation")
SEG_TYPE = "hle_ros/msg/PanopticSegmentation"

# A 4 x 6 panoptic map, Cityscapes convention: road (7) and building (11) stuff, cars 26000/26001, a person 24000,
# void 0. Segments below are read off this map by hand: (id, class_id, class_index, is_thing, area, x, y, w, h).
PANOPTIC = np.array([[7, 7, 7, 26000, 26000, 0],
                     [7, 7, 26001, 26000, 24000, 0],
                     [11, 11, 26001, 26001, 24000, 24000],
                     [11, 11, 11, 11, 11, 0]], dtype=np.int32)
SEGMENTS = [(7, 7, 0, False, 5, 0, 0, 3, 2), (11, 11, 1, False, 7, 0, 2, 5, 2), (24000, 24, 2, True, 3, 4, 1, 2, 2),
            (26000, 26, 3, True, 3, 3, 0, 2, 2), (26001, 26, 3, True, 3, 2, 1, 2, 2)]
TRACK_IDS = [-1, -1, 2**40 + 3, 0, 17]          # stuff untracked; int64 range beyond int32
SCORES = [0.5, 0.25, 0.875, 1.0, 0.0]          # exactly representable in float32
CLASS_NAMES, CLASS_IDS = ["road", "building", "person", "car"], [7, 11, 24, 26]
CLASS_IS_THING = [False, False, True, True]
DIM = 12


def unit_embeddings(n: int, dim: int) -> np.ndarray:
    e = np.random.default_rng(0).normal(size=(n, dim)).astype(np.float32)
    return (e / np.linalg.norm(e, axis=1, keepdims=True)).astype(np.float32)


EMBEDDINGS = unit_embeddings(len(SEGMENTS), DIM)


def build_rclpy_msg() -> PanopticSegmentation:
    header = Header(frame_id="camera_optical")
    header.stamp.sec, header.stamp.nanosec = 1_700_000_000, 123_456_789
    h, w = PANOPTIC.shape
    labels = Image(header=header, height=h, width=w, encoding="32SC1", is_bigendian=0, step=w * 4,
                   data=PANOPTIC.astype("<i4").tobytes())
    instances = []
    for (seg_id, cid, k, thing, area, x, y, bw, bh), tid, score, emb in zip(SEGMENTS, TRACK_IDS, SCORES, EMBEDDINGS):
        instances.append(PanopticInstance(
            id=seg_id, track_id=tid, class_id=cid, class_index=k, is_thing=thing, score=score, area=area,
            bbox=RegionOfInterest(x_offset=x, y_offset=y, width=bw, height=bh), embedding=emb.tolist()))
    return PanopticSegmentation(
        header=header, labels=labels, instances=instances, class_names=CLASS_NAMES, class_ids=CLASS_IDS,
        class_is_thing=CLASS_IS_THING, embedding_dim=DIM, label_divisor=LABEL_DIVISOR, backend="torch",
        processing_time_ms=12.5)


def build_rosbags_msg(ts):
    """The same message as :func:`build_rclpy_msg`, built from rosbags' classes (generated from the .msg text)."""
    T = ts.types
    header = T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=1_700_000_000, nanosec=123_456_789),
                                      frame_id="camera_optical")
    h, w = PANOPTIC.shape
    labels = T["sensor_msgs/msg/Image"](header=header, height=h, width=w, encoding="32SC1", is_bigendian=0,
                                         step=w * 4, data=np.frombuffer(PANOPTIC.astype("<i4").tobytes(), np.uint8))
    instances = [
        T["hle_ros/msg/PanopticInstance"](
            id=seg_id, track_id=tid, class_id=cid, class_index=k, is_thing=thing, score=score, area=area,
            bbox=T["sensor_msgs/msg/RegionOfInterest"](x_offset=x, y_offset=y, width=bw, height=bh, do_rectify=False),
            embedding=emb)
        for (seg_id, cid, k, thing, area, x, y, bw, bh), tid, score, emb
        in zip(SEGMENTS, TRACK_IDS, SCORES, EMBEDDINGS)]
    return T[SEG_TYPE](
        header=header, labels=labels, instances=instances, class_names=CLASS_NAMES,
        class_ids=np.array(CLASS_IDS, np.uint16), class_is_thing=np.array(CLASS_IS_THING, bool), embedding_dim=DIM,
        label_divisor=LABEL_DIVISOR, backend="torch", processing_time_ms=12.5)


@pytest.fixture(scope="module")
def typestore():
    ts = get_typestore(Stores.ROS2_KILTED)
    types = {}
    for name in MSG_NAMES:
        types.update(get_types_from_msg((MSG_DIR / f"{name}.msg").read_text(), f"hle_ros/msg/{name}"))
    ts.register(types)
    return ts


def check_fields(msg) -> None:
    """``msg`` (rclpy) carries exactly the values of the module constants above."""
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id) == (
        1_700_000_000, 123_456_789, "camera_optical")
    lab = msg.labels
    assert (lab.height, lab.width, lab.encoding, lab.step, lab.is_bigendian) == (4, 6, "32SC1", 24, 0)
    np.testing.assert_array_equal(np.frombuffer(bytes(lab.data), "<i4").reshape(4, 6), PANOPTIC)
    assert len(msg.instances) == len(SEGMENTS)
    for inst, (seg_id, cid, k, thing, area, x, y, bw, bh), tid, score, emb in zip(
            msg.instances, SEGMENTS, TRACK_IDS, SCORES, EMBEDDINGS):
        assert (inst.id, inst.class_id, inst.class_index, inst.is_thing, inst.area) == (seg_id, cid, k, thing, area)
        assert (inst.bbox.x_offset, inst.bbox.y_offset, inst.bbox.width, inst.bbox.height) == (x, y, bw, bh)
        assert inst.track_id == tid and inst.score == score
        np.testing.assert_array_equal(np.asarray(inst.embedding, np.float32), emb)
    assert list(msg.class_names) == CLASS_NAMES and list(msg.class_ids) == CLASS_IDS
    assert list(msg.class_is_thing) == CLASS_IS_THING
    assert (msg.embedding_dim, msg.label_divisor, msg.backend, msg.processing_time_ms) == (DIM, 1000, "torch", 12.5)


# ---- the .msg files -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", MSG_NAMES)
def test_every_field_and_constant_is_commented(name):
    """Each field and constant carries a comment (units, id encoding) on the lines just above it."""
    lines = (MSG_DIR / f"{name}.msg").read_text().splitlines()
    for i, line in enumerate(lines):
        if line.strip() and not line.lstrip().startswith("#"):
            assert i > 0 and lines[i - 1].lstrip().startswith("#"), f"{name}.msg line {i + 1} uncommented: {line!r}"


def test_constants_match_hle_core():
    assert PanopticSegmentation.VOID_ID == VOID_ID
    assert PanopticInstance.UNTRACKED == -1


def test_labels_map_decodes_per_the_id_convention():
    """Oracle for the comments: thing ids // label_divisor are category ids, stuff ids are category ids."""
    msg = build_rclpy_msg()
    for inst in msg.instances:
        assert CLASS_IDS[inst.class_index] == inst.class_id
        assert CLASS_IS_THING[inst.class_index] == inst.is_thing
        expected_class = inst.id // msg.label_divisor if inst.is_thing else inst.id
        assert expected_class == inst.class_id
        mask = PANOPTIC == inst.id
        ys, xs = np.nonzero(mask)
        assert inst.area == mask.sum()
        assert (inst.bbox.x_offset, inst.bbox.y_offset) == (xs.min(), ys.min())
        assert (inst.bbox.width, inst.bbox.height) == (xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
    assert sorted(i.id for i in msg.instances) == sorted(set(PANOPTIC.ravel()) - {VOID_ID})


# ---- rclpy round trip ---------------------------------------------------------------------------------------
def test_rclpy_round_trip_keeps_every_field():
    msg = build_rclpy_msg()
    check_fields(msg)
    back = deserialize_message(serialize_message(msg), PanopticSegmentation)
    check_fields(back)
    assert back == msg


def test_empty_segmentation_round_trips():
    back = deserialize_message(serialize_message(PanopticSegmentation()), PanopticSegmentation)
    assert back == PanopticSegmentation()
    assert len(back.instances) == 0 and back.labels.height == 0


# ---- rosbags: a second implementation from the .msg text ----------------------------------------------------
def test_rosbags_cdr_equals_rclpy_cdr(typestore):
    """Same layout byte for byte, up to alignment padding (Fast CDR leaves padding bytes uninitialised, rosbags
    writes zeros): rclpy's bytes, read and rewritten by rosbags, equal rosbags' own serialisation."""
    raw = bytes(typestore.serialize_cdr(build_rosbags_msg(typestore), SEG_TYPE))
    rclpy_raw = bytes(serialize_message(build_rclpy_msg()))
    assert len(raw) == len(rclpy_raw)
    assert bytes(typestore.serialize_cdr(typestore.deserialize_cdr(rclpy_raw, SEG_TYPE), SEG_TYPE)) == raw
    check_fields(deserialize_message(raw, PanopticSegmentation))


def test_rosbags_reads_rclpy_bytes(typestore):
    back = typestore.deserialize_cdr(serialize_message(build_rclpy_msg()), SEG_TYPE)
    np.testing.assert_array_equal(np.frombuffer(back.labels.data.tobytes(), "<i4").reshape(4, 6), PANOPTIC)
    assert [i.track_id for i in back.instances] == TRACK_IDS
    np.testing.assert_array_equal(np.stack([i.embedding for i in back.instances]), EMBEDDINGS)
    assert list(back.class_names) == CLASS_NAMES


def _installed_type_hashes() -> dict[str, str]:
    """RIHS01 hashes written by rosidl at build time (share/hle_ros/msg/*.json of the install prefix)."""
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p] + [sys.prefix]
    for prefix in prefixes:
        share = Path(prefix) / "share" / "hle_ros" / "msg"
        if all((share / f"{n}.json").is_file() for n in MSG_NAMES):
            hashes = {}
            for n in MSG_NAMES:
                for entry in json.loads((share / f"{n}.json").read_text())["type_hashes"]:
                    hashes[entry["type_name"]] = entry["hash_string"]
            return hashes
    pytest.fail(f"share/hle_ros/msg/*.json not found under {prefixes}: messages not installed (make setup)")


def test_rosbags_type_hash_equals_rosidl(typestore):
    """A bag written by rosbags declares the same type hash as the live topic of the built type support."""
    hashes = _installed_type_hashes()
    for n in MSG_NAMES:
        assert re.fullmatch(r"RIHS01_[0-9a-f]{64}", hashes[f"hle_ros/msg/{n}"])
        assert typestore.hash_rihs01(f"hle_ros/msg/{n}") == hashes[f"hle_ros/msg/{n}"]


@pytest.mark.parametrize("storage", [StoragePlugin.SQLITE3, StoragePlugin.MCAP])
def test_bag_written_by_rosbags_deserialises_with_rclpy(typestore, tmp_path, storage):
    bag = tmp_path / "bag"
    raw = typestore.serialize_cdr(build_rosbags_msg(typestore), SEG_TYPE)
    with Writer(bag, version=9, storage_plugin=storage) as writer:
        conn = writer.add_connection("/hle/panoptic", SEG_TYPE, typestore=typestore)
        writer.write(conn, 1_700_000_000_123_456_789, raw)
    with Reader(bag) as reader:
        records = [(c.topic, c.msgtype, t, bytes(d)) for c, t, d in reader.messages()]
    assert [(r[0], r[1], r[2]) for r in records] == [("/hle/panoptic", SEG_TYPE, 1_700_000_000_123_456_789)]
    check_fields(deserialize_message(records[0][3], PanopticSegmentation))
