"""Tests for hle_core.evaluation.video (STQ, VPQ, ID switches) against brute-force mask oracles."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hle_core.config import street_class_table
from hle_core.evaluation.video import (
    STQAccumulator,
    VPQAccumulator,
    count_id_switches,
    relabel_with_tracks,
    video_panoptic_quality,
)
from hle_core.tracking import Detections, EmbeddingTracker, TrackerConfig

TABLE = street_class_table()
IDS, THING = TABLE.ids, TABLE.thing_mask                                  # things: 24 person, 26 car, 33 bicycle
ROAD, SKY, PERSON, CAR = 7, 23, 24, 26
DIV = 1000


# ---------------------------------------------------------------------------------------------------
# synthetic sequences
def _random_sequence(rng: np.random.Generator, n_frames: int = 5, h: int = 24, w: int = 32):
    """Ground truth with stuff, void, crowd and moving thing tracks; a prediction that is a noisy copy with
    eroded/dilated boxes, some class errors and occasional track id switches."""
    gts, preds = [], []
    objects = [(CAR, 26001), (CAR, 26002), (PERSON, 24001), (PERSON, 24003), (33, 33000)]
    pred_id = {26001: 26001, 26002: 26007, 24001: 24004, 24003: 24005, 33000: 33002}
    for t in range(n_frames):
        gt = np.where(np.arange(h)[:, None] < h // 3, SKY, ROAD) * np.ones((1, w), np.int64)
        gt[rng.uniform(size=(h, w)) < 0.03] = 0                            # void speckles
        gt[h - 4:, :5] = CAR                                               # a crowd region of cars
        pred = gt.copy()
        pred[h - 4:, :5] = rng.choice([CAR, 26009, ROAD])                  # crowd predicted somehow
        for k, (cls, gid) in enumerate(objects):
            if rng.uniform() < 0.15:
                continue                                                   # object absent this frame
            x = (4 + 6 * k + 2 * t) % (w - 6)
            y = 6 + (k % 3) * 5
            gt[y:y + 5, x:x + 6] = gid
            dx = rng.integers(-1, 2)
            if rng.uniform() < 0.1:
                pred_id[gid] = pred_id[gid] + 10                          # id switch from here on
            pid = pred_id[gid] if rng.uniform() > 0.1 else cls            # sometimes untracked
            pred[y:y + 5, max(x + dx, 0):x + dx + 6] = pid
        flip = rng.uniform(size=(h, w)) < 0.05
        pred[flip] = rng.choice([ROAD, SKY, 8, 0], size=flip.sum())       # semantic noise incl. void
        gts.append(gt)
        preds.append(pred)
    return gts, preds


# ---------------------------------------------------------------------------------------------------
# oracles: explicit masks and loops, written from the definitions
def _semantic(x):
    return np.where(x >= DIV, x // DIV, x)


def _naive_miou(gts, preds) -> float:
    g, p = _semantic(np.stack(gts)), _semantic(np.stack(preds))
    labelled = g != 0
    ious = []
    for c in IDS:
        inter = np.sum((g == c) & (p == c) & labelled)
        union = np.sum(((g == c) | (p == c)) & labelled)
        if union:
            ious.append(inter / union)
    return float(np.mean(ious))


def _naive_aq_terms(gts, preds) -> tuple[float, int]:
    """(Σ_g 1/|g| Σ_p TPA·IoU, number of ground-truth tubes) of one sequence."""
    g, p = np.stack(gts), np.stack(preds)
    thing_ids = [c for c, th in zip(IDS, THING) if th]
    crowd = np.isin(g, thing_ids)                                          # thing category id < 1000
    p_thing = np.isin(_semantic(p), thing_ids) & ~crowd
    total = 0.0
    gt_tubes = [v for v in np.unique(g) if v >= DIV]
    for gid in gt_tubes:
        gm = g == gid
        inner = 0.0
        for pid in np.unique(p[p_thing]):
            pm = (p == pid) & p_thing
            tpa = np.sum(gm & pm)
            if tpa:
                inner += tpa * tpa / np.sum(gm | pm)
        total += inner / gm.sum()
    return total, len(gt_tubes)


def _naive_pq_stats(gt: np.ndarray, pred: np.ndarray) -> dict[int, list[float]]:
    """panopticapi rules, segment by segment: {category: [tp, fp, fn, iou_sum]}."""
    stats = {c: [0, 0, 0, 0.0] for c in IDS}
    thing = dict(zip(IDS, THING))
    g_segs = [v for v in np.unique(gt) if v != 0]
    p_segs = [v for v in np.unique(pred) if v != 0]
    is_crowd = {v: thing[int(_semantic(v))] and v < DIV for v in g_segs}
    g_done, p_done = set(), set()
    for gv in g_segs:
        if is_crowd[gv]:
            continue
        for pv in p_segs:
            if _semantic(gv) != _semantic(pv):
                continue
            inter = np.sum((gt == gv) & (pred == pv))
            union = np.sum((gt == gv) | ((pred == pv) & (gt != 0)))
            if inter / union > 0.5:
                c = int(_semantic(gv))
                stats[c][0] += 1
                stats[c][3] += inter / union
                g_done.add(gv)
                p_done.add(pv)
    for gv in g_segs:
        if gv not in g_done and not is_crowd[gv]:
            stats[int(_semantic(gv))][2] += 1
    for pv in p_segs:
        if pv in p_done:
            continue
        c = int(_semantic(pv))
        ignored = np.sum((pred == pv) & ((gt == 0) | ((gt == c) & thing[c])))
        if ignored / np.sum(pred == pv) <= 0.5:
            stats[c][1] += 1
    return stats


def _naive_pq(stat_list) -> float:
    total = {c: np.sum([s[c] for s in stat_list], axis=0) for c in IDS}
    pqs = [s[3] / (s[0] + 0.5 * s[1] + 0.5 * s[2]) for s in total.values() if s[0] + s[1] + s[2] > 0]
    return float(np.mean(pqs))


# ---------------------------------------------------------------------------------------------------
def test_relabel_with_tracks():
    pan = np.array([[0, 7, 26000, 26001],
                    [24000, 24000, 26001, 7]])
    out = relabel_with_tracks(pan, segment_ids=[7, 26000, 26001, 24000], track_ids=[-1, 5, -1, 12])
    np.testing.assert_array_equal(out, [[0, 7, 26005, 26], [24012, 24012, 26, 7]])
    # explicit categories, torch inputs, and segments absent from the map
    out = relabel_with_tracks(torch.tensor([[3, 4]]), torch.tensor([3, 4, 9]), torch.tensor([1, -1, 2]),
                              category_ids=[24, 7, 26])
    np.testing.assert_array_equal(out, [[24001, 7]])
    with pytest.raises(ValueError, match=r"thing ids \[26002\] that are not in segment_ids"):
        relabel_with_tracks(np.array([[26002]]), [26001], [1])
    with pytest.raises(ValueError, match="track ids must lie in"):
        relabel_with_tracks(np.array([[26001]]), [26001], [1000])
    with pytest.raises(ValueError, match="unique"):
        relabel_with_tracks(np.array([[7]]), [7, 7], [-1, -1])
    with pytest.raises(TypeError, match="integer"):
        relabel_with_tracks(np.zeros((2, 2)), [7], [-1])


def test_stq_is_one_for_perfect_predictions_and_invariant_to_track_renaming():
    gts, _ = _random_sequence(np.random.default_rng(0))
    acc = STQAccumulator(IDS, THING)
    renamed = STQAccumulator.from_class_table(TABLE)
    for g in gts:
        acc.update(g, g)
        p = np.where(g >= DIV, g + 17, g)                                  # consistent other track ids
        renamed.update(torch.from_numpy(g), torch.from_numpy(p))
    for res in (acc.result(), renamed.result()):
        assert res["STQ"] == pytest.approx(1.0) and res["AQ"] == pytest.approx(1.0)
        assert res["SQ"] == pytest.approx(1.0)


def test_stq_hand_computed_id_switch_example():
    # Two 2x4 frames. Row 0: one ground-truth car track g (26001); row 1: road (7). |g| = 8 pixels.
    gt = np.array([[26001] * 4, [ROAD] * 4])
    # Frame 1: prediction exact, track 1.  Frame 2: the car gets track 2 (an id switch) and also spills onto
    # road pixel (1, 0).
    pred1 = np.array([[26001] * 4, [ROAD] * 4])
    pred2 = np.array([[26002] * 4, [26002, ROAD, ROAD, ROAD]])
    # AQ = 1/|G| Σ_g 1/|g| Σ_p TPA(p,g)·IoU(p,g), tubes over both frames:
    #   p1 = 26001: |p1| = 4, TPA = 4, IoU = 4 / (4 + 8 - 4) = 1/2
    #   p2 = 26002: |p2| = 5, TPA = 4, IoU = 4 / (5 + 8 - 4) = 4/9
    #   AQ = 1/8 · (4·1/2 + 4·4/9) = 1/8 · 34/9 = 17/36
    # SQ = mIoU: car: I = 8, U = 9 → 8/9;  road: I = 7, U = 8 → 7/8;  SQ = (8/9 + 7/8)/2 = 127/144
    acc = STQAccumulator(IDS, THING)
    acc.update(gt, pred1)
    acc.update(gt, pred2)
    res = acc.result()
    assert res["AQ"] == pytest.approx(17 / 36)
    assert res["SQ"] == pytest.approx(127 / 144)
    assert res["STQ"] == pytest.approx(np.sqrt(17 / 36 * 127 / 144))
    assert res["IoU_per_class"][CAR] == pytest.approx(8 / 9) and np.isnan(res["IoU_per_class"][SKY])
    # without the switch (same spill) AQ is higher: p = 26001 over both frames, |p| = 9, TPA = 8
    # AQ = 1/8 · 8 · 8/9 = 8/9
    same = STQAccumulator(IDS, THING)
    same.update(gt, pred1)
    same.update(gt, np.where(pred2 == 26002, 26001, pred2))
    assert same.result()["AQ"] == pytest.approx(8 / 9)
    assert same.result()["SQ"] == pytest.approx(res["SQ"])


@pytest.mark.parametrize("seed", range(4))
def test_stq_matches_naive_oracle_over_sequences(seed):
    rng = np.random.default_rng(seed)
    seqs = [_random_sequence(rng, n_frames=int(rng.integers(2, 6))) for _ in range(3)]
    acc = STQAccumulator(IDS, THING)
    for s, (gts, preds) in enumerate(seqs):
        for g, p in zip(gts, preds):
            acc.update(g, p, sequence_id=f"seq{s}")
    res = acc.result()
    terms = [_naive_aq_terms(g, p) for g, p in seqs]
    aq = sum(t for t, _ in terms) / sum(n for _, n in terms)
    sq = _naive_miou([f for g, _ in seqs for f in g], [f for _, p in seqs for f in p])
    assert res["AQ"] == pytest.approx(aq, rel=1e-12)
    assert res["SQ"] == pytest.approx(sq, rel=1e-12)
    assert res["STQ"] == pytest.approx(np.sqrt(aq * sq), rel=1e-12)
    for s, (gts, preds) in enumerate(seqs):
        per = res["per_sequence"][f"seq{s}"]
        t, n = terms[s]
        assert per["AQ"] == pytest.approx(t / n) and per["SQ"] == pytest.approx(_naive_miou(gts, preds))
        assert per["length"] == len(gts) and per["num_tubes"] == n


def test_stq_crowd_is_left_out_of_aq():
    gt = np.array([[26001, 26001, CAR, CAR]])                              # right half: car crowd
    clean = STQAccumulator(IDS, THING)
    clean.update(gt, np.array([[26001, 26001, ROAD, ROAD]]))
    over_crowd = STQAccumulator(IDS, THING)
    over_crowd.update(gt, np.array([[26001, 26001, 26001, 26001]]))        # tube spills onto crowd only
    assert clean.result()["AQ"] == pytest.approx(1.0)
    assert over_crowd.result()["AQ"] == pytest.approx(1.0)
    assert over_crowd.result()["SQ"] > clean.result()["SQ"]               # crowd still counts for SQ


def test_stq_bad_input():
    acc = STQAccumulator(IDS, THING)
    with pytest.raises(ValueError, match="before any update"):
        acc.result()
    with pytest.raises(ValueError, match=r"category ids \[99\]"):
        acc.update(np.array([[99]]), np.array([[7]]))
    with pytest.raises(ValueError, match="shapes differ"):
        acc.update(np.zeros((2, 2), np.int64), np.zeros((2, 3), np.int64))
    with pytest.raises(TypeError, match="integer"):
        acc.update(np.zeros((2, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="equal length"):
        STQAccumulator([7, 24], [False])


@pytest.mark.parametrize("seed", range(4))
def test_vpq_with_one_frame_windows_equals_image_pq(seed):
    gts, preds = _random_sequence(np.random.default_rng(10 + seed), n_frames=4)
    res = video_panoptic_quality(gts, preds, IDS, THING, window_sizes=(1,))
    want = _naive_pq([_naive_pq_stats(g, p) for g, p in zip(gts, preds)])
    assert res["per_window"][1]["num_windows"] == 4
    assert res["VPQ"] == pytest.approx(want, rel=1e-12)
    assert res["per_window"][1]["PQ"] == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_vpq_matches_naive_pq_on_concatenated_windows(seed):
    gts, preds = _random_sequence(np.random.default_rng(20 + seed), n_frames=5)
    res = video_panoptic_quality(gts, preds, IDS, THING)
    per_k = []
    for n in (1, 2, 3, 4):
        windows = [(np.concatenate(gts[i:i + n], 1), np.concatenate(preds[i:i + n], 1)) for i in range(6 - n)]
        per_k.append(_naive_pq([_naive_pq_stats(g, p) for g, p in windows]))
        assert res["per_window"][n]["num_windows"] == 6 - n
        assert res["per_window"][n]["PQ"] == pytest.approx(per_k[-1], rel=1e-12)
    assert res["VPQ"] == pytest.approx(np.mean(per_k), rel=1e-12)


def test_vpq_penalises_id_switch_only_in_multi_frame_windows():
    gt = np.array([[26001] * 4, [ROAD] * 4])
    gts = [gt] * 3
    switched = [gt, gt, np.where(gt == 26001, 26002, gt)]
    res = video_panoptic_quality(gts, switched, IDS, THING, window_sizes=(1, 2))
    assert res["per_window"][1]["PQ"] == pytest.approx(1.0)
    # 2-frame windows: (f0,f1) perfect; (f1,f2): the car tube is split 4/4 → IoU 1/2, no match: FN + 2 FP;
    # car PQ = 1 / (1 + 0.5·2 + 0.5·1) = 0.4, road PQ = 1 → PQ_2 = 0.7
    assert res["per_window"][2]["PQ"] == pytest.approx(0.7)
    assert res["VPQ"] == pytest.approx((1.0 + 0.7) / 2)
    assert res["VPQ_things"] == pytest.approx((1.0 + 0.4) / 2)


def test_vpq_multiple_sequences_and_short_sequences():
    acc = VPQAccumulator(IDS, THING, window_sizes=(1, 3))
    gt = np.array([[26001, ROAD]])
    acc.update(gt, gt, sequence_id="a")
    acc.update(gt, gt, sequence_id="b")                                   # never 3 frames in one sequence
    acc.update(gt, gt, sequence_id="a")
    res = acc.result()
    assert res["per_window"][3]["num_windows"] == 0 and res["per_window"][1]["num_windows"] == 3
    assert res["VPQ"] == pytest.approx(1.0)                                # only window sizes that were seen
    with pytest.raises(ValueError, match="window_sizes"):
        VPQAccumulator(IDS, THING, window_sizes=(0, 2))
    with pytest.raises(ValueError, match="differs from the sequence"):
        acc.update(np.zeros((2, 2), np.int64), np.zeros((2, 2), np.int64), sequence_id="a")


def _track_frame(gid_to_pid: dict[int, int], w: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """One frame with a 3-pixel-wide segment per ground-truth id; prediction ids as given (0 = missed)."""
    gt = np.full((2, w), ROAD)
    pred = gt.copy()
    for k, (gid, pid) in enumerate(gid_to_pid.items()):
        gt[:, 3 * k:3 * k + 3] = gid
        pred[:, 3 * k:3 * k + 3] = pid if pid else ROAD
    return gt, pred


def test_count_id_switches_on_constructed_sequences():
    def run(seq):
        frames = [_track_frame(m) for m in seq]
        return count_id_switches([g for g, _ in frames], [p for _, p in frames])

    a, b = 26001, 26002
    assert run([{a: 26005, b: 26006}] * 5) == 0
    assert run([{a: 26005}, {a: 26005}, {a: 26009}, {a: 26009}, {a: 26005}]) == 2
    assert run([{a: 26005}, {a: 0}, {a: 0}, {a: 26007}]) == 1              # memory survives a gap
    assert run([{a: 26005}, {a: 0}, {a: 26005}]) == 0
    assert run([{a: 26005, b: 26006}, {a: 26006, b: 26005}]) == 2         # a swap: one per track
    assert run([{a: 26005}, {a: 26}, {a: 26007}]) == 1                    # untracked segment matches nothing
    assert run([{a: 26005}, {a: 24007}]) == 0                             # other category: no match
    # a prediction overlapping only half of the object does not match
    g, p = _track_frame({a: 26005})
    g2, p2 = _track_frame({a: 26007})
    p2[:, 1:3] = ROAD                                                      # IoU 1/3
    assert count_id_switches([g, g2], [p, p2]) == 0
    with pytest.raises(ValueError, match="iou_threshold"):
        count_id_switches([g], [p], iou_threshold=0.3)
    with pytest.raises(ValueError, match="frames"):
        count_id_switches([g], [])


def test_tracker_on_rasterised_crossing_scene_end_to_end():
    """Two same-class objects whose boxes swap places (see test_tracking): embeddings keep identities,
    the box-only baseline switches them, as measured by count_id_switches, STQ's AQ and VPQ."""
    rng = np.random.default_rng(5)
    dirs = rng.normal(size=(2, 8))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    h, w = 20, 80
    gts, dets, seg_maps = [], [], []
    for t in range(10):
        xs = (2 + 4 * t, 38 - 4 * t)
        gt = np.full((h, w), ROAD)
        seg = np.full((h, w), ROAD)
        boxes = []
        for k, x in enumerate(xs):                                         # object 1 drawn over object 0
            rows = slice(2 + 8 * k, 10 + 8 * k)                            # vertically offset stripes
            gt[rows, x:x + 20] = 26001 + k
            seg[rows, x:x + 20] = 26000 + k                                # per-frame decoder ids
            boxes.append([x, 2, x + 20, 18])                               # overlapping, same-height boxes
        emb = dirs + 0.03 * rng.normal(size=dirs.shape)
        dets.append(Detections([CAR, CAR], boxes, emb, [0.9, 0.9], [True, True], segment_ids=[26000, 26001]))
        gts.append(gt)
        seg_maps.append(seg)

    def evaluate(cfg):
        tracker = EmbeddingTracker(cfg)
        preds = [relabel_with_tracks(s, d.segment_ids, tracker.update(d)) for s, d in zip(seg_maps, dets)]
        stq = STQAccumulator(IDS, THING)
        for g, p in zip(gts, preds):
            stq.update(g, p)
        vpq = video_panoptic_quality(gts, preds, IDS, THING)
        return count_id_switches(gts, preds), stq.result()["AQ"], vpq["VPQ"]

    sw_e, aq_e, vpq_e = evaluate(TrackerConfig(min_hits=1))
    sw_b, aq_b, vpq_b = evaluate(TrackerConfig(min_hits=1, use_embeddings=False))
    assert sw_e == 0 and aq_e == pytest.approx(1.0) and vpq_e == pytest.approx(1.0)
    assert sw_b >= 2 and aq_b < 0.8 and vpq_b < vpq_e
