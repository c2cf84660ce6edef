"""Scoring recorded node output (hle_core.bags.score, ``hle bag-eval --pred-bag``) without running a model.

Oracle: :func:`evaluate_bag` itself. Its output bag carries the node's ``PanopticSegmentation`` message for every
frame it processed, so scoring that bag against the same camera bag must give exactly evaluate_bag's figures; frames
whose messages are taken out of the bag (or spoilt) must be counted as the node losing them.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

pytest.importorskip("rosbags")

from hle_core.bags import BagReader, BagWriter, evaluate_bag
from hle_core.bags.score import score_recorded_bag
from hle_core.bags.types import (COMPRESSED_TYPE, IMAGE_TYPE, PANOPTIC_TYPE, header, hle_typestore,
                                  stamp_ns)
from hle_core.cli import main
from hle_core.commands.bag_eval import NODE_OUTPUT_TOPIC as OUTPUT_TOPIC
from hle_core.config import LABEL_DIVISOR, street_class_table
from hle_core.image_codec import encode_array, image_to_array
from hle_core.pipeline import FrameResult

SIZE = (64, 128)
IMG, GT = "/camera/image_raw", "/camera/panoptic_gt"
SCORE_KEYS = ("PQ", "SQ", "RQ", "pq", "stq", "vpq", "id_switches", "embedding_stability", "frames_total",
              "frames_evaluated", "frames_rejected", "frames_scored", "gt_status", "sequences")


class ImperfectOracle:
    """Each image's ground truth as the prediction, spoilt on purpose so that every figure lies strictly between
    its extremes: on odd frames the first thing object is erased (PQ < 1), from the third frame of a clip on every
    track id changes (ID switches), embeddings are random per frame (stability pairs with drift)."""

    def __init__(self, truth: dict[bytes, np.ndarray]) -> None:
        self.truth, self.frames, self.clip_frames = truth, 0, 0
        self.classes = street_class_table()
        self.embedding_dim = 4
        self.device = "cpu"
        self.backend = SimpleNamespace(name="oracle")
        self.tracker = None

    def reset_tracks(self) -> None:
        self.clip_frames = 0

    def process(self, image: np.ndarray) -> FrameResult:
        pan = self.truth[np.ascontiguousarray(image).tobytes()].copy()
        things = [v for v in np.unique(pan) if v >= LABEL_DIVISOR]
        if self.frames % 2 and things:
            pan[pan == things[0]] = 0
        ids = np.unique(pan)
        ids = ids[ids != 0].astype(np.int64)
        thing = ids >= LABEL_DIVISOR
        tracks = np.where(thing, ids % LABEL_DIVISOR + (100 if self.clip_frames >= 2 else 0), -1)
        emb = np.random.default_rng(self.frames).normal(size=(ids.size, self.embedding_dim))
        boxes = []
        for v in ids:
            ys, xs = np.nonzero(pan == v)
            boxes.append([xs.min(), ys.min(), xs.max(), ys.max()])
        self.frames += 1
        self.clip_frames += 1
        return FrameResult(panoptic=pan.astype(np.int32), ids=ids,
                           category_ids=np.where(thing, ids // LABEL_DIVISOR, ids), is_thing=thing,
                           scores=np.ones(ids.size, np.float32),
                           areas=np.array([(pan == v).sum() for v in ids], np.int64),
                           boxes=np.array(boxes, np.int64).reshape(-1, 4),
                           embeddings=(emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32),
                           track_ids=tracks.astype(np.int64), timings_ms={"total": 3.0 + self.frames})


def records(path: Path, topics: list[str], deserialize: bool = True) -> list[Any]:
    with BagReader(path) as reader:
        return list(reader.messages(topics, deserialize=deserialize))


def assert_same(a: Any, b: Any, where: str = "") -> None:
    """Equal structure; floats equal to 1e-9."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{where}: keys {sorted(a)} vs {sorted(b)}"
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, float) or isinstance(b, float):
        assert a is not None and b is not None and abs(a - b) <= 1e-9, f"{where}: {a} vs {b}"
    else:
        assert a == b, f"{where}: {a} vs {b}"


@pytest.fixture(scope="module")
def camera(synthetic_bag) -> Path:
    return synthetic_bag(num_clips=2, frames=3, size=SIZE, seed=5, fps=20.0)


@pytest.fixture(scope="module")
def oracle_run(camera: Path) -> tuple[dict, Path]:
    """evaluate_bag with :class:`ImperfectOracle`, and its output bag of node messages."""
    recs = records(camera, [IMG, GT])
    gts = {stamp_ns(r.msg.header): image_to_array(r.msg).astype(np.int64) for r in recs if r.topic == GT}
    truth = {np.ascontiguousarray(image_to_array(r.msg)).tobytes(): gts[stamp_ns(r.msg.header)]
             for r in recs if r.topic == IMG}
    pred = camera.parent / "oracle_output.mcap"
    m = evaluate_bag(camera, IMG, gt_topic=GT, pipeline=ImperfectOracle(truth), output_bag=pred,
                     output_topic=OUTPUT_TOPIC, warmup=0, progress=False)
    return m, pred


@pytest.fixture(scope="module")
def model_run(camera: Path, tiny_model: Path) -> tuple[dict, Path]:
    pred = camera.parent / "model_output.mcap"
    m = evaluate_bag(camera, IMG, gt_topic=GT, model=tiny_model, backend="torch", device="cpu", output_bag=pred,
                     output_topic=OUTPUT_TOPIC, progress=False)
    return m, pred


def rewrite(src: Path, dst: Path, edit) -> Path:
    """Copy the node messages of ``src`` to ``dst``; ``edit(k, raw, msg, store)`` returns [] (drop), [raw bytes]
    or message objects to write instead."""
    store = hle_typestore()
    raws = records(src, [OUTPUT_TOPIC], deserialize=False)
    msgs = records(src, [OUTPUT_TOPIC])
    with BagWriter(dst, typestore=store, overwrite=True) as bag:
        bag.add_topic(OUTPUT_TOPIC, PANOPTIC_TYPE)
        for k, (raw, rec) in enumerate(zip(raws, msgs)):
            for item in edit(k, raw.raw, rec.msg, store):
                if isinstance(item, bytes):
                    bag.write_raw(OUTPUT_TOPIC, raw.log_time, item)
                else:
                    bag.write(OUTPUT_TOPIC, raw.log_time, item)
    return dst


# --- (a) the recorded messages score exactly as the run that produced them ------------------------------------------
@pytest.mark.parametrize("run", ["oracle_run", "model_run"])
def test_recorded_output_scores_as_evaluate_bag(camera: Path, run: str, request: pytest.FixtureRequest) -> None:
    evaluated, pred = request.getfixturevalue(run)
    scored = score_recorded_bag(camera, GT, pred, OUTPUT_TOPIC, image_topic=IMG)   # class table from the messages
    assert_same({k: evaluated[k] for k in SCORE_KEYS}, {k: scored[k] for k in SCORE_KEYS})
    assert scored["frames_evaluated"] == scored["frames_scored"] == scored["frames_total"] == 6
    assert scored["rejected_by_reason"] == {} and scored["predictions_total"] == 6
    assert scored["predictions_unmatched"] == 0 and scored["predictions_duplicate_stamps"] == 0
    if run == "oracle_run":                      # figures strictly inside their range: the comparison has teeth
        assert 0.3 < scored["PQ"] < 1.0 and scored["id_switches"] > 0 and 0 < scored["stq"]["AQ"] < 1.0
        assert scored["embedding_stability"]["pairs"] > 0
        # latency is the node's processing_time_ms: the oracle's timings_ms["total"], 4 .. 9 ms
        assert scored["latency_ms"]["total"]["max"] == pytest.approx(9.0)
        assert evaluated["latency_ms"]["total"] == scored["latency_ms"]["total"]


def test_compressed_camera_bag_is_scored_by_its_decoded_size(camera: Path, oracle_run: tuple[dict, Path],
                                                             tmp_path: Path) -> None:
    import cv2

    compressed = tmp_path / "compressed.mcap"
    with BagWriter(compressed) as bag:
        bag.add_topic(IMG, COMPRESSED_TYPE)
        bag.add_topic(GT, IMAGE_TYPE)
        store = bag.typestore
        for rec in records(camera, [IMG, GT]):
            if rec.topic == GT:
                bag.write(GT, rec.log_time, rec.msg)
                continue
            ok, png = cv2.imencode(".png", np.ascontiguousarray(image_to_array(rec.msg)[..., ::-1]))
            assert ok
            bag.write(IMG, rec.log_time, store.types[COMPRESSED_TYPE](header=rec.msg.header, format="png",
                                                                      data=png.reshape(-1)))
    evaluated, pred = oracle_run
    scored = score_recorded_bag(compressed, GT, pred, OUTPUT_TOPIC, image_topic=IMG, classes=street_class_table())
    assert_same({k: evaluated[k] for k in SCORE_KEYS}, {k: scored[k] for k in SCORE_KEYS})


# --- (b) frames the node never answered ----------------------------------------------------------------------------
def test_dropped_frames_are_not_received(camera: Path, oracle_run: tuple[dict, Path], tmp_path: Path) -> None:
    evaluated, pred = oracle_run
    dropped = {1, 4}
    thinned = rewrite(pred, tmp_path / "thinned.mcap", lambda k, raw, msg, store: [] if k in dropped else [raw])
    m = score_recorded_bag(camera, GT, thinned, OUTPUT_TOPIC, image_topic=IMG)
    assert m["frames_total"] == 6 and m["frames_evaluated"] == 4 and m["frames_rejected"] == 2
    assert m["frames_evaluated"] + m["frames_rejected"] == m["frames_total"]
    assert m["rejected_by_reason"] == {"not_received": 2} and m["frames_scored"] == 4
    assert m["predictions_total"] == 4 and m["predictions_unmatched"] == 0
    assert [f["status"] for f in m["per_frame"]] == ["rejected:not_received" if k in dropped else "scored"
                                                     for k in range(6)]
    assert m["pq"]["images"] == 4 and evaluated["pq"]["images"] == 6


# --- (c) spoilt and stray predictions --------------------------------------------------------------------------------
def test_bad_and_unmatched_predictions(camera: Path, oracle_run: tuple[dict, Path], tmp_path: Path) -> None:
    _, pred = oracle_run

    def spoil(k: int, raw: bytes, msg: Any, store: Any) -> list:
        if k == 0:                              # label image half the camera image's size
            small = encode_array(np.zeros((SIZE[0] // 2, SIZE[1] // 2), np.int32), "32SC1")
            labels = dataclasses.replace(msg.labels, height=small.height, width=small.width, step=small.step,
                                         data=np.frombuffer(small.data, np.uint8))
            return [dataclasses.replace(msg, labels=labels)]
        if k == 2:                              # the real answer, plus one stamped 1 ns later: matches no image
            stray = stamp_ns(msg.header) + 1
            return [raw, dataclasses.replace(msg, header=header(store, stray, msg.header.frame_id))]
        return [raw]

    spoilt = rewrite(pred, tmp_path / "spoilt.mcap", spoil)
    m = score_recorded_bag(camera, GT, spoilt, OUTPUT_TOPIC, image_topic=IMG, out_dir=tmp_path / "out", plots=False)
    assert m["rejected_by_reason"] == {"bad_prediction": 1}
    assert m["frames_evaluated"] == 5 and m["frames_evaluated"] + m["frames_rejected"] == 6
    assert m["per_frame"][0]["status"] == "rejected:bad_prediction"
    assert "(32, 64)" in m["examples"]["bad_prediction"][0]
    assert m["predictions_total"] == 7 and m["predictions_unmatched"] == 1
    report = (tmp_path / "out" / "report.md").read_text()
    assert "`bad_prediction`" in report and "recorded predictions without an image | 1" in report


def test_prediction_topic_of_another_type_is_refused(camera: Path) -> None:
    from hle_core.bags import BagError

    with pytest.raises(BagError, match="expected hle_ros/msg/PanopticSegmentation"):
        score_recorded_bag(camera, GT, camera, IMG, image_topic=IMG)


# --- (d) the CLI --------------------------------------------------------------------------------------------------
def test_bag_eval_pred_bag_cli(camera: Path, oracle_run: tuple[dict, Path], tmp_path: Path, capsys) -> None:
    evaluated, pred = oracle_run
    out = tmp_path / "live"
    rc = main(["bag-eval", "--bag", str(camera), "--image-topic", IMG, "--gt-topic", GT, "--pred-bag", str(pred),
               "--out", str(out)])
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["PQ"] == pytest.approx(evaluated["PQ"], abs=1e-9) and m["frames_evaluated"] == 6
    report = (out / "report.md").read_text()
    assert "recorded node output" in report and "None" not in report
    assert "pq_per_frame.png" in m["files"]["plots"] or m["files"]["plots_skipped"]
    assert "recorded predictions: 6, 0 matching no image" in capsys.readouterr().out


def test_bag_eval_pred_bag_cli_errors(camera: Path, oracle_run: tuple[dict, Path], tiny_model: Path,
                                      tmp_path: Path, capsys) -> None:
    _, pred = oracle_run
    base = ["bag-eval", "--bag", str(camera), "--image-topic", IMG, "--gt-topic", GT, "--out", str(tmp_path / "o")]
    assert main(base + ["--pred-bag", str(pred), "--model", str(tiny_model)]) == 2
    assert "exclude each other" in capsys.readouterr().err
    assert main(base) == 2
    assert "--pred-bag" in capsys.readouterr().err
    assert main(base + ["--pred-bag", str(tmp_path / "missing.mcap")]) == 2
    assert "prediction bag not found" in capsys.readouterr().err
    assert main(base + ["--pred-bag", str(pred), "--pred-topic", "/typo"]) == 2
    assert "/typo" in capsys.readouterr().err
    assert main(base + ["--pred-bag", str(pred), "--output-bag"]) == 2
    assert not (tmp_path / "o").exists()
