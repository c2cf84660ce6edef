"""Tests for hle_core.tracking: association by mean embeddings (paper §4.5) on synthetic sequences."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from hle_core.config import ConfigError
from hle_core.tracking import (
    UNTRACKED,
    Detections,
    EmbeddingTracker,
    TrackerConfig,
    assign,
    box_coverage_matrix,
    box_iou_matrix,
    cascade_assign,
    center_distance_matrix,
    cosine_distance_matrix,
    detections_from_segments,
    load_tracker_config,
)

PERSON, CAR = 24, 26
D = 8


# ---------------------------------------------------------------------------------------------------
# synthetic scenes
#: The association before the spatial gate became the default (pure embedding cost, no centre gate, no cascade, no
#: fragment suppression): the tests of the life cycle and of each gate on its own construct it explicitly, so they
#: do not depend on tuned defaults.
UNGATED = {"max_cosine_distance": 0.3, "embedding_weight": 1.0, "max_center_distance": 0.0,
           "center_distance_growth": 0.0, "cascade": False, "max_birth_overlap": 1.0}


def ungated(**overrides) -> TrackerConfig:
    return TrackerConfig(**{**UNGATED, **overrides})


def _directions(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` unit vectors in R^D that are pairwise far apart (d_cos > 0.6)."""
    while True:
        v = rng.normal(size=(n, D))
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        g = v @ v.T
        if n == 1 or (1.0 - g[~np.eye(n, dtype=bool)]).min() > 0.6:
            return v


def _noisy(direction: np.ndarray, rng: np.random.Generator, noise: float = 0.05) -> np.ndarray:
    e = direction + noise * rng.normal(size=direction.shape)
    return e / np.linalg.norm(e)


def _frame(objs: list[tuple[int, list[float], np.ndarray]], score: float = 0.9) -> Detections:
    """``objs``: (class id, box, embedding) per thing segment."""
    if not objs:
        return Detections.empty(D)
    cls, boxes, emb = zip(*objs)
    n = len(objs)
    return Detections(np.array(cls), np.array(boxes, float), np.stack(emb), np.full(n, score), np.ones(n, bool))


def _ids_per_object(tracker: EmbeddingTracker, frames: list[Detections], owners: list[list[int]]) -> dict:
    """Run the tracker; map each ground-truth object to the list of ids it received (-1 included)."""
    seen: dict[int, list[int]] = {}
    for det, who in zip(frames, owners):
        ids = tracker.update(det)
        assert ids.dtype == np.int64 and ids.shape == (len(det),)
        for obj, tid in zip(who, ids.tolist()):
            seen.setdefault(obj, []).append(tid)
    return seen


def _crossing_sequence(rng: np.random.Generator, n_frames: int = 10):
    """Two persons walking towards each other along the same line; their boxes swap places between frames
    4 and 5 (A: x = 2 + 4t, B: x = 38 - 4t, width 20), so at frame 5 each one's new box coincides exactly with
    where the *other* was at frame 4."""
    a, b = _directions(2, rng)
    frames, owners = [], []
    for t in range(n_frames):
        xa, xb = 2 + 4 * t, 38 - 4 * t
        frames.append(_frame([(PERSON, [xa, 10, xa + 20, 50], _noisy(a, rng)),
                              (PERSON, [xb, 10, xb + 20, 50], _noisy(b, rng))]))
        owners.append([0, 1])
    return frames, owners


# ---------------------------------------------------------------------------------------------------
# association primitives against brute force
def _raster_iou(b1, b2) -> float:
    """IoU by counting unit cells of integer boxes on a grid (independent of the interval formula)."""
    grid = np.zeros((2, 40, 40), bool)
    for k, (x0, y0, x1, y1) in enumerate((b1, b2)):
        grid[k, y0:y1, x0:x1] = True
    union = (grid[0] | grid[1]).sum()
    return float((grid[0] & grid[1]).sum() / union) if union else 0.0


def test_box_iou_matrix_matches_rasterised_boxes():
    rng = np.random.default_rng(0)
    lo = rng.integers(0, 30, size=(12, 2))
    hi = lo + rng.integers(0, 10, size=(12, 2))                             # includes empty boxes
    boxes = np.concatenate([lo, hi], 1)
    got = box_iou_matrix(boxes[:5], boxes[5:])
    want = np.array([[_raster_iou(p, q) for q in boxes[5:]] for p in boxes[:5]])
    np.testing.assert_allclose(got, want, atol=1e-12)
    assert box_iou_matrix(np.zeros((0, 4)), boxes).shape == (0, 12)


def test_cosine_distance_matrix_matches_pairwise_loop():
    rng = np.random.default_rng(1)
    a, b = _directions(3, rng), _directions(4, rng)
    want = np.array([[1.0 - float(np.dot(p, q)) for q in b] for p in a])
    np.testing.assert_allclose(cosine_distance_matrix(a, b), want, atol=1e-12)


def test_box_coverage_matrix_matches_rasterised_boxes():
    rng = np.random.default_rng(12)
    lo = rng.integers(0, 30, size=(10, 2))
    boxes = np.concatenate([lo, lo + rng.integers(0, 10, size=(10, 2))], 1)   # includes empty boxes
    grid = np.zeros((10, 40, 40), bool)
    for k, (x0, y0, x1, y1) in enumerate(boxes):
        grid[k, y0:y1, x0:x1] = True
    area = grid.sum((1, 2))
    inter = np.einsum("ahw,bhw->ab", grid.astype(int), grid.astype(int))
    want = np.divide(inter, area[:, None], out=np.zeros(inter.shape), where=area[:, None] > 0)
    np.testing.assert_allclose(box_coverage_matrix(boxes, boxes), want, atol=1e-12)


def test_center_distance_matrix_matches_pairwise_loop():
    rng = np.random.default_rng(13)
    lo = rng.uniform(0, 100, size=(7, 2))
    boxes = np.concatenate([lo, lo + rng.uniform(0.5, 30, size=(7, 2))], 1)
    a, b = boxes[:3], boxes[3:]

    def dist(p, q):
        w, h = (p[2] - p[0] + q[2] - q[0]) / 2, (p[3] - p[1] + q[3] - q[1]) / 2
        dx, dy = (q[0] + q[2] - p[0] - p[2]) / 2, (q[1] + q[3] - p[1] - p[3]) / 2
        return float(np.hypot(dx / max(w, 1.0), dy / max(h, 1.0)))

    want = np.array([[dist(p, q) for q in b] for p in a])
    np.testing.assert_allclose(center_distance_matrix(a, b), want, atol=1e-12)
    # one box width to the right = distance 1; a point box against a point box: floored at 1 pixel
    assert center_distance_matrix([[0, 0, 10, 20]], [[10, 0, 20, 20]])[0, 0] == pytest.approx(1.0)
    assert center_distance_matrix([[5, 5, 5, 5]], [[8, 9, 8, 9]])[0, 0] == pytest.approx(5.0)


def _brute_force_assignment(cost: np.ndarray) -> tuple[int, float]:
    """Best (most pairs, then least cost) matching over finite entries by enumerating all injections."""
    t, s = cost.shape
    best = (0, 0.0)
    for k in range(1, min(t, s) + 1):
        for rows in itertools.combinations(range(t), k):
            for cols in itertools.permutations(range(s), k):
                c = cost[list(rows), list(cols)]
                if np.all(np.isfinite(c)) and (k > best[0] or c.sum() < best[1] - 1e-12):
                    best = (k, float(c.sum()))
    return best


@pytest.mark.parametrize("seed", range(30))
def test_assign_matches_brute_force_with_gated_pairs(seed):
    rng = np.random.default_rng(seed)
    shape = tuple(rng.integers(0, 5, size=2))
    cost = rng.uniform(0, 2, size=shape)
    cost[rng.uniform(size=shape) < 0.5] = np.inf                          # gated pairs, incl. all-inf rows/cols
    rows, cols = assign(cost)
    n, total = _brute_force_assignment(cost)
    assert len(rows) == len(cols) == n
    assert len(set(rows.tolist())) == n and len(set(cols.tolist())) == n
    assert np.all(np.isfinite(cost[rows, cols]))
    assert cost[rows, cols].sum() == pytest.approx(total, abs=1e-9)


def test_assign_prefers_more_pairs_over_cheaper_fewer():
    # one cheap pair (0,0) blocks two; the best matching takes both expensive ones
    cost = np.array([[0.0, 1.5], [1.5, np.inf]])
    rows, cols = assign(cost)
    assert sorted(zip(rows.tolist(), cols.tolist())) == [(0, 1), (1, 0)]


def test_assign_rejects_nan():
    with pytest.raises(ValueError, match="NaN"):
        assign(np.array([[np.nan]]))
    with pytest.raises(ValueError, match="2-D"):
        assign(np.zeros(3))


def test_cascade_assign_serves_lower_priority_rows_first():
    # row 1 (a tentative track) is cheaper for column 0, but row 0 (priority 0) is served first
    cost = np.array([[0.2, np.inf], [0.0, 0.1]])
    assert [a.tolist() for a in assign(cost)] == [[0, 1], [0, 1]]            # both match, total 0.3
    cost = np.array([[0.2], [0.0]])
    assert [a.tolist() for a in assign(cost)] == [[1], [0]]                  # one column: the cheaper row
    assert [a.tolist() for a in cascade_assign(cost, np.array([0, 1]))] == [[0], [0]]
    assert [a.tolist() for a in cascade_assign(cost, np.array([1, 0]))] == [[1], [0]]


@pytest.mark.parametrize("seed", range(10))
def test_cascade_assign_with_one_priority_is_assign(seed):
    rng = np.random.default_rng(100 + seed)
    cost = rng.uniform(0, 2, size=(4, 5))
    cost[rng.uniform(size=cost.shape) < 0.4] = np.inf
    got = cascade_assign(cost, np.zeros(4, int))
    want = assign(cost)
    assert got[0].tolist() == want[0].tolist() and got[1].tolist() == want[1].tolist()
    staged = cascade_assign(cost, rng.integers(0, 3, size=4))               # any priorities: a valid matching
    assert len(set(staged[0].tolist())) == len(staged[0]) and len(set(staged[1].tolist())) == len(staged[1])
    assert np.all(np.isfinite(cost[staged]))
    with pytest.raises(ValueError, match="priority"):
        cascade_assign(cost, np.zeros(3, int))


# ---------------------------------------------------------------------------------------------------
# tracker behaviour
def test_crossing_objects_keep_ids_with_embeddings_and_swap_with_box_only():
    frames, owners = _crossing_sequence(np.random.default_rng(2))
    emb = _ids_per_object(EmbeddingTracker(ungated(min_hits=1)), frames, owners)
    assert len(set(emb[0])) == 1 and len(set(emb[1])) == 1 and emb[0][0] != emb[1][0]

    box = _ids_per_object(EmbeddingTracker(TrackerConfig(use_embeddings=False, min_hits=1)), frames, owners)
    # the box-only baseline follows the boxes, which swap owners between frames 4 and 5
    assert len(set(box[0][:5])) == 1 and len(set(box[1][:5])) == 1       # fine until the boxes swap
    assert len(set(box[0])) > 1 and len(set(box[1])) > 1
    assert box[0][5] == box[1][4] and box[1][5] == box[0][4]


def test_crossing_with_mixed_cost_still_follows_embeddings():
    frames, owners = _crossing_sequence(np.random.default_rng(3))
    cfg = ungated(min_hits=1, embedding_weight=0.5, iou_gate=0.1)
    ids = _ids_per_object(EmbeddingTracker(cfg), frames, owners)
    assert len(set(ids[0])) == 1 and len(set(ids[1])) == 1


@pytest.mark.parametrize("gap, same_id", [(1, True), (3, True), (4, False), (6, False)])
def test_reentry_within_max_age_keeps_id_beyond_gets_new(gap, same_id):
    rng = np.random.default_rng(4)
    a, other = _directions(2, rng)
    cfg = ungated(min_hits=2, max_age=3)
    tracker = EmbeddingTracker(cfg)
    ids = []
    for t in range(4):                                                    # present, then occluded for `gap` frames
        ids.append(tracker.update(_frame([(CAR, [10 + t, 10, 40 + t, 30], _noisy(a, rng))]))[0])
    for _ in range(gap):
        assert tracker.update(_frame([])).shape == (0,)
    back = [tracker.update(_frame([(CAR, [200, 60, 230, 80], _noisy(a, rng))]))[0] for _ in range(3)]
    assert ids == [UNTRACKED, 1, 1, 1]
    if same_id:
        assert back == [1, 1, 1]                                          # re-identified at once, far away
    else:
        assert back == [UNTRACKED, 2, 2]                                  # a new, tentative-then-confirmed track


def test_birth_hysteresis_one_frame_false_positive_never_gets_an_id():
    rng = np.random.default_rng(5)
    a, fp, c = _directions(3, rng)
    tracker = EmbeddingTracker(ungated(min_hits=3))
    out = []
    for t in range(8):
        objs = [(PERSON, [5, 5, 25, 45], _noisy(a, rng))]
        if t == 2:
            objs.append((PERSON, [60, 5, 80, 45], _noisy(fp, rng)))         # flicker: one frame only
        if t >= 4:
            objs.append((CAR, [100, 5, 140, 30], _noisy(c, rng)))
        out.append(tracker.update(_frame(objs)).tolist())
    assert [o[0] for o in out] == [-1, -1, 1, 1, 1, 1, 1, 1]               # confirmed at its 3rd frame
    assert out[2][1] == UNTRACKED
    assert [o[-1] for o in out[4:]] == [-1, -1, 2, 2]                      # the false positive used no id
    assert all(t.track_id in (1, 2) for t in tracker.tracks)


def test_class_gating():
    rng = np.random.default_rng(6)
    (a,) = _directions(1, rng)
    box = [10, 10, 30, 50]
    seq = [_frame([(PERSON, box, a)]), _frame([(33, box, a)])]             # same look, class changes
    gated = EmbeddingTracker(ungated(min_hits=1))
    assert [int(gated.update(f)[0]) for f in seq] == [1, 2]
    free = EmbeddingTracker(ungated(min_hits=1, class_gating=False))
    assert [int(free.update(f)[0]) for f in seq] == [1, 1]


def test_cosine_gate_blocks_distant_embeddings():
    rng = np.random.default_rng(7)
    a, b = _directions(2, rng)
    tracker = EmbeddingTracker(ungated(min_hits=1, max_cosine_distance=0.3))
    box = [10, 10, 30, 50]
    assert tracker.update(_frame([(PERSON, box, a)]))[0] == 1
    assert tracker.update(_frame([(PERSON, box, b)]))[0] == 2              # same box, other identity


def test_embedding_weight_trades_embedding_against_box_cost():
    # both detections pass every gate; the closer embedding sits in the worse box
    u, v = np.eye(D)[0], np.eye(D)[1]
    near = np.cos(0.1) * u + np.sin(0.1) * v                              # d_cos = 1 - cos 0.1 ≈ 0.005
    far = np.cos(0.6) * u + np.sin(0.6) * v                               # d_cos = 1 - cos 0.6 ≈ 0.175
    second = _frame([(CAR, [0, 0, 20, 20], far), (CAR, [10, 0, 30, 20], near)])  # IoUs with track: 1, 1/3
    for w, winner in ((1.0, 1), (0.0, 0), (0.9, 1), (0.5, 0)):
        tracker = EmbeddingTracker(ungated(min_hits=1, embedding_weight=w))
        tracker.update(_frame([(CAR, [0, 0, 20, 20], u)]))
        ids = tracker.update(second)
        assert ids[winner] == 1 and ids[1 - winner] == 2, (w, ids)


def test_ema_mean_follows_slow_appearance_drift():
    # the embedding rotates 0.1 rad per frame, 2 rad in all: far beyond the gate from the first frame
    # (d_cos = 1 - cos 2 = 1.42), but each frame is close to the running mean
    u, v = np.eye(D)[0], np.eye(D)[1]
    tracker = EmbeddingTracker(ungated(min_hits=1, momentum=0.5, max_cosine_distance=0.3))
    ids = [int(tracker.update(_frame([(CAR, [0, 0, 10, 10], np.cos(0.1 * t) * u + np.sin(0.1 * t) * v)]))[0])
           for t in range(21)]
    assert ids == [1] * 21
    first_to_last = 1.0 - np.cos(2.0)
    assert first_to_last > 0.3


def _lookalikes_far_apart(occluded_at: int = 4, n_frames: int = 8, step: float = 3.0) -> tuple[list, list]:
    """Two cars with *identical* embeddings (what a weak HLE model gives same-class objects: position lives in
    eq. 8's spatial kernel, not in the embedding), 200 px apart, both moving ``step`` px per frame; A is not
    detected at ``occluded_at`` and B is listed before A from then on."""
    (u,) = _directions(1, np.random.default_rng(20))
    frames, owners = [], []
    for t in range(n_frames):
        xa, xb = 10 + step * t, 210 + step * t
        a, b = (CAR, [xa, 20, xa + 30, 40], u), (CAR, [xb, 20, xb + 30, 40], u)
        objs, who = ([a, b], [0, 1]) if t < occluded_at else ([b], [1]) if t == occluded_at else ([b, a], [1, 0])
        frames.append(_frame(objs))
        owners.append(who)
    return frames, owners


def test_identical_lookalikes_swap_without_spatial_gate_and_keep_ids_with_it():
    frames, owners = _lookalikes_far_apart()
    pure = _ids_per_object(EmbeddingTracker(ungated(min_hits=1)), frames, owners)
    # the pure-embedding cost cannot tell the two apart: B inherits A's id while A is hidden, A then takes B's
    assert pure[0][:4] == [1] * 4 and pure[1][:4] == [2] * 4
    assert pure[1][4:] == [1] * 4 and pure[0][4:] == [2] * 3
    gated = _ids_per_object(EmbeddingTracker(ungated(min_hits=1, max_center_distance=1.0)), frames, owners)
    assert gated == {0: [1] * 7, 1: [2] * 8}                              # A re-identified after the gap


def test_center_gate_grows_for_lost_tracks():
    # A moves 15 px (half a box) per frame and is hidden for 2 frames: it reappears 1.5 box widths from its last box
    (u,) = _directions(1, np.random.default_rng(21))
    boxes = [[10 + 15 * t, 20, 40 + 15 * t, 40] for t in range(6)]
    seq = [_frame([(CAR, boxes[t], u)]) if t not in (2, 3) else _frame([]) for t in range(6)]

    def ids(**kw):
        tracker = EmbeddingTracker(ungated(min_hits=1, **kw))
        return [tracker.update(f).tolist() for f in seq]

    assert ids(max_center_distance=1.0) == [[1], [1], [], [], [2], [2]]      # 1.5 > 1: a new id
    assert ids(max_center_distance=1.0, center_distance_growth=0.25) == [[1], [1], [], [], [1], [1]]  # 1 + 2·0.25
    assert ids(max_center_distance=1.0, center_distance_growth=0.2) == [[1], [1], [], [], [2], [2]]   # 1.4 < 1.5


def test_cascade_keeps_the_confirmed_track_against_a_fresh_fragment():
    u, v = np.eye(D)[0], np.eye(D)[1]
    w = np.cos(0.3) * u + np.sin(0.3) * v                                 # d_cos(u, w) = 0.045, inside the gate
    box, part = [10, 10, 50, 40], [30, 10, 50, 40]
    seq = [_frame([(CAR, box, u)]), _frame([(CAR, box, u)]),
           _frame([(CAR, box, u), (CAR, part, w)]),                       # a fragment starts a tentative track
           _frame([(CAR, box, w)]), _frame([(CAR, box, w)])]             # the car now looks like the fragment

    def ids(**kw):
        tracker = EmbeddingTracker(ungated(min_hits=2, **kw))
        return [tracker.update(f).tolist() for f in seq]

    assert ids() == [[-1], [1], [1, -1], [2], [2]]                         # the fragment's track took over: new id
    assert ids(cascade=True) == [[-1], [1], [1, -1], [1], [1]]


def test_max_birth_overlap_suppresses_fragments_not_neighbours():
    rng = np.random.default_rng(22)
    (u,) = _directions(1, rng)
    car, inner, beside = [10, 10, 50, 40], [30, 15, 48, 38], [60, 10, 100, 40]

    def ids(objs_late, **kw):
        tracker = EmbeddingTracker(ungated(min_hits=1, **kw))
        tracker.update(_frame([(CAR, car, u)]))
        return [tracker.update(_frame(objs_late)).tolist() for _ in range(3)]

    fragment = [(CAR, car, u), (CAR, inner, _noisy(u, rng, 0.01))]
    assert ids(fragment) == [[1, 2], [1, 2], [1, 2]]                       # the fragment becomes an object
    assert ids(fragment, max_birth_overlap=0.7) == [[1, -1], [1, -1], [1, -1]]
    person_inside = [(CAR, car, u), (PERSON, inner, u)]                     # another class is never a fragment
    assert ids(person_inside, max_birth_overlap=0.7) == [[1, 2], [1, 2], [1, 2]]
    neighbour = [(CAR, car, u), (CAR, beside, u)]
    assert ids(neighbour, max_birth_overlap=0.7) == [[1, 2], [1, 2], [1, 2]]


def test_load_tracker_config(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("# written by hand\ntracker:\n  max_center_distance: 1.5\n  cascade: true\n")
    assert load_tracker_config(path) == TrackerConfig(max_center_distance=1.5, cascade=True)
    path.write_text("min_hits: 3\n")                                       # a bare section
    assert load_tracker_config(path) == TrackerConfig(min_hits=3)
    path.write_text("tracker:\n  max_center_distanse: 1.5\n")
    with pytest.raises(ConfigError, match=r"t\.yaml: unknown tracker keys \['max_center_distanse'\]"):
        load_tracker_config(path)
    path.write_text("- 1\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_tracker_config(path)
    with pytest.raises(FileNotFoundError):
        load_tracker_config(tmp_path / "missing.yaml")


def test_stuff_is_never_tracked_and_empty_frames():
    rng = np.random.default_rng(8)
    (a,) = _directions(1, rng)
    det = Detections(np.array([7, PERSON]), np.array([[0, 0, 100, 20], [10, 10, 30, 50]], float),
                     np.stack([a, a]), np.array([1.0, 1.0]), np.array([False, True]))
    tracker = EmbeddingTracker(ungated(min_hits=1))
    assert tracker.update(det).tolist() == [-1, 1]
    assert tracker.update(det).tolist() == [-1, 1]
    assert len(tracker.tracks) == 1
    empty = tracker.update({"class_ids": [], "boxes": [], "embeddings": [], "scores": [], "is_thing": []})
    assert empty.dtype == np.int64 and empty.shape == (0,)
    assert tracker.tracks[0].misses == 1 and tracker.tracks[0].hits == 0
    tracker.update(det)
    assert tracker.tracks[0].misses == 0 and tracker.tracks[0].hits == 1
    fresh = EmbeddingTracker()
    assert fresh.update(Detections.empty()).shape == (0,)                 # empty first frame


def test_min_birth_score():
    rng = np.random.default_rng(9)
    (a,) = _directions(1, rng)
    tracker = EmbeddingTracker(ungated(min_hits=1, min_birth_score=0.5))
    assert tracker.update(_frame([(PERSON, [0, 0, 9, 9], a)], score=0.3))[0] == UNTRACKED
    assert tracker.update(_frame([(PERSON, [0, 0, 9, 9], a)], score=0.8))[0] == 1
    assert tracker.update(_frame([(PERSON, [0, 0, 9, 9], a)], score=0.3))[0] == 1  # low score continues


def _random_sequence(seed: int, n_frames: int = 15):
    rng = np.random.default_rng(seed)
    dirs = _directions(4, rng)
    frames = []
    for t in range(n_frames):
        objs = []
        for k in range(4):
            if rng.uniform() < 0.8:
                x = 30 * k + 2 * t + rng.normal()
                objs.append((PERSON if k % 2 else CAR, [x, 10, x + 25, 50], _noisy(dirs[k], rng, 0.1)))
        if rng.uniform() < 0.3:
            objs.append((PERSON, [rng.uniform(0, 200), 60, 250, 90], _noisy(rng.normal(size=D), rng)))
        frames.append(_frame(objs))
    return frames


def test_deterministic_and_reset():
    frames = _random_sequence(10)
    tracker = EmbeddingTracker(ungated(min_hits=2, max_age=2))
    first = [tracker.update(f).tolist() for f in frames]
    tracker.reset()
    again = [tracker.update(f).tolist() for f in frames]
    other = [EmbeddingTracker(ungated(min_hits=2, max_age=2)).update(frames[0]).tolist()]
    assert first == again and other[0] == first[0]
    confirmed = [i for f in first for i in f if i != UNTRACKED]
    # ids appear in increasing order of first use, starting at 1, without gaps
    order = list(dict.fromkeys(confirmed))
    assert order == list(range(1, len(order) + 1))


def test_torch_tensors_and_segment_helper_match_numpy():
    frames = _random_sequence(11, n_frames=6)
    t1, t2 = EmbeddingTracker(), EmbeddingTracker()
    for f in frames:
        want = t1.update(f)
        seg_ids = 1000 * f.class_ids + np.arange(len(f))
        det = detections_from_segments(torch.from_numpy(seg_ids), torch.from_numpy(f.class_ids),
                                       torch.from_numpy(f.is_thing), torch.from_numpy(f.scores).float(),
                                       torch.from_numpy(f.boxes).float(),
                                       3.0 * torch.from_numpy(f.embeddings).float().requires_grad_())
        np.testing.assert_array_equal(det.segment_ids, seg_ids)
        np.testing.assert_array_equal(t2.update(det), want)


def test_bad_input_raises():
    tracker = EmbeddingTracker()
    with pytest.raises(ValueError, match=r"boxes must have shape \(1, 4\)"):
        Detections([PERSON], [[0, 0, 1]], [[1.0, 0.0]], [1.0], [True])
    with pytest.raises(ValueError, match="x1 >= x0"):
        Detections([PERSON], [[5, 0, 1, 1]], [[1.0, 0.0]], [1.0], [True])
    with pytest.raises(ValueError, match="scores"):
        Detections([PERSON], [[0, 0, 1, 1]], [[1.0, 0.0]], [1.0, 2.0], [True])
    with pytest.raises(TypeError, match="Detections or a mapping"):
        tracker.update([1, 2, 3])
    with pytest.raises(ValueError, match="unknown detection fields"):
        tracker.update({"labels": []})
    tracker.update(Detections([PERSON], [[0, 0, 1, 1]], [[1.0, 0.0]], [1.0], [True]))
    with pytest.raises(ValueError, match="embedding dimension changed from 2 to 3"):
        tracker.update(Detections([PERSON], [[0, 0, 1, 1]], [[1.0, 0.0, 0.0]], [1.0], [True]))
    with pytest.raises(ConfigError, match="max_cosine_distance"):
        EmbeddingTracker(TrackerConfig(max_cosine_distance=3.0))
    with pytest.raises(ConfigError, match="min_hits"):
        TrackerConfig.from_dict({"min_hits": 0})
    with pytest.raises(ConfigError, match="unknown tracker keys"):
        TrackerConfig.from_dict({"max_ages": 3})


@pytest.mark.parametrize("changes, message", [
    ({"max_center_distance": -1.0}, "max_center_distance must be a finite number >= 0"),
    ({"max_center_distance": float("inf")}, "max_center_distance must be a finite number >= 0"),
    ({"max_center_distance": 1.0, "center_distance_growth": -0.5}, "center_distance_growth must be a finite"),
    ({"center_distance_growth": 0.5, "max_center_distance": 0.0}, "needs the centre gate"),
    ({"max_birth_overlap": 0.0}, r"max_birth_overlap must lie in \(0, 1\]"),
    ({"max_birth_overlap": 1.5}, r"max_birth_overlap must lie in \(0, 1\]"),
    ({"cascade": "yes"}, "cascade must be true or false"),
])
def test_new_options_are_validated(changes, message):
    with pytest.raises(ConfigError, match=message):
        TrackerConfig.from_dict(changes)
