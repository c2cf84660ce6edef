"""hle_ros.conversions without a node: message bytes are written by hand here (the oracle), never by the code
under test, for every encoding, padded rows and both byte orders."""
from __future__ import annotations

import struct

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
pytest.importorskip("sensor_msgs.msg")
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from hle_core.config import street_class_table  # noqa: E402
from hle_ros.conversions import (  # noqa: E402
    ImageConversionError,
    array_to_image,
    as_rgb,
    build_panoptic_msg,
    compressed_to_rgb,
    image_to_array,
    image_to_rgb,
    labels_to_image,
)

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)          # the reference picture, H=5, W=7


def raw_msg(encoding: str, rows: list[bytes], width: int, step: int, bigendian: bool = False) -> Image:
    """An Image whose rows are ``rows`` (pixel bytes), each padded with 0xAB garbage to ``step`` bytes."""
    msg = Image(height=len(rows), width=width, encoding=encoding, is_bigendian=int(bigendian), step=step)
    msg.data = b"".join(r + b"\xab" * (step - len(r)) for r in rows)
    return msg


def rows_of(pixels: np.ndarray) -> list[bytes]:
    return [pixels[y].tobytes() for y in range(pixels.shape[0])]


@pytest.mark.parametrize("pad", [0, 3, 64])
@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8"])
def test_inference_encodings_give_rgb_views(encoding: str, pad: int) -> None:
    alpha = RNG.integers(0, 256, RGB.shape[:2] + (1,), dtype=np.uint8)
    gray = RGB[..., 0]
    pixels = {"rgb8": RGB, "bgr8": RGB[..., ::-1], "rgba8": np.concatenate([RGB, alpha], 2),
              "bgra8": np.concatenate([RGB[..., ::-1], alpha], 2), "mono8": gray}[encoding]
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    msg = raw_msg(encoding, rows_of(np.ascontiguousarray(pixels)), 7, 7 * channels + pad)
    out = image_to_rgb(msg)
    np.testing.assert_array_equal(out, gray if encoding == "mono8" else RGB)
    # a view of the message buffer, not a copy
    assert np.shares_memory(out, np.frombuffer(msg.data, np.uint8))


@pytest.mark.parametrize("bigendian", [False, True])
@pytest.mark.parametrize("encoding,fmt,values", [
    ("32SC1", "i", [-2_000_000_000, -1, 0, 1, 33007, 2_000_000_000]),
    ("16UC1", "H", [0, 1, 255, 256, 40000, 65535]),
    ("mono16", "H", [7, 65535, 0, 300, 1, 2]),
    ("32FC1", "f", [-1.5, 0.0, 3.25, 1e-3, 7.0, -8.0]),
])
def test_multibyte_encodings_honour_endianness_and_step(encoding, fmt, values, bigendian) -> None:
    order = ">" if bigendian else "<"
    rows = [struct.pack(f"{order}3{fmt}", *values[:3]), struct.pack(f"{order}3{fmt}", *values[3:])]
    msg = raw_msg(encoding, rows, width=3, step=len(rows[0]) + 5, bigendian=bigendian)   # odd padding
    out = image_to_array(msg)
    assert out.shape == (2, 3)
    np.testing.assert_array_equal(out.astype(np.float64), np.array(values, np.float64).reshape(2, 3).astype(
        np.float32 if fmt == "f" else np.float64))


def test_labels_image_is_little_or_native_32sc1_readable_back() -> None:
    labels = np.array([[0, 7, 26001], [26002, 33000, -5]], np.int32)
    msg = labels_to_image(labels)
    assert (msg.encoding, msg.height, msg.width, msg.step) == ("32SC1", 2, 3, 12)
    # decode the bytes independently with struct
    order = ">" if msg.is_bigendian else "<"
    assert list(struct.unpack(f"{order}6i", bytes(msg.data))) == labels.ravel().tolist()
    big = array_to_image(labels.astype(">i4"), "32SC1")
    assert big.is_bigendian == 1
    assert list(struct.unpack(">6i", bytes(big.data))) == labels.ravel().tolist()


def test_array_to_image_layout() -> None:
    msg = array_to_image(RGB[:, ::2], "rgb8", Header(frame_id="cam"))        # non-contiguous input
    assert (msg.height, msg.width, msg.step, msg.header.frame_id) == (5, 4, 12, "cam")
    assert bytes(msg.data) == np.ascontiguousarray(RGB[:, ::2]).tobytes()
    with pytest.raises(ValueError, match="rgb8 needs uint8 with 3"):
        array_to_image(RGB[..., 0], "rgb8")
    with pytest.raises(ValueError, match="unknown encoding"):
        array_to_image(RGB, "rgb9")


@pytest.mark.parametrize("case,reason", [
    ("encoding", "encoding"), ("not_for_inference", "encoding"), ("step", "step"), ("empty_w", "empty"),
    ("empty_h", "empty"), ("short", "size"), ("long", "size"), ("huge", "too_large"),
])
def test_bad_images_are_rejected_with_a_reason(case: str, reason: str) -> None:
    good = dict(height=5, width=7, encoding="rgb8", step=21)
    msg = {
        "encoding": Image(**{**good, "encoding": "yuv422"}),
        "not_for_inference": Image(**{**good, "encoding": "16UC1", "step": 14}),
        "step": Image(**{**good, "step": 20}),                      # < width * 3
        "empty_w": Image(**{**good, "width": 0, "step": 0}),
        "empty_h": Image(**{**good, "height": 0}),
        "short": Image(**good),
        "long": Image(**good),
        # claims 8000 x 8000 but carries no data: the pixel-count check must come before the data is touched
        "huge": Image(height=8000, width=8000, encoding="mono8", step=8000),
    }[case]
    msg.data = {"short": b"\0" * (21 * 5 - 1), "long": b"\0" * (21 * 5 + 1)}.get(case, b"\0" * (msg.step * msg.height
                                                                                          if case != "huge" else 0))
    with pytest.raises(ImageConversionError) as info:
        image_to_rgb(msg, max_pixels=4096 * 4096)
    assert info.value.reason == reason
    assert isinstance(info.value, ValueError)


def test_rejection_messages_name_what_was_received() -> None:
    msg = Image(height=2, width=4, encoding="rgb8", step=10, data=b"\0" * 20)
    with pytest.raises(ImageConversionError, match=r"step 10 .* 4 rgb8 pixels \(12 bytes\)"):
        image_to_rgb(msg)
    msg = Image(height=2, width=4, encoding="rgb8", step=12, data=b"\0" * 20)
    with pytest.raises(ImageConversionError, match="20 bytes, expected step \\* height = 12 \\* 2 = 24"):
        image_to_rgb(msg)


def test_one_pixel_image_is_valid() -> None:
    out = image_to_rgb(Image(height=1, width=1, encoding="bgr8", step=3, data=bytes([1, 2, 3])))
    np.testing.assert_array_equal(out, [[[3, 2, 1]]])


@pytest.mark.parametrize("kind", ["png_bgr", "png_gray", "png_bgra", "jpeg"])
def test_compressed_images_decode_to_rgb(kind: str) -> None:
    if kind == "png_gray":
        src, ref = RGB[..., 1].copy(), RGB[..., 1]
    elif kind == "png_bgra":
        src, ref = np.concatenate([RGB[..., ::-1], np.full((5, 7, 1), 9, np.uint8)], 2), RGB
    elif kind == "jpeg":                     # smooth colours (JPEG subsamples chroma); R high, B low
        ref = np.zeros((16, 16, 3), np.uint8)
        ref[..., 0], ref[..., 1], ref[..., 2] = 210, np.linspace(60, 140, 16, dtype=np.uint8)[None], 30
        src = np.ascontiguousarray(ref[..., ::-1])
    else:
        src, ref = np.ascontiguousarray(RGB[..., ::-1]), RGB
    ok, buf = cv2.imencode(".jpg" if kind == "jpeg" else ".png", src, [cv2.IMWRITE_JPEG_QUALITY, 100])
    assert ok
    out = compressed_to_rgb(CompressedImage(format=kind, data=buf.tobytes()))
    if kind == "jpeg":                       # lossy: close, not equal
        assert out.shape == ref.shape and np.abs(out.astype(int) - ref).max() < 8
    else:
        np.testing.assert_array_equal(out, ref)


def test_compressed_rejections() -> None:
    with pytest.raises(ImageConversionError) as info:
        compressed_to_rgb(CompressedImage(format="png", data=b""))
    assert info.value.reason == "empty"
    with pytest.raises(ImageConversionError) as info:
        compressed_to_rgb(CompressedImage(format="png", data=b"not an image at all"))
    assert info.value.reason == "decode"
    ok, buf = cv2.imencode(".png", np.full((4, 4), 40000, np.uint16))
    with pytest.raises(ImageConversionError) as info:
        compressed_to_rgb(CompressedImage(format="png", data=buf.tobytes()))
    assert info.value.reason == "encoding"
    ok, buf = cv2.imencode(".png", np.zeros((30, 40), np.uint8))
    with pytest.raises(ImageConversionError) as info:
        compressed_to_rgb(CompressedImage(format="png", data=buf.tobytes()), max_pixels=30 * 40 - 1)
    assert info.value.reason == "too_large"


def test_as_rgb_broadcasts_mono_without_copy() -> None:
    gray = RGB[..., 0].copy()
    out = as_rgb(gray)
    assert out.shape == (5, 7, 3) and np.shares_memory(out, gray)
    np.testing.assert_array_equal(out[..., 2], gray)
    with pytest.raises(ValueError, match=r"got shape \(5, 7, 4\)"):
        as_rgb(np.zeros((5, 7, 4), np.uint8))


class _Result:
    """A FrameResult-shaped object: per-segment fields derived from ``panoptic`` by brute force."""

    def __init__(self, panoptic: np.ndarray, dim: int) -> None:
        self.panoptic = panoptic
        ids = [int(v) for v in np.unique(panoptic) if v != 0]
        self.ids = np.array(ids, np.int64)
        self.category_ids = np.array([v // 1000 if v >= 1000 else v for v in ids], np.int64)
        self.is_thing = np.array([v >= 1000 for v in ids])
        self.scores = np.linspace(0.2, 0.9, len(ids)).astype(np.float32)
        self.areas = np.array([(panoptic == v).sum() for v in ids], np.int64)
        boxes = []
        for v in ids:
            ys, xs = np.nonzero(panoptic == v)
            boxes.append([xs.min(), ys.min(), xs.max(), ys.max()])
        self.boxes = np.array(boxes, np.int64).reshape(-1, 4)
        e = RNG.normal(size=(len(ids), dim)).astype(np.float32)
        self.embeddings = e / np.linalg.norm(e, axis=1, keepdims=True)
        self.track_ids = np.array([7 if t else -1 for t in self.is_thing], np.int64)


def test_build_panoptic_msg_matches_the_label_image() -> None:
    pytest.importorskip("hle_ros.msg", reason="hle_ros messages not built (make setup)")
    classes = street_class_table()
    pan = np.zeros((6, 9), np.int32)
    pan[:2] = 23                               # sky (stuff)
    pan[3:5, 1:4] = 26000                      # car #0
    pan[4:6, 6:9] = 26001                      # car #1
    pan[5, 0] = 7                              # road, one pixel
    res = _Result(pan, dim=12)
    header = Header(frame_id="cam_front")
    header.stamp.sec, header.stamp.nanosec = 12, 345
    msg = build_panoptic_msg(header, res, classes, 12, "torch", 3.5)
    assert msg.header.frame_id == "cam_front" and msg.labels.header.stamp.nanosec == 345
    labels = image_to_array(msg.labels)
    np.testing.assert_array_equal(labels, pan)
    assert {i.id for i in msg.instances} == set(np.unique(pan)) - {0}
    for inst in msg.instances:
        ys, xs = np.nonzero(labels == inst.id)
        assert inst.area == xs.size
        assert (inst.bbox.x_offset, inst.bbox.y_offset) == (xs.min(), ys.min())
        assert (inst.bbox.width, inst.bbox.height) == (xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
        assert inst.is_thing == (inst.id >= msg.label_divisor)
        assert inst.class_id == (inst.id // msg.label_divisor if inst.is_thing else inst.id)
        assert msg.class_ids[inst.class_index] == inst.class_id
        assert msg.class_is_thing[inst.class_index] == inst.is_thing
        assert len(inst.embedding) == msg.embedding_dim == 12
        assert abs(np.linalg.norm(np.asarray(inst.embedding)) - 1) < 1e-5
        assert inst.track_id == (7 if inst.is_thing else -1)
    assert list(msg.class_names) == classes.names and msg.backend == "torch"
    with pytest.raises(ValueError, match="12 dims, expected embedding_dim=8"):
        build_panoptic_msg(header, res, classes, 8)


def test_message_back_to_a_frame_result_is_the_inverse_of_build_panoptic_msg() -> None:
    """FrameResult → message (build_panoptic_msg) → FrameResult (frame_from_message): the same segments."""
    pytest.importorskip("hle_ros.msg", reason="hle_ros messages not built (make setup)")
    from hle_core.message_fields import frame_from_message

    pan = np.zeros((6, 9), np.int32)
    pan[:2] = 23
    pan[3:5, 1:4] = 26000
    pan[4:6, 6:9] = 26001
    res = _Result(pan, dim=12)
    back = frame_from_message(build_panoptic_msg(Header(), res, street_class_table(), 12, "torch", 3.5))
    np.testing.assert_array_equal(back.panoptic, pan)
    for name in ("ids", "category_ids", "is_thing", "areas", "boxes", "track_ids"):
        np.testing.assert_array_equal(getattr(back, name), getattr(res, name), err_msg=name)
    np.testing.assert_allclose(back.scores, res.scores, rtol=1e-6)
    np.testing.assert_allclose(back.embeddings, res.embeddings, rtol=1e-6)
    assert back.timings_ms == {"total": 3.5} and back.embedding is None


def test_build_panoptic_msg_all_void() -> None:
    pytest.importorskip("hle_ros.msg", reason="hle_ros messages not built (make setup)")
    res = _Result(np.zeros((1, 1), np.int32), dim=12)           # no segment at all
    res.embeddings = np.zeros((0,), np.float32)                  # as a decoder may hand back an empty array
    msg = build_panoptic_msg(Header(), res, street_class_table(), 12)
    assert len(msg.instances) == 0 and image_to_array(msg.labels).tolist() == [[0]]


# --- vision_msgs and camera_info (issue 12) ---------------------------------------------------------------------
def _result_with_things():
    from types import SimpleNamespace

    return SimpleNamespace(
        ids=np.array([7, 26000, 26001, 24000]), category_ids=np.array([7, 26, 26, 24]),
        is_thing=np.array([False, True, True, True]), scores=np.array([0.9, 0.8, 0.55, 0.4], np.float32),
        boxes=np.array([[0, 0, 9, 9], [2, 3, 5, 8], [10, 0, 10, 0], [1, 1, 2, 2]]),
        track_ids=np.array([-1, 12, 4, -1]))


def test_detections_are_the_thing_instances_with_track_ids() -> None:
    pytest.importorskip("vision_msgs.msg", reason="vision_msgs not built (make setup)")
    from hle_ros.conversions import build_detections_msg

    h = Header(frame_id="cam")
    h.stamp.sec = 5
    msg = build_detections_msg(h, _result_with_things())
    assert msg.header == h and len(msg.detections) == 3                  # the stuff segment has no detection
    got = [(d.id, d.results[0].hypothesis.class_id, round(d.results[0].hypothesis.score, 4),
            d.bbox.center.position.x, d.bbox.center.position.y, d.bbox.size_x, d.bbox.size_y, d.bbox.center.theta)
           for d in msg.detections]
    assert got == [("12", "26", 0.8, 3.5, 5.5, 4.0, 6.0, 0.0),           # inclusive box 2..5 x 3..8
                   ("4", "26", 0.55, 10.0, 0.0, 1.0, 1.0, 0.0),          # a single pixel
                   ("", "24", 0.4, 1.5, 1.5, 2.0, 2.0, 0.0)]             # untracked: empty id
    assert all(d.header == h and len(d.results) == 1 for d in msg.detections)


def test_label_info_is_the_class_table() -> None:
    pytest.importorskip("vision_msgs.msg", reason="vision_msgs not built (make setup)")
    from hle_ros.conversions import build_label_info_msg

    classes = street_class_table()
    msg = build_label_info_msg(Header(frame_id="x"), classes, 0.25)
    assert [(c.class_id, c.class_name) for c in msg.class_map] == list(zip(classes.ids, classes.names))
    assert msg.threshold == pytest.approx(0.25) and msg.header.frame_id == "x"


def _info(width: int, height: int):
    from sensor_msgs.msg import CameraInfo

    info = CameraInfo(width=width, height=height, distortion_model="plumb_bob")
    info.k = [500.0, 0.0, 319.5, 0.0, 480.0, 239.5, 0.0, 0.0, 1.0]
    info.p = [500.0, 0.0, 319.5, -25.0, 0.0, 480.0, 239.5, 0.0, 0.0, 0.0, 1.0, 0.0]
    info.d = [0.1, -0.2, 0.0, 0.0, 0.01]
    info.roi.x_offset, info.roi.width = 64, 320
    return info


def test_camera_info_copied_at_the_same_size_and_scaled_at_another() -> None:
    from hle_ros.conversions import camera_info_for_labels

    h = Header(frame_id="cam")
    h.stamp.sec = 9
    same = camera_info_for_labels(_info(640, 480), h, 640, 480)
    assert same.header == h and (same.width, same.height) == (640, 480)
    assert list(same.k) == list(_info(640, 480).k) and list(same.p) == list(_info(640, 480).p)
    half = camera_info_for_labels(_info(640, 480), h, 320, 240)        # labels at half the calibrated size
    assert (half.width, half.height) == (320, 240) and half.distortion_model == "plumb_bob"
    # pixel centres at integers: c' = (c + 0.5) s - 0.5, so the image centre stays the image centre
    np.testing.assert_allclose(half.k, [250.0, 0.0, 159.5, 0.0, 240.0, 119.5, 0.0, 0.0, 1.0])
    np.testing.assert_allclose(half.p, [250.0, 0.0, 159.5, -12.5, 0.0, 240.0, 119.5, 0.0, 0.0, 0.0, 1.0, 0.0])
    np.testing.assert_allclose(half.d, [0.1, -0.2, 0.0, 0.0, 0.01])     # distortion: normalised coordinates
    assert (half.roi.x_offset, half.roi.width) == (32, 160)
    uncalibrated = camera_info_for_labels(_info(0, 0), h, 100, 50)     # no size: nothing to scale from
    assert (uncalibrated.width, uncalibrated.height) == (100, 50) and list(uncalibrated.k) == list(_info(0, 0).k)
