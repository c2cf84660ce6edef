"""Several cameras, one network (issue 12): Pipeline.process_batch, the multi-camera node's entry into the library.
One backend call per network input shape, results equal to one image at a time, a tracker per image."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def pipeline(tiny_model: Path):
    from hle_core.runtime import build_pipeline

    pipe = build_pipeline(tiny_model, "torch", device="cpu", input_size=(64, 96))
    calls: list[tuple[int, ...]] = []
    infer = pipe.backend.infer

    def counting(batch):
        calls.append(tuple(batch.shape))
        return infer(batch)

    pipe.backend.infer = counting
    yield pipe, calls
    pipe.close()


def test_one_backend_call_for_a_batch_with_results_as_one_at_a_time(pipeline) -> None:
    pipe, calls = pipeline
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, (48, 80, 3), np.uint8), rng.integers(0, 256, (120, 90, 3), np.uint8)]
    calls.clear()
    batch = pipe.process_batch(images)
    assert calls == [(2, 3, 64, 96)]                     # fixed input size: both cameras in one call
    calls.clear()
    single = [pipe.process(im) for im in images]
    assert calls == [(1, 3, 64, 96)] * 2
    for b, s, im in zip(batch, single, images):
        assert b.panoptic.shape == im.shape[:2]
        # batched convolutions may round differently; the decoded maps must agree nearly everywhere
        assert (b.panoptic == s.panoptic).mean() > 0.99
        assert set(b.timings_ms) >= {"preprocess", "infer", "decode", "track", "total"}
        assert (b.track_ids == -1).all()                 # no trackers given: untracked


def test_native_size_groups_by_shape_and_trackers_are_per_image(tiny_model: Path) -> None:
    from hle_core.runtime import build_pipeline
    from hle_core.tracking import EmbeddingTracker, TrackerConfig

    pipe = build_pipeline(tiny_model, "torch", device="cpu")          # native: padded to multiples of 32
    shapes: list[tuple[int, ...]] = []
    infer = pipe.backend.infer
    pipe.backend.infer = lambda batch: (shapes.append(tuple(batch.shape)), infer(batch))[1]
    try:
        a, b, c = (np.zeros((40, 60, 3), np.uint8), np.zeros((70, 50, 3), np.uint8), np.zeros((64, 64, 3), np.uint8))
        results = pipe.process_batch([a, b, c])
        assert sorted(shapes) == [(1, 3, 96, 64), (2, 3, 64, 64)]        # a and c padded alike: one call
        assert [r.panoptic.shape for r in results] == [(40, 60), (70, 50), (64, 64)]
        trackers = [EmbeddingTracker(TrackerConfig(min_hits=1)), None]
        out = pipe.process_batch([a, a], trackers=trackers)
        assert (out[1].track_ids == -1).all()
        with pytest.raises(ValueError, match="2 trackers for 1 images"):
            pipe.process_batch([a], trackers=trackers)
    finally:
        pipe.close()
