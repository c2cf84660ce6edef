"""rosbag2 tooling without ROS: synthetic bags, damaged bags, bag evaluation and its CLI (hle_core.bags).

Oracles: the synthetic generator itself (what went into a bag), a "perfect" pipeline that returns the ground
truth (PQ = STQ = VPQ = 1, no ID switch, zero embedding drift), track ids shifted on purpose (switches counted by
hand), and frame counts of bags built message by message.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("rosbags")

from hle_core.bags import BagReader, BagWriter, evaluate_bag, write_synthetic_bag
from hle_core.bags.types import IMAGE_TYPE, PANOPTIC_TYPE, stamp_ns
from hle_core.bags.writer import DEFAULT_START_NS, image_message
from hle_core.cli import main
from hle_core.config import LABEL_DIVISOR, street_class_table
from hle_core.data import SceneGenerator
from hle_core.image_codec import encode_array, image_to_array
from hle_core.pipeline import FrameResult

SIZE = (64, 128)
IMG, GT = "/camera/image_raw", "/camera/panoptic_gt"


# tiny_model, synthetic_bag: test/conftest.py
@pytest.fixture(scope="module")
def synth_bag(synthetic_bag) -> Path:
    return synthetic_bag(num_clips=2, frames=4, size=SIZE, seed=5, fps=20.0)


@pytest.fixture(scope="module")
def synth_bag_sqlite(synthetic_bag) -> Path:
    return synthetic_bag(num_clips=2, frames=4, size=SIZE, seed=5, fps=20.0, storage="sqlite3")   # a bag directory


def read_all(path: Path, topics=(IMG, GT)) -> tuple[list, BagReader]:
    with BagReader(path) as reader:
        records = list(reader.messages(topics))
    return records, reader


# --- synthetic bags ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,storage", [("clip.mcap", None), ("clipdir", "sqlite3")])
def test_synthetic_bag_round_trip(tmp_path: Path, name: str, storage: str | None) -> None:
    path = tmp_path / name
    args = ["synth", "--video", "--bag", str(path), "--num", "2", "--frames", "3", "--size", "64x128", "--seed", "5",
            "--fps", "20"] + (["--bag-storage", storage] if storage else [])
    assert main(args) == 0
    assert path.is_file() if storage is None else (path / "metadata.yaml").is_file()
    records, reader = read_all(path)
    assert reader.storage == (storage or "mcap") and reader.error is None and not reader.salvaged
    assert {t: (s.msgtype, s.declared, s.read) for t, s in reader.topics.items()} == {
        IMG: (IMAGE_TYPE, 6, 6), GT: (IMAGE_TYPE, 6, 6)}
    gen = SceneGenerator(SIZE, seed=5, classes=street_class_table())
    clips = [gen.video(3, index=i).frames for i in range(2)]
    period, clip_period = 50_000_000, 3 * 50_000_000 + 5_000_000_000
    images = [r for r in records if r.topic == IMG]
    gts = {stamp_ns(r.msg.header): r for r in records if r.topic == GT}
    for k, rec in enumerate(images):
        i, t = divmod(k, 3)
        stamp = DEFAULT_START_NS + i * clip_period + t * period
        assert stamp_ns(rec.msg.header) == rec.log_time == stamp and rec.msg.header.frame_id == "camera"
        assert rec.msg.encoding == "rgb8" and gts[stamp].msg.encoding == "32SC1"
        np.testing.assert_array_equal(image_to_array(rec.msg), clips[i][t].image)
        np.testing.assert_array_equal(image_to_array(gts[stamp].msg), clips[i][t].panoptic)
    # thing ids (class * 1000 + k) recur over a clip: the same object keeps its id
    things = [{int(v) for v in np.unique(f.panoptic) if v >= LABEL_DIVISOR} for f in clips[0]]
    assert things[0] and things[0] & things[1] & things[2]


def test_synthetic_bag_is_deterministic_and_refuses_to_overwrite(tmp_path: Path) -> None:
    a = write_synthetic_bag(tmp_path / "a" / "x.mcap", num_clips=1, frames=2, size=SIZE, seed=9, progress=False)
    b = write_synthetic_bag(tmp_path / "b" / "x.mcap", num_clips=1, frames=2, size=SIZE, seed=9, progress=False)
    assert Path(a.path).read_bytes() == Path(b.path).read_bytes()        # byte for byte (the name is stored too)
    with pytest.raises(FileExistsError, match="exists already"):
        write_synthetic_bag(a.path, num_clips=1, frames=1, size=SIZE, progress=False)
    write_synthetic_bag(a.path, num_clips=1, frames=1, size=SIZE, overwrite=True, progress=False)
    with pytest.raises(ValueError, match="names a mcap file"):
        write_synthetic_bag(tmp_path / "c.mcap", storage="sqlite3", progress=False)


# --- a perfect pipeline: the oracle for the metrics ---------------------------------------------------------------
class OraclePipeline:
    """Returns the ground truth of each image (looked up by its pixels) as the prediction.

    Track id = the ground-truth k (+ ``shift`` from frame ``shift_from`` on); embedding = a fixed random unit vector
    per object, so the same object never drifts.
    """

    def __init__(self, truth: dict[bytes, np.ndarray], shift_from: int | None = None, shift: int = 500) -> None:
        self.truth, self.shift_from, self.shift, self.frames = truth, shift_from, shift, 0
        self.classes = street_class_table()
        self.embedding_dim = 8
        self.device = "cpu"
        self.backend = SimpleNamespace(name="oracle")
        self.tracker = None

    def reset_tracks(self) -> None:
        pass

    def process(self, image: np.ndarray) -> FrameResult:
        pan = self.truth.get(np.ascontiguousarray(image).tobytes(), np.zeros(image.shape[:2], np.int64))
        ids = np.array([v for v in np.unique(pan) if v != 0], np.int64)
        thing = ids >= LABEL_DIVISOR
        cats = np.where(thing, ids // LABEL_DIVISOR, ids)
        tracks = np.where(thing, ids % LABEL_DIVISOR, -1)
        if self.shift_from is not None and self.frames >= self.shift_from:
            tracks = np.where(thing, tracks + self.shift, -1)
        emb = np.stack([np.random.default_rng(int(v)).normal(size=8) for v in ids]) if ids.size else np.zeros((0, 8))
        boxes = []
        for v in ids:
            ys, xs = np.nonzero(pan == v)
            boxes.append([xs.min(), ys.min(), xs.max(), ys.max()])
        self.frames += 1
        return FrameResult(panoptic=pan.astype(np.int32), ids=ids, category_ids=cats, is_thing=thing,
                           scores=np.ones(ids.size, np.float32), areas=np.array([(pan == v).sum() for v in ids]),
                           boxes=np.array(boxes, np.int64).reshape(-1, 4),
                           embeddings=(emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32),
                           track_ids=tracks.astype(np.int64), timings_ms={"infer": 1.0, "total": 2.0})


def truth_of(bag: Path) -> tuple[dict[bytes, np.ndarray], list[np.ndarray]]:
    records, _ = read_all(bag)
    gts = {stamp_ns(r.msg.header): image_to_array(r.msg).astype(np.int64) for r in records if r.topic == GT}
    images = sorted((r for r in records if r.topic == IMG), key=lambda r: stamp_ns(r.msg.header))
    truth = {np.ascontiguousarray(image_to_array(r.msg)).tobytes(): gts[stamp_ns(r.msg.header)] for r in images}
    return truth, [gts[stamp_ns(r.msg.header)] for r in images]


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_perfect_prediction_scores_one(synth_bag: Path, synth_bag_sqlite: Path, storage: str) -> None:
    bag = synth_bag if storage == "mcap" else synth_bag_sqlite
    truth, _ = truth_of(bag)
    m = evaluate_bag(bag, IMG, gt_topic=GT, pipeline=OraclePipeline(truth), progress=False)
    assert (m["frames_total"], m["frames_evaluated"], m["frames_rejected"], m["frames_scored"]) == (8, 8, 0, 8)
    assert m["sequences"] == 2                                  # the 5 s gap between the clips
    assert m["PQ"] == m["SQ"] == m["RQ"] == pytest.approx(1.0)
    assert m["pq"]["Things"]["pq"] == pytest.approx(1.0) and m["pq"]["Stuff"]["pq"] == pytest.approx(1.0)
    assert m["stq"]["STQ"] == m["stq"]["AQ"] == m["stq"]["SQ_sem"] == pytest.approx(1.0)
    assert m["vpq"]["VPQ"] == pytest.approx(1.0) and m["id_switches"] == 0
    st = m["embedding_stability"]
    assert st["pairs"] > 0 and st["mean_same_object_distance"] == pytest.approx(0.0, abs=1e-6)
    assert st["mean_nearest_other_distance"] > 0.05 and st["closer_to_self_fraction"] == 1.0
    assert set(m["latency_ms"]) == {"infer", "total"} and m["latency_ms"]["total"]["p99"] == pytest.approx(2.0)


def test_id_switches_counted_against_a_hand_count(synth_bag: Path) -> None:
    truth, gts = truth_of(synth_bag)
    first_clip = gts[:4]
    objects = [{int(v) for v in np.unique(g) if v >= LABEL_DIVISOR} for g in first_clip]
    # every track id changes from frame 2 on: each object seen before frame 2 and again later switches once
    expected = len(set().union(*objects[:2]) & set().union(*objects[2:]))
    assert expected > 0
    m = evaluate_bag(synth_bag, IMG, gt_topic=GT, pipeline=OraclePipeline(truth, shift_from=2), progress=False)
    # the shift persists into clip 2, a sequence of its own, where every id is consistent again
    assert m["id_switches"] == expected
    assert m["PQ"] == pytest.approx(1.0) and m["stq"]["AQ"] < 1.0


# --- damaged and unusual bags --------------------------------------------------------------------------------------
def test_truncated_mcap_file_is_salvaged(synth_bag: Path, tmp_path: Path) -> None:
    data = synth_bag.read_bytes()
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    truth, _ = truth_of(synth_bag)
    m = evaluate_bag(cut, IMG, gt_topic=GT, pipeline=OraclePipeline(truth), progress=False)
    assert m["salvaged"] and "end magic" in m["open_error"] and "truncated" in m["read_error"]
    assert 0 < m["frames_total"] < 8 and m["frames_declared"] is None      # the index went with the footer
    assert m["frames_evaluated"] + m["frames_rejected"] == m["frames_total"]
    assert m["PQ"] == pytest.approx(1.0)


def test_truncated_bag_directory_counts_the_lost_frames(tmp_path: Path) -> None:
    bag = tmp_path / "dir"
    write_synthetic_bag(bag, num_clips=1, frames=6, size=SIZE, seed=2, progress=False)
    storage = bag / "dir.mcap"
    storage.write_bytes(storage.read_bytes()[: storage.stat().st_size // 2])
    m = evaluate_bag(bag, IMG, gt_topic=GT, pipeline=OraclePipeline({}), progress=False)
    assert m["frames_total"] == m["frames_declared"] == 6                 # metadata.yaml still says 6
    assert m["frames_read"] < 6
    assert m["rejected_by_reason"]["unreadable"] == 6 - m["frames_read"]
    assert m["frames_evaluated"] + m["frames_rejected"] == 6


def test_every_frame_accounted_for(tmp_path: Path, tiny_model: Path) -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (32, 64, 3), dtype=np.uint8)
    gt = np.full((32, 64), 7, np.int32)
    gt[8:20, 10:30] = 26001
    t0 = 1_000_000_000_000
    with BagWriter(tmp_path / "mixed.mcap") as bag:
        bag.add_topic(IMG, IMAGE_TYPE)
        bag.add_topic(GT, IMAGE_TYPE)
        store = bag.typestore

        # recorded in the reverse order of the header stamps (log time t0 + 10 - k, stamp t0 + k * 0.1 s)
        def image(k: int, pixels: np.ndarray, encoding: str) -> None:
            bag.write(IMG, t0 + 10 - k, image_message(store, encode_array(pixels, encoding), t0 + k * 10**8, "cam"))

        def truth(k: int, labels: np.ndarray) -> None:
            bag.write(GT, t0 + 10 - k, image_message(store, encode_array(labels, "32SC1"), t0 + k * 10**8, "cam"))

        image(0, rgb, "rgb8"), truth(0, gt)                                  # scored
        image(1, rgb, "rgb8")                                                # no ground truth
        image(2, rgb[..., 0], "mono8"), truth(2, gt)                         # mono8 with ground truth: scored
        bag.write_raw(IMG, t0 + 7, b"\x00\x01\x00\x00 not an image")         # bytes that do not deserialise
        image(4, rng.integers(0, 65535, (32, 64), dtype=np.uint16), "mono16")  # an encoding the network refuses
        image(5, rgb, "bgr8"), truth(5, gt[:16])                             # ground truth of another size
        truth(9, gt)                                                         # ground truth without an image
    m = evaluate_bag(tmp_path / "mixed.mcap", IMG, gt_topic=GT, model=tiny_model, backend="torch", device="cpu",
                     out_dir=tmp_path / "out", progress=False)
    assert m["frames_total"] == 6 and m["frames_evaluated"] == 4 and m["frames_rejected"] == 2
    assert m["rejected_by_reason"] == {"deserialize": 1, "encoding": 1}
    assert m["gt_status"] == {"scored": 2, "no_gt": 1, "gt_shape": 1} and m["frames_scored"] == 2
    assert m["gt_unmatched"] == 1
    stamps = [f["stamp_ns"] for f in m["per_frame"]]
    assert stamps == sorted(stamps)                                          # header-stamp order, not log order
    report = (tmp_path / "out" / "report.md").read_text()
    for reason in ("deserialize", "encoding", "no_gt", "gt_shape"):
        assert f"`{reason}`" in report


# --- the CLI and the output bag ------------------------------------------------------------------------------------
def test_bag_eval_cli_end_to_end(synth_bag: Path, tiny_model: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "eval"
    rc = main(["bag-eval", "--bag", str(synth_bag), "--image-topic", IMG, "--gt-topic", GT, "--model", str(tiny_model),
               "--backend", "torch", "--device", "cpu", "--out", str(out), "--output-bag", "--no-progress"])
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    assert (m["frames_total"], m["frames_evaluated"], m["frames_rejected"]) == (8, 8, 0)
    for key in ("PQ", "SQ", "RQ", "id_switches", "embedding_stability"):
        assert key in m
    assert {"STQ", "AQ", "SQ_sem"} <= set(m["stq"]) and "VPQ" in m["vpq"]
    assert {"All", "Things", "Stuff"} <= set(m["pq"])
    assert {"preprocess", "infer", "decode", "track", "total"} <= set(m["latency_ms"])
    assert {"p50", "p90", "p99", "max"} <= set(m["latency_ms"]["total"])
    assert (out / "report.md").is_file() and m["files"]["overlays"]
    assert "frames: 8 total, 8 evaluated, 0 rejected" in capsys.readouterr().out
    # the output bag: the node's message type, one message per frame with the image's stamp
    output = tmp_path / "eval_panoptic.mcap"
    assert m["output_bag"]["path"] == str(output) and m["output_bag"]["messages"] == 8
    records, reader = read_all(output, ["/hle_panoptic/panoptic"])
    assert reader.topics["/hle_panoptic/panoptic"].msgtype == PANOPTIC_TYPE
    images, _ = read_all(synth_bag, [IMG])
    assert [stamp_ns(r.msg.header) for r in records] == sorted(stamp_ns(r.msg.header) for r in images)
    msg = records[0].msg
    labels = image_to_array(msg.labels)
    assert labels.shape == SIZE and msg.labels.encoding == "32SC1" and msg.label_divisor == LABEL_DIVISOR
    assert {i.id for i in msg.instances} == set(np.unique(labels).tolist()) - {0}
    assert all(len(i.embedding) == msg.embedding_dim for i in msg.instances)


def test_bag_eval_cli_errors(synth_bag: Path, tiny_model: Path, tmp_path: Path, capsys) -> None:
    base = ["bag-eval", "--image-topic", IMG, "--model", str(tiny_model), "--out", str(tmp_path / "o")]
    assert main(base + ["--bag", str(tmp_path / "missing.mcap")]) == 2
    assert "bag not found" in capsys.readouterr().err
    assert main(base + ["--bag", str(synth_bag), "--gt-topic", "/typo"]) == 2
    err = capsys.readouterr().err
    assert "/typo" in err and IMG in err                                     # names what the bag has
    assert not (tmp_path / "o").exists()


def test_bag_eval_cli_passes_input_size_and_resize_mode(tmp_path: Path, monkeypatch) -> None:
    import hle_core.bags

    seen = {}

    def fake_evaluate_bag(bag, image_topic, **kw):
        seen.update(kw)
        return {"frames_total": 0, "frames_evaluated": 0, "frames_rejected": 0, "rejected_by_reason": {}}

    monkeypatch.setattr(hle_core.bags, "evaluate_bag", fake_evaluate_bag)
    (tmp_path / "b.mcap").write_bytes(b"")
    (tmp_path / "m.pt").write_bytes(b"")
    base = ["bag-eval", "--bag", str(tmp_path / "b.mcap"), "--image-topic", IMG, "--model", str(tmp_path / "m.pt"),
            "--out", str(tmp_path / "o"), "--input-size", "256x512"]
    main(base)
    assert (seen["input_size"], seen["resize"]) == ((256, 512), "letterbox")     # the node's default
    main(base + ["--resize-mode", "stretch"])
    assert seen["resize"] == "stretch"


def test_evaluate_bag_builds_the_pipeline_with_the_resize_mode(synth_bag: Path, tiny_model: Path,
                                                                monkeypatch) -> None:
    import hle_core.runtime

    seen = {}

    def fake_build_pipeline(model, backend, **kw):
        seen.update(kw)
        raise RuntimeError("recorded")

    monkeypatch.setattr(hle_core.runtime, "build_pipeline", fake_build_pipeline)
    with pytest.raises(RuntimeError, match="recorded"):
        evaluate_bag(synth_bag, IMG, model=tiny_model, input_size=(256, 512), resize="stretch", progress=False)
    assert (seen["input_size"], seen["resize"]) == ((256, 512), "stretch")


def test_bag_play_without_rclpy_says_so(synth_bag: Path, monkeypatch, capsys) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "rclpy" else real(name, *a))
    assert main(["bag-play", "--bag", str(synth_bag), "--topic", IMG]) == 2
    assert "rclpy is not installed" in capsys.readouterr().err


def test_hle_core_bag_tools_do_not_import_ros() -> None:
    code = ("import sys, hle_core.bags, hle_core.commands.bag_eval, hle_core.cli;"
            "hle_core.cli.build_parser();"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('rclpy', 'hle_ros', 'sensor_msgs')];"
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
