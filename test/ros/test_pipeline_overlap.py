"""The node's overlapped stages (issue 15, item 3): Pipeline.infer on one thread, Pipeline.finish (decode, track)
on another via hle_ros.worker.PipelinedWorker, gives the same outputs, tracks included, in the same order as
Pipeline.process one frame at a time; and the node's order key is the header stamp."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")


def test_overlapped_stages_equal_process_in_order(tiny_model: Path) -> None:
    from hle_core.runtime import build_pipeline
    from hle_core.tracking import TrackerConfig
    from hle_ros.worker import PipelinedWorker

    pipe = build_pipeline(tiny_model, "torch", device="cpu", input_size=(64, 96), tracker=TrackerConfig())
    rng = np.random.default_rng(5)
    base = rng.integers(0, 256, (48, 80, 3), np.uint8)
    frames = [np.roll(base, 2 * k, axis=1) for k in range(6)]      # a moving scene: tracks carry over
    expected = [pipe.process(im) for im in frames]
    pipe.reset_tracks()

    results, errors, dropped, late = [], [], [], []
    w = PipelinedWorker(lambda k: pipe.infer([frames[k]])[0][0],
                        lambda k, f: results.append((k, pipe.finish(f, tracker=pipe.tracker))),
                        lambda k, e: errors.append(e), dropped.append, order_key=lambda k: k, on_late=late.append)
    w.start()
    deadline = time.monotonic() + 60
    for k in range(len(frames)):            # the next frame as soon as stage 1 took this one: both stages busy
        w.submit(k)
        while w.pending and time.monotonic() < deadline:
            time.sleep(0.001)
    while (w.pending or w.busy) and time.monotonic() < deadline:
        time.sleep(0.005)
    assert w.stop(5.0)
    pipe.close()
    assert errors == [] and dropped == [] and late == []
    assert [k for k, _ in results] == list(range(len(frames)))
    for (_, got), want in zip(results, expected):
        np.testing.assert_array_equal(got.panoptic, want.panoptic)
        np.testing.assert_array_equal(got.track_ids, want.track_ids)
    assert any((r.track_ids >= 0).any() for _, r in results)       # tracks were carried across the two threads


def test_node_orders_frames_by_header_stamp() -> None:
    from std_msgs.msg import Header

    from hle_ros.panoptic_node import _Frame, _stamp_key

    def frame(sec: int, nanosec: int) -> _Frame:
        h = Header()
        h.stamp.sec, h.stamp.nanosec = sec, nanosec
        return _Frame(h, 0.0)

    keys = [_stamp_key(frame(s, n)) for s, n in ((1, 999_999_999), (2, 0), (2, 1))]
    assert keys == sorted(keys) and _stamp_key(frame(1, 5)) < keys[0]
