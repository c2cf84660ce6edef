"""The pre-rendered scene cache (hle_core.data.scene_cache): the same scenes as rendering on the fly, bit for bit;
a new key for anything the scenes depend on; a damaged cache rebuilt, never served."""
from __future__ import annotations

import json

import numpy as np
import pytest

from hle_core.config import street_class_table
from hle_core.data import SyntheticDataset
from hle_core.data.scene_cache import SceneCache, scene_cache_key
from hle_core.data.synthetic import SceneGenerator

SIZE = (64, 128)


def test_cache_equals_rendering(tmp_path):
    classes = street_class_table()
    cache = SceneCache.open(tmp_path, 5, 3, SIZE, classes, {"density": 0.5}, workers=2, progress=False)
    gen = SceneGenerator(SIZE, 3, classes, density=0.5)
    for i in range(5):
        image, pan = cache[i]
        f = gen.frame(i)
        np.testing.assert_array_equal(image, f.image)
        np.testing.assert_array_equal(pan, f.panoptic)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary build folder left behind"


def test_dataset_items_identical_with_and_without_cache(tmp_path):
    plain = SyntheticDataset(3, seed=11, size=SIZE)
    cached = SyntheticDataset(3, seed=11, size=SIZE, cache_dir=tmp_path)
    for i in range(3):
        a, b = plain[(i, 5)], cached[(i, 5)]
        for k in ("image", "semantic", "instance", "panoptic"):
            assert bool((a[k] == b[k]).all()), k


def test_key_depends_on_every_input():
    classes = street_class_table()
    base = scene_cache_key(4, 1, SIZE, classes, {})
    assert scene_cache_key(4, 1, SIZE, classes, {}) == base
    others = [scene_cache_key(5, 1, SIZE, classes, {}), scene_cache_key(4, 2, SIZE, classes, {}),
              scene_cache_key(4, 1, (64, 160), classes, {}), scene_cache_key(4, 1, SIZE, classes, {"min_area": 32})]
    assert len({base, *others}) == 5


def test_damaged_cache_is_rebuilt(tmp_path):
    classes = street_class_table()
    cache = SceneCache.open(tmp_path, 2, 0, SIZE, classes, workers=1, progress=False)
    expected = cache[1][1].copy()
    np.save(cache.folder / "panoptic.npy", np.zeros((1, *SIZE), np.int32))       # wrong shape: a damaged cache
    again = SceneCache.open(tmp_path, 2, 0, SIZE, classes, workers=1, progress=False)
    np.testing.assert_array_equal(again[1][1], expected)
    meta = json.loads((again.folder / "meta.json").read_text())
    (again.folder / "meta.json").write_text(json.dumps({**meta, "key": "stale"}))
    reopened = SceneCache.open(tmp_path, 2, 0, SIZE, classes, workers=1, progress=False)
    assert reopened._invalid_reason(meta["key"]) is None


def test_bad_generator_options_fail_before_rendering(tmp_path):
    with pytest.raises(ValueError, match="density"):
        SceneCache.open(tmp_path, 2, 0, SIZE, street_class_table(), {"density": -1}, progress=False)
    assert not any(tmp_path.iterdir())
