"""``hle tune-tracker`` (hle_core.tracking.tune): candidates scored on cached detections, exactly as bag-eval scores.

Oracles: hand-built frames whose identity swaps are known (two look-alike cars far apart, one hidden for a
frame), and ``hle bag-eval`` itself on a tiny synthetic bag with the committed model (same ID switches, AQ, STQ).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hle_core.config import ConfigError, street_class_table
from hle_core.tracking import Detections, TrackerConfig, load_tracker_config
from hle_core.tracking.tune import (
    DEFAULT_GRID,
    CachedFrame,
    FrameCache,
    grid_candidates,
    parse_grid,
    rank_key,
    replay_tracker,
    score_tracks,
    tune_tracker,
)

CAR, ROAD = 26, 7
MODEL = Path(__file__).resolve().parents[2] / "models" / "hle_street.pt"
IMG, GT = "/camera/image_raw", "/camera/panoptic_gt"


# ---------------------------------------------------------------------------------------------------
# hand-built frames: two cars with identical embeddings, 80 px apart, moving 7 px per frame (boxes 6 px wide:
# consecutive boxes never overlap); car A is not detected at frame 4 and listed after B from then on
def _lookalike_cache(n_frames: int = 8, hidden: int = 4) -> FrameCache:
    u = np.eye(4)[0]
    frames = []
    for t in range(n_frames):
        gt = np.full((16, 200), ROAD, np.int32)
        pred = gt.copy()
        xs = {"A": 2 + 7 * t, "B": 82 + 7 * t}
        order = ["A", "B"] if t < hidden else ["B"] if t == hidden else ["B", "A"]
        for k, name in enumerate("AB"):
            gt[4:12, xs[name]:xs[name] + 6] = CAR * 1000 + k + 1      # ground-truth track ids 1 (A), 2 (B)
        seg_ids, boxes = [], []
        for j, name in enumerate(order):                              # the decoder's per-frame segment ids
            pred[4:12, xs[name]:xs[name] + 6] = CAR * 1000 + j
            seg_ids.append(CAR * 1000 + j)
            boxes.append([xs[name], 4, xs[name] + 6, 12])
        n = len(order)
        det = Detections(np.full(n, CAR), np.array(boxes, float), np.tile(u, (n, 1)), np.full(n, 0.9),
                         np.ones(n, bool), np.array(seg_ids))
        frames.append(CachedFrame(0, pred, det, np.full(n, CAR, np.int64), gt))
    return FrameCache(frames, street_class_table(), {}, 0.0)


def test_pure_embeddings_swap_lookalikes_the_spatial_gate_does_not():
    cache = _lookalike_cache()
    pure = TrackerConfig(max_cosine_distance=0.3, embedding_weight=1.0, max_center_distance=0.0,
                         center_distance_growth=0.0)
    gated = TrackerConfig(max_center_distance=1.5, center_distance_growth=1.5)   # 7 px = 1.17 boxes per frame
    ids_pure = replay_tracker(cache.frames, pure)
    # frame 4: B (alone) inherits A's id 1; frame 5: A comes back and takes B's id 2
    assert [i.tolist() for i in ids_pure[3:6]] == [[1, 2], [1], [1, 2]]
    assert [i.tolist() for i in replay_tracker(cache.frames, gated)[3:6]] == [[1, 2], [2], [2, 1]]
    assert score_tracks(cache.frames, ids_pure, cache.classes)["id_switches"] == 2
    result = tune_tracker(cache, [("box", TrackerConfig(use_embeddings=False)), ("pure", pure), ("gated", gated),
                                  ("never", TrackerConfig(min_hits=100))])
    rows = {r["name"]: r for r in result.rows}
    assert rows["pure"]["id_switches"] == 2 and rows["gated"]["id_switches"] == 0
    # boxes never overlap from frame to frame: the box baseline confirms no track (its AQ is that of one
    # untracked "car" tube, as for a tracker that never confirms) and so cannot switch
    assert rows["box"]["confirmed_tracks"] == rows["never"]["confirmed_tracks"] == 0
    assert rows["box"]["id_switches"] == rows["never"]["id_switches"] == 0
    assert rows["box"]["AQ"] == rows["never"]["AQ"] and result.min_aq == rows["box"]["AQ"]
    assert rows["gated"]["AQ"] > rows["box"]["AQ"] and rows["gated"]["AQ"] > rows["pure"]["AQ"]
    assert result.best_row["name"] == "gated" and result.best == gated and rows["gated"]["eligible"]


def test_objective_fewest_switches_above_the_aq_floor_then_aq():
    rows = [{"candidate": 0, "name": "box", "id_switches": 3, "AQ": 0.30, "STQ": 0.5},
            {"candidate": 1, "name": "idle", "id_switches": 0, "AQ": 0.01, "STQ": 0.1},    # associates nothing
            {"candidate": 2, "name": "a", "id_switches": 1, "AQ": 0.31, "STQ": 0.5},
            {"candidate": 3, "name": "b", "id_switches": 1, "AQ": 0.35, "STQ": 0.4},
            {"candidate": 4, "name": "c", "id_switches": 1, "AQ": 0.35, "STQ": 0.6}]
    ranked = lambda floor: [r["name"] for r in sorted(rows, key=lambda r: rank_key(r, floor))]  # noqa: E731
    assert ranked(0.30) == ["c", "b", "a", "box", "idle"]
    assert ranked(None) == ["idle", "c", "b", "a", "box"]


def test_tune_tracker_memoises_identical_assignments_and_checks_inputs():
    cache = _lookalike_cache()
    result = tune_tracker(cache, [("box", TrackerConfig(use_embeddings=False)),
                                  ("a", TrackerConfig(max_center_distance=1.5, center_distance_growth=1.5)),
                                  ("b", TrackerConfig(max_center_distance=1.5, center_distance_growth=2.0))],
                          min_aq=None)
    a, b = result.row("a"), result.row("b")
    assert {k: a[k] for k in ("id_switches", "AQ", "STQ")} == {k: b[k] for k in ("id_switches", "AQ", "STQ")}
    assert result.min_aq is None and result.best_row["name"] == "a"            # first of the tie
    with pytest.raises(ValueError, match="candidate named 'box'"):
        tune_tracker(cache, [("a", TrackerConfig())])
    no_gt = FrameCache([CachedFrame(f.sequence, f.panoptic, f.detections, f.category_ids, None)
                        for f in cache.frames], cache.classes, {}, 0.0)
    with pytest.raises(ValueError, match="no frame of the bag has ground truth"):
        tune_tracker(no_gt, [("box", TrackerConfig(use_embeddings=False))])


def test_sequences_reset_the_tracker():
    cache = _lookalike_cache(n_frames=4)
    second = [CachedFrame(1, f.panoptic, f.detections, f.category_ids, f.gt) for f in cache.frames]
    ids = replay_tracker(cache.frames + second,
                         TrackerConfig(min_hits=1, max_center_distance=0.0, center_distance_growth=0.0))
    assert [i.tolist() for i in ids] == [[1, 2]] * 8                          # ids restart at 1 per sequence


def test_grid_parsing_and_candidates():
    grid = parse_grid(["min_hits=1,2", "cascade=", "max_center_distance=0,1.5"])
    assert grid["min_hits"] == [1, 2] and "cascade" not in grid and grid["max_center_distance"] == [0, 1.5]
    assert parse_grid([]) == DEFAULT_GRID
    with pytest.raises(ConfigError, match="NAME=V1,V2"):
        parse_grid(["max_ages=3"])
    with pytest.raises(ConfigError, match="NAME=V1,V2"):
        parse_grid(["min_hits"])
    gate = TrackerConfig().max_center_distance                        # one grid point is the default config
    cands, skipped = grid_candidates({"max_center_distance": [0, gate], "center_distance_growth": [0.0, 0.5],
                                      "embedding_weight": [1, 0.5]})
    names = [n for n, _ in cands]
    assert names[:2] == ["box", "base"] and cands[0][1] == TrackerConfig(use_embeddings=False)
    assert cands[1][1] == TrackerConfig()
    # growth without a gate is invalid (2 skipped); (gate, 0.5, 0.5) equals the base (dropped); ints became floats
    assert len(skipped) == 2 and len(cands) == 2 + 5
    assert all(isinstance(c.max_center_distance, float) and isinstance(c.embedding_weight, float) for _, c in cands)
    assert len({repr(c) for _, c in cands}) == len(cands)
    assert names[2:] == [f"grid-{i}" for i in range(2, 7)]


# ---------------------------------------------------------------------------------------------------
# the command on a tiny bag, against hle bag-eval
@pytest.fixture(scope="module")
def tiny_bag(synthetic_bag) -> Path:
    return synthetic_bag(num_clips=1, frames=10, size=(128, 256), seed=5)


@pytest.mark.slow  # ~25 s on the 2-core machine
def test_tune_tracker_numbers_equal_bag_eval(tiny_bag: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    from hle_core.bags import evaluate_bag
    from hle_core.cli import main
    from hle_core.pipeline import Pipeline

    calls = []
    process = Pipeline.process
    monkeypatch.setattr(Pipeline, "process", lambda self, *a, **k: calls.append(1) or process(self, *a, **k))
    out = tmp_path / "tracker.yaml"
    common = ["--bag", str(tiny_bag), "--image-topic", IMG, "--gt-topic", GT, "--model", str(MODEL),
              "--backend", "torch", "--device", "cpu", "--no-progress"]
    rc = main(["tune-tracker", *common, "--out", str(out), "--grid", "max_cosine_distance=",
               "--grid", "embedding_weight=1.0", "--grid", "center_distance_growth=", "--grid", "cascade=",
               "--grid", "max_birth_overlap=", "--grid",
               f"max_center_distance=0,{TrackerConfig().max_center_distance}"])
    assert rc == 0, capsys.readouterr().err
    assert len(calls) == 10                                                   # the network ran once per frame
    table = json.loads(out.with_suffix(".candidates.json").read_text())
    rows = {r["name"]: r for r in table["candidates"]}
    assert list(rows) == ["box", "base", "grid-2"] and rows["grid-2"]["changes"] == {"embedding_weight": 1.0}
    assert table["frames_scored"] == 10 and table["best"]["name"] in rows
    assert "| rank |" in out.with_suffix(".candidates.md").read_text()
    best = load_tracker_config(out)
    assert best == TrackerConfig(**table["best"]["config"])

    # every candidate: the same numbers from hle bag-eval (its CLI with --tracker-config for the best one)
    assert main(["bag-eval", *common, "--tracker-config", str(out), "--out", str(tmp_path / "eval"),
                 "--no-plots", "--overlays", "0"]) == 0
    got = {table["best"]["name"]: json.loads((tmp_path / "eval" / "metrics.json").read_text())}
    for name in rows.keys() - got.keys():
        got[name] = evaluate_bag(tiny_bag, IMG, gt_topic=GT, model=MODEL, backend="torch", device="cpu",
                                 tracker=TrackerConfig(**rows[name]["config"]), num_overlays=0, plots=False,
                                 progress=False)
    for name, m in got.items():
        assert m["tracker"] == rows[name]["config"]
        assert (m["id_switches"], m["stq"]["AQ"], m["stq"]["STQ"]) == \
            (rows[name]["id_switches"], rows[name]["AQ"], rows[name]["STQ"]), name
    # a meaningful comparison: the trackers confirmed tracks and do not all score alike
    assert all(r["confirmed_tracks"] > 0 and r["AQ"] > 0 for r in rows.values())
    assert len({(r["id_switches"], r["AQ"]) for r in rows.values()}) > 1


def test_tune_tracker_cli_errors(tiny_bag: Path, tmp_path: Path, capsys) -> None:
    from hle_core.cli import main

    base = ["tune-tracker", "--image-topic", IMG, "--gt-topic", GT, "--out", str(tmp_path / "t.yaml")]
    assert main(base + ["--bag", str(tmp_path / "none.mcap"), "--model", str(MODEL)]) == 2
    assert "bag not found" in capsys.readouterr().err
    assert main(base + ["--bag", str(tiny_bag), "--model", str(MODEL), "--grid", "bogus=1"]) == 2
    assert "--grid expects" in capsys.readouterr().err
    assert main(base + ["--bag", str(tiny_bag), "--model", str(MODEL), "--min-aq", "high"]) == 2
    assert "--min-aq" in capsys.readouterr().err
    assert not (tmp_path / "t.yaml").exists()
    bag_eval = ["bag-eval", "--bag", str(tiny_bag), "--image-topic", IMG, "--model", str(MODEL), "--out",
                str(tmp_path / "ev")]
    assert main(bag_eval + ["--tracker-config", str(tmp_path / "missing.yaml")]) == 2
    assert "tracker config not found" in capsys.readouterr().err
    (tmp_path / "bad.yaml").write_text("tracker:\n  max_center_distance: -1\n")
    assert main(bag_eval + ["--tracker-config", str(tmp_path / "bad.yaml")]) == 2
    assert "max_center_distance must be a finite number" in capsys.readouterr().err
    assert main(bag_eval + ["--no-tracking", "--tracker-config", str(tmp_path / "bad.yaml")]) == 2
    assert "--no-tracking excludes" in capsys.readouterr().err
