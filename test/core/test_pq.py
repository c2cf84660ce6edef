"""Tests of hle_core.evaluation.pq: panoptic quality exactly as panopticapi, PQ†, PC, mIoU, errors, CLI.

Oracles:
* panopticapi itself (PyPI ``panopticapi-lite`` 0.2.0) in the tool venv made by ``scripts/panopticapi_venv.sh``,
  run as a subprocess on the same files (skipped, saying why, when the venv is absent);
* numbers recorded from a real panopticapi run on a deterministic fixture (always run);
* a hand-computed 2x4-pixel case;
* brute-force per-segment boolean-mask implementations of mIoU, PQ† and PC written from their definitions.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hle_core.config import ClassInfo, ClassTable
from hle_core.evaluation import (Categories, MissingPredictionError, PanopticFileNotFoundError, PanopticFormatError,
                                 PQStats, SegmentMismatchError, UnknownCategoryError, pq_compute, pq_from_maps)
from hle_core.evaluation import pq as pq_module

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:                   # scripts/ is not an installed package
    sys.path.insert(0, str(ROOT))
from scripts.panopticapi_runner import panopticapi_python  # noqa: E402
from scripts.panopticapi_runner import run_panopticapi as _run_panopticapi  # noqa: E402
TOL = 1e-9

# ----------------------------------------------------------------------------------------------------
# generator of random, valid COCO panoptic GT / prediction pairs
STUFF = [3, 7, 11, 17]           # non-contiguous category ids on purpose
THINGS = [1, 24, 26, 42]
ONLY_IN_PRED = 26                # never in the ground truth


def _categories_json() -> list[dict]:
    return ([{"id": c, "name": f"stuff{c}", "isthing": 0} for c in STUFF]
            + [{"id": c, "name": f"thing{c}", "isthing": 1} for c in THINGS])


def _rect(rs: np.random.RandomState, h: int, w: int, min_size: int = 2) -> tuple[slice, slice]:
    y0, x0 = rs.randint(0, h - min_size), rs.randint(0, w - min_size)
    return slice(y0, rs.randint(y0 + min_size, h + 1)), slice(x0, rs.randint(x0 + min_size, w + 1))


def _random_pair(rs: np.random.RandomState, h: int, w: int):
    """Key maps (small ints, 0 = void) with categories (and crowd flags for the GT)."""
    gt = np.zeros((h, w), np.int64)
    cat: dict[int, int] = {}
    crowd: dict[int, bool] = {}
    key = 1
    for c in rs.permutation(STUFF)[: rs.randint(1, len(STUFF) + 1)]:       # one segment per stuff category
        for _ in range(rs.randint(1, 3)):
            gt[_rect(rs, h, w)] = key
        cat[key], crowd[key] = int(c), False
        key += 1
    gt_things = [t for t in THINGS if t != ONLY_IN_PRED]
    for _ in range(rs.randint(0, 7)):
        gt[_rect(rs, h, w)] = key
        cat[key], crowd[key] = int(rs.choice(gt_things)), False
        key += 1
    for _ in range(rs.randint(0, 3)):                                    # crowd, sometimes 2 of one category
        gt[_rect(rs, h, w, 3)] = key
        cat[key], crowd[key] = int(rs.choice(gt_things[:2])), True
        key += 1
    for _ in range(rs.randint(0, 3)):                                    # void
        gt[_rect(rs, h, w)] = 0

    # prediction: shifted / relabelled copies, extra segments, some void, a category only predicted
    pred = np.zeros((h, w), np.int64)
    pcat: dict[int, int] = {}
    pkey = 1
    for k in rs.permutation(list(cat)):
        if rs.rand() < 0.15:
            continue
        dy, dx = rs.randint(-2, 3), rs.randint(-2, 3)
        m = np.roll(np.roll(gt == k, dy, 0), dx, 1)
        pred[m] = pkey
        c = cat[k]
        if rs.rand() < 0.1:
            c = int(rs.choice(STUFF if c in STUFF else THINGS))
        pcat[pkey] = c
        pkey += 1
    for _ in range(rs.randint(0, 4)):
        pred[_rect(rs, h, w)] = pkey
        pcat[pkey] = int(rs.choice(STUFF + THINGS))
        pkey += 1
    if rs.rand() < 0.5:
        pred[_rect(rs, h, w)] = 0
    return gt, cat, crowd, pred, pcat


def _to_coco(key_map, cats, crowd, rs):
    keys, areas = np.unique(key_map, return_counts=True)
    keys, areas = keys[keys != 0], areas[keys != 0]
    ids = rs.choice(np.arange(1, 256 ** 3, 9973), size=len(keys), replace=False)
    lut = np.zeros(int(key_map.max()) + 1, np.int64)
    lut[keys] = ids
    pan = lut[key_map]
    rgb = np.stack([pan % 256, pan // 256 % 256, pan // 65536], -1).astype(np.uint8)
    info = [{"id": int(i), "category_id": cats[int(k)], "iscrowd": int(bool(crowd and crowd[int(k)])),
             "area": int(a)} for k, i, a in zip(keys, ids, areas)]
    order = rs.permutation(len(info))                                      # listing order is arbitrary
    return rgb, [info[i] for i in order]


def write_random_dataset(out: Path, seed: int, n_images: int = 12, h: int = 24, w: int = 32) -> dict:
    """Random COCO panoptic GT / prediction files under ``out``; image ids alternate int and str."""
    from PIL import Image

    rs = np.random.RandomState(seed)             # legacy generator: stream stable across NumPy versions
    (out / "gt").mkdir(parents=True, exist_ok=True)
    (out / "pred").mkdir(parents=True, exist_ok=True)
    gt_anns, pred_anns = [], []
    for i in range(n_images):
        image_id = i * 7 + 1 if i % 2 else f"frankfurt_{i:06d}"
        g, c, cr, p, pc = _random_pair(rs, h, w)
        g_rgb, g_info = _to_coco(g, c, cr, rs)
        p_rgb, p_info = _to_coco(p, pc, None, rs)
        name = f"im{i:03d}.png"
        Image.fromarray(g_rgb).save(out / "gt" / name)
        Image.fromarray(p_rgb).save(out / "pred" / name)
        gt_anns.append({"image_id": image_id, "file_name": name, "segments_info": g_info})
        pred_anns.append({"image_id": image_id, "file_name": name, "segments_info": p_info})
    rs.shuffle(pred_anns)                                                  # matched by image_id, not order
    paths = {"gt_json": out / "gt.json", "pred_json": out / "pred.json", "gt_folder": out / "gt",
             "pred_folder": out / "pred"}
    paths["gt_json"].write_text(json.dumps({"annotations": gt_anns, "categories": _categories_json()}))
    paths["pred_json"].write_text(json.dumps({"annotations": pred_anns}))
    return paths


def _ours(paths: dict, **kw) -> dict:
    return pq_compute(paths["gt_json"], paths["pred_json"], paths["gt_folder"], paths["pred_folder"], **kw)


def _assert_same_pq(ours: dict, ref: dict) -> None:
    for name in ("All", "Things", "Stuff"):
        assert ours[name]["n"] == ref[name]["n"], name
        for k in ("pq", "sq", "rq"):
            assert abs(ours[name][k] - ref[name][k]) <= TOL, (name, k, ours[name][k], ref[name][k])
    for cid, r in ref["per_class"].items():
        for k in ("pq", "sq", "rq"):
            assert abs(ours["per_class"][int(cid)][k] - r[k]) <= TOL, (cid, k)


# ----------------------------------------------------------------------------------------------------
# (b1) panopticapi itself, when the tool venv exists (the runner bench/bench_pq.py uses too)
def run_panopticapi(paths: dict, tmp: Path) -> dict:
    if panopticapi_python() is None:
        pytest.skip("panopticapi tool venv not found (create it with scripts/panopticapi_venv.sh or set "
                    "HLE_PANOPTICAPI_PYTHON); the recorded-oracle and hand-computed tests still ran")
    return _run_panopticapi(paths["gt_json"], paths["pred_json"], paths["gt_folder"], paths["pred_folder"],
                            tmp / "panopticapi.json")


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_matches_panopticapi_on_random_data(tmp_path, seed):
    paths = write_random_dataset(tmp_path / "d", seed, n_images=16)
    ref = run_panopticapi(paths, tmp_path)
    _assert_same_pq(_ours(paths, workers=1), ref)
    _assert_same_pq(_ours(paths, workers=2), ref)         # process pool gives the same numbers


# ----------------------------------------------------------------------------------------------------
# (b2) recorded oracle: the numbers panopticapi-lite 0.2.0 (numpy 1.26.4, Pillow 13.0) computed for
# write_random_dataset(dir, seed=2021, n_images=10), copied from a real run of panopticapi's script
# (scripts/panopticapi_runner.py PANOPTICAPI_SCRIPT):
#   .venv-panopticapi/bin/python run_panopticapi.py gt.json pred.json gt pred out.json
# The fixture uses np.random.RandomState, whose stream NumPy keeps stable across versions.
RECORDED_SEED = 2021
RECORDED = {
    "All": {"pq": 0.12885009984039358, "sq": 0.4787053785178948, "rq": 0.19963241436925644, "n": 8},
    "Things": {"pq": 0.12199771315670432, "sq": 0.4350711639215485, "rq": 0.21037593984962405, "n": 4},
    "Stuff": {"pq": 0.1357024865240828, "sq": 0.522339593114241, "rq": 0.18888888888888888, "n": 4},
    "per_class": {
        3: {"pq": 0.0, "sq": 0, "rq": 0.0},
        7: {"pq": 0.1267605633802817, "sq": 0.6338028169014085, "rq": 0.2},
        11: {"pq": 0.2777777777777778, "sq": 0.8333333333333334, "rq": 0.3333333333333333},
        17: {"pq": 0.13827160493827162, "sq": 0.6222222222222222, "rq": 0.2222222222222222},
        1: {"pq": 0.17737556561085974, "sq": 0.6208144796380091, "rq": 0.2857142857142857},
        24: {"pq": 0.13585510049765243, "sq": 0.5660629187402184, "rq": 0.24},
        26: {"pq": 0.0, "sq": 0, "rq": 0.0},          # category only predicted: FP only
        42: {"pq": 0.1747601865183052, "sq": 0.5534072573079665, "rq": 0.3157894736842105},
    },
}


def test_matches_recorded_panopticapi_numbers(tmp_path):
    paths = write_random_dataset(tmp_path / "d", RECORDED_SEED, n_images=10)
    _assert_same_pq(_ours(paths, workers=1), RECORDED)


# ----------------------------------------------------------------------------------------------------
# hand-computed 2x4 case (Cityscapes convention in memory, the same through COCO files)
CLASSES = ClassTable((ClassInfo(1, "road", False), ClassInfo(2, "car", True)))
# image A                     GT                         prediction
#                      [1, 1, 2000, 2000]            [1, 1, 1,    2000]
#                      [1, 0, 2000, 2001]            [1, 1, 2000, 2000]
# road: |∩| = 3, pred area 5 with 1 px on GT void -> union 5 + 3 - 3 - 1 = 4, IoU 3/4 -> TP.
# car 2000 vs pred car: |∩| = 2, union 3 + 3 - 2 = 4, IoU exactly 0.5 -> NOT a match (strict >).
# car 2001 vs pred car: IoU 1/3. So car: TP 0, FN 2, FP 1 (pred car not on void).
GT_A = np.array([[1, 1, 2000, 2000], [1, 0, 2000, 2001]])
PRED_A = np.array([[1, 1, 1, 2000], [1, 1, 2000, 2000]])
# image B: 2 = a car crowd region (thing category id < 1000 in the GT)
#                      [2, 2, 2, 1]                  [2000, 2000, 2001, 1]
#                      [2, 2, 0, 1]                  [2000, 1,    1,    1]
# pred cars lie entirely in the car crowd region -> not FP; crowd never FN.
# road: |∩| = 2, pred area 4, 1 px on void -> union 4 + 2 - 2 - 1 = 3, IoU 2/3 -> TP.
GT_B = np.array([[2, 2, 2, 1], [2, 2, 0, 1]])
PRED_B = np.array([[2000, 2000, 2001, 1], [2000, 1, 1, 1]])


def test_hand_computed_pq():
    res = pq_from_maps([GT_A, GT_B], [PRED_A, PRED_B], CLASSES).results()
    road, car = res["per_class"][1], res["per_class"][2]
    assert (road["tp"], road["fp"], road["fn"]) == (2, 0, 0)
    assert (car["tp"], car["fp"], car["fn"]) == (0, 1, 2)
    assert road["pq"] == pytest.approx(17 / 24, abs=1e-15)              # (3/4 + 2/3) / 2
    assert road["rq"] == 1.0 and car["pq"] == 0.0 and car["rq"] == 0.0
    assert res["All"] == pytest.approx({"pq": 17 / 48, "sq": 17 / 48, "rq": 0.5, "n": 2}, abs=1e-15)
    assert res["Things"] == {"pq": 0.0, "sq": 0.0, "rq": 0.0, "n": 1}
    assert res["Stuff"] == pytest.approx({"pq": 17 / 24, "sq": 17 / 24, "rq": 1.0, "n": 1}, abs=1e-15)


def test_hand_computed_extras():
    res = pq_from_maps([GT_A], [PRED_A], CLASSES).results()
    # mIoU over non-void GT pixels: road 3 / (3 + 4 - 3) = 3/4; car 3 / (4 + 3 - 3) = 3/4
    assert res["miou"] == pytest.approx({"miou": 0.75, "n": 2}, abs=1e-15)
    # PQ†: thing car -> PQ 0; stuff road -> semantic IoU 3/4
    assert res["pq_dagger"]["All"] == pytest.approx({"pq_dagger": 0.375, "n": 2}, abs=1e-15)
    # PC: road 3/4; car regions 2000 (3 px, best IoU 2/4) and 2001 (1 px, 1/3) -> (3·1/2 + 1·1/3) / 4 = 11/24
    assert res["per_class"][2]["pc"] == pytest.approx(11 / 24, abs=1e-15)
    assert res["pc"]["All"] == pytest.approx({"pc": (0.75 + 11 / 24) / 2, "n": 2}, abs=1e-15)


def _maps_to_coco(tmp: Path, gts, preds, classes: ClassTable) -> dict:
    """Write Cityscapes-convention maps as COCO panoptic files (panoptic id = the Cityscapes id)."""
    from PIL import Image

    for d in ("gt", "pred"):
        (tmp / d).mkdir(parents=True, exist_ok=True)
    anns = {"gt": [], "pred": []}
    thing = {c.id: c.isthing for c in classes.classes}
    for i, maps in enumerate(zip(gts, preds)):
        for d, m in zip(("gt", "pred"), maps):
            ids, areas = np.unique(m, return_counts=True)
            info = [{"id": int(s), "category_id": int(s if s < 1000 else s // 1000), "area": int(a),
                     "iscrowd": int(d == "gt" and s < 1000 and thing[int(s)])} for s, a in zip(ids, areas) if s]
            rgb = np.stack([m % 256, m // 256 % 256, m // 65536], -1).astype(np.uint8)
            Image.fromarray(rgb).save(tmp / d / f"{i}.png")
            anns[d].append({"image_id": i, "file_name": f"{i}.png", "segments_info": info})
    cats = [{"id": c.id, "name": c.name, "isthing": int(c.isthing)} for c in classes.classes]
    (tmp / "gt.json").write_text(json.dumps({"annotations": anns["gt"], "categories": cats}))
    (tmp / "pred.json").write_text(json.dumps({"annotations": anns["pred"]}))
    return {"gt_json": tmp / "gt.json", "pred_json": tmp / "pred.json", "gt_folder": tmp / "gt",
            "pred_folder": tmp / "pred"}


def test_hand_case_through_files_equals_in_memory(tmp_path):
    paths = _maps_to_coco(tmp_path, [GT_A, GT_B], [PRED_A, PRED_B], CLASSES)
    assert _ours(paths, workers=1) == pq_from_maps([GT_A, GT_B], [PRED_A, PRED_B], CLASSES).results()


# ----------------------------------------------------------------------------------------------------
# brute-force oracles of mIoU, PQ†, PC from boolean masks
def _brute_force_extras(gts, preds, classes: ClassTable) -> dict:
    ids = [c.id for c in classes.classes]
    thing = {c.id: c.isthing for c in classes.classes}
    cat_of = lambda m: np.where(m < 1000, m, m // 1000)                  # noqa: E731
    inter = {c: 0 for c in ids}
    union = {c: 0 for c in ids}
    cov_w = {c: 0.0 for c in ids}
    cov_a = {c: 0.0 for c in ids}
    for gt, pred in zip(gts, preds):
        valid = gt != 0
        gc, pc = cat_of(gt), cat_of(pred)
        for c in ids:
            inter[c] += int(((gc == c) & (pc == c) & valid).sum())
            union[c] += int((((gc == c) | (pc == c)) & valid).sum())
        for g in np.unique(gt[valid]):
            region = gt == g
            best = 0.0
            for p in np.unique(pred[region]):
                if p == 0 or cat_of(np.array(p)) != cat_of(np.array(g)):
                    continue
                pm = (pred == p) & valid
                best = max(best, (region & pm).sum() / (region | pm).sum())
            c = int(cat_of(np.array(g)))
            cov_w[c] += region.sum() / gt.size * best
            cov_a[c] += region.sum() / gt.size
    sem = {c: inter[c] / union[c] for c in ids if union[c]}
    pc_ = {c: cov_w[c] / cov_a[c] for c in ids if cov_a[c]}
    return {"sem": sem, "pc": pc_, "thing": thing}


@pytest.mark.parametrize("seed", [5, 6])
def test_extras_match_brute_force(seed):
    rs = np.random.RandomState(seed)
    classes = ClassTable(tuple(ClassInfo(c, f"s{c}", False) for c in STUFF)
                         + tuple(ClassInfo(c, f"t{c}", True) for c in THINGS))
    gts, preds = [], []
    for _ in range(6):
        g, cat, crowd, p, pcat = _random_pair(rs, 20, 28)
        # key maps -> Cityscapes ids: stuff = category id, thing = id*1000+k, crowd = category id
        to_city = lambda m, cats, cr: np.vectorize(                     # noqa: E731
            lambda k: 0 if k == 0 else (cats[k] if cats[k] in STUFF or (cr and cr[k]) else cats[k] * 1000 + k))(m)
        gts.append(to_city(g, cat, crowd))
        preds.append(to_city(p, pcat, None))
    res = pq_from_maps(gts, preds, classes).results()
    bf = _brute_force_extras(gts, preds, classes)
    for cid, r in res["per_class"].items():
        assert (r["semantic_iou"] is None) == (cid not in bf["sem"])
        if cid in bf["sem"]:
            assert r["semantic_iou"] == pytest.approx(bf["sem"][cid], abs=1e-12)
        assert (r["pc"] is None) == (cid not in bf["pc"])
        if cid in bf["pc"]:
            assert r["pc"] == pytest.approx(bf["pc"][cid], abs=1e-12)
        expected_dagger = r["pq"] if bf["thing"][cid] else bf["sem"].get(cid)
        if r["pq_dagger"] is not None:
            assert r["pq_dagger"] == pytest.approx(expected_dagger, abs=1e-12)
    assert res["miou"]["miou"] == pytest.approx(np.mean(list(bf["sem"].values())), abs=1e-12)
    assert res["pc"]["All"]["pc"] == pytest.approx(np.mean(list(bf["pc"].values())), abs=1e-12)


# ----------------------------------------------------------------------------------------------------
# code paths that must agree: in-memory vs files, calcHist vs bincount, > 254 segments, workers
@pytest.mark.parametrize("n_segments", [5, 300])
def test_joint_histogram_against_brute_force(n_segments):
    rs = np.random.RandomState(n_segments)
    gt_seg = rs.permutation(np.arange(1, 256 ** 3, 4099))[:n_segments]          # ids spread over 24 bits
    pred_seg = rs.permutation(np.arange(2, 256 ** 3, 4099))[:n_segments]
    gt = np.concatenate([[0], gt_seg, [123]])[rs.randint(0, n_segments + 2, (40, 50))]   # 123: unlisted
    pred = np.concatenate([[0], pred_seg])[rs.randint(0, n_segments + 1, (40, 50))]
    inter, gt_unknown, pred_unknown = pq_module.joint_histogram(gt, pred, gt_seg, pred_seg)
    g_all, p_all = np.concatenate([[0], gt_seg]), np.concatenate([[0], pred_seg])
    brute = np.array([[((gt == g) & (pred == p)).sum() for p in p_all] for g in g_all])
    np.testing.assert_array_equal(inter, brute)
    assert gt_unknown.tolist() == ([123] if (gt == 123).any() else []) and pred_unknown.tolist() == []
    with pytest.raises(ValueError, match="range"):
        pq_module.joint_histogram(gt - 1, pred, gt_seg, pred_seg)


def test_bincount_path_equals_calchist_path(tmp_path, monkeypatch):
    paths = write_random_dataset(tmp_path / "d", 11, n_images=6)
    fast = _ours(paths, workers=1)
    monkeypatch.setattr(pq_module, "_CALCHIST_MAX_PIXELS", 0)
    assert _ours(paths, workers=1) == fast


def test_thread_pool_gives_the_numbers_of_one_thread_bit_for_bit(tmp_path):
    paths = write_random_dataset(tmp_path / "d", 12, n_images=7)
    one = _ours(paths, workers=1)
    assert _ours(paths, workers=2) == one and _ours(paths, workers=3) == one


def test_many_segments_uint16_path():
    # 300 thing instances (> 254 lookup rows): the uint16 table + bincount path
    classes = ClassTable((ClassInfo(5, "s", False), ClassInfo(9, "t", True)))
    gt = np.full((20, 60), 5)
    gt[:, :] = 9000 + np.arange(20 * 60).reshape(20, 60) // 4           # 300 instances of 4 px
    pred = gt.copy()
    pred[:, ::4] = 5                                                      # 1 px of each instance -> stuff
    res = pq_from_maps([gt], [pred], classes).results()
    t = res["per_class"][9]
    assert (t["tp"], t["fp"], t["fn"]) == (300, 0, 0)
    assert t["iou"] == pytest.approx(300 * 3 / 4)
    s = res["per_class"][5]
    assert (s["tp"], s["fp"], s["fn"]) == (0, 1, 0)


def test_in_memory_accepts_torch_tensors_and_accumulates():
    torch = pytest.importorskip("torch")
    stats = PQStats(Categories.from_class_table(CLASSES))
    pq_from_maps([torch.from_numpy(GT_A)], [torch.from_numpy(PRED_A)], CLASSES, stats=stats)
    pq_from_maps([GT_B], [PRED_B], CLASSES, stats=stats)
    assert stats.results() == pq_from_maps([GT_A, GT_B], [PRED_A, PRED_B], CLASSES).results()


def test_empty_inputs_are_defined():
    res = pq_from_maps([np.zeros((3, 4), np.int32)], [np.zeros((3, 4), np.int32)], CLASSES).results()
    assert res["All"] == {"pq": 0.0, "sq": 0.0, "rq": 0.0, "n": 0}     # panopticapi would divide by zero
    assert res["miou"]["n"] == 0 and res["pc"]["All"]["n"] == 0


# ----------------------------------------------------------------------------------------------------
# (c) inconsistent inputs
def _edit_json(path: Path, fn) -> None:
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


def test_png_id_missing_from_json(tmp_path):
    paths = write_random_dataset(tmp_path / "d", 3, n_images=3)
    removed = {}

    def drop(d):
        removed["id"] = d["annotations"][0]["segments_info"].pop()["id"]
    _edit_json(paths["pred_json"], drop)
    with pytest.raises(SegmentMismatchError, match=rf"{removed['id']}.*prediction PNG .*im\d+\.png") as e:
        _ours(paths, workers=1)
    assert isinstance(e.value, KeyError)                                  # catchable like panopticapi's KeyError


def test_error_in_a_worker_process_reaches_the_caller(tmp_path):
    paths = write_random_dataset(tmp_path / "d", 3, n_images=4)
    _edit_json(paths["pred_json"], lambda d: d["annotations"][3]["segments_info"].pop())
    with pytest.raises(SegmentMismatchError, match="prediction PNG"):
        _ours(paths, workers=2)


def test_json_id_missing_from_png(tmp_path):
    paths = write_random_dataset(tmp_path / "d", 3, n_images=3)
    _edit_json(paths["gt_json"], lambda d: d["annotations"][1]["segments_info"].append(
        {"id": 77, "category_id": STUFF[0], "iscrowd": 0, "area": 1}))
    with pytest.raises(SegmentMismatchError, match=r"\[77\].*ground truth JSON.*not presented in the PNG"):
        _ours(paths, workers=1)


def test_unknown_category(tmp_path):
    paths = write_random_dataset(tmp_path / "d", 3, n_images=3)
    _edit_json(paths["pred_json"], lambda d: d["annotations"][2]["segments_info"][0].update(category_id=999))
    with pytest.raises(UnknownCategoryError, match="unknown category_id 999"):
        _ours(paths, workers=1)


def test_missing_png_and_missing_prediction(tmp_path):
    paths = write_random_dataset(tmp_path / "d", 4, n_images=3)
    name = json.loads(paths["pred_json"].read_text())["annotations"][0]["file_name"]
    (paths["pred_folder"] / name).unlink()
    with pytest.raises(PanopticFileNotFoundError, match=name):
        _ours(paths, workers=1)
    with pytest.raises(FileNotFoundError):                                # also a FileNotFoundError
        _ours(paths, workers=1)
    _edit_json(paths["pred_json"], lambda d: d["annotations"].pop(0))
    with pytest.raises(MissingPredictionError, match="no prediction for the image with id"):
        _ours(paths, workers=1)


def test_int_and_str_image_ids_are_not_mixed(tmp_path):
    paths = write_random_dataset(tmp_path / "d", 4, n_images=2)          # ids "frankfurt_000000" and 8
    _edit_json(paths["pred_json"], lambda d: [a.update(image_id=str(a["image_id"])) for a in d["annotations"]])
    with pytest.raises(MissingPredictionError, match="8"):
        _ours(paths, workers=1)


def test_shape_mismatch_and_bad_png(tmp_path):
    from PIL import Image

    paths = write_random_dataset(tmp_path / "d", 4, n_images=2)
    name = json.loads(paths["gt_json"].read_text())["annotations"][0]["file_name"]
    Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(paths["pred_folder"] / name)
    with pytest.raises(PanopticFormatError, match="5x5"):
        _ours(paths, workers=1)
    Image.fromarray(np.zeros((24, 32), np.uint8)).save(paths["pred_folder"] / name)   # grayscale
    with pytest.raises(PanopticFormatError, match="8-bit RGB"):
        _ours(paths, workers=1)


def test_in_memory_errors():
    with pytest.raises(UnknownCategoryError, match=r"\[3\]"):
        pq_from_maps([GT_A], [np.full((2, 4), 3000)], CLASSES)
    with pytest.raises(ValueError, match="shape"):
        pq_from_maps([GT_A], [PRED_A[:, :2]], CLASSES)
    with pytest.raises(TypeError, match="float"):
        pq_from_maps([GT_A.astype(float)], [PRED_A], CLASSES)


# ----------------------------------------------------------------------------------------------------
# the command line: same numbers in the JSON, no torch on the `hle evaluate pq` path
def test_cli_writes_results_without_importing_torch(tmp_path):
    paths = write_random_dataset(tmp_path / "d", 8, n_images=4)
    out = tmp_path / "res.json"
    code = ("import sys\n"
            "try:\n    from hle_core.cli import main\n"
            "except ImportError:\n    from hle_core.commands.evaluate import main; sys.argv = sys.argv[1:]\n"
            "rc = main(sys.argv[1:])\n"
            "assert 'torch' not in sys.modules, 'torch was imported by hle evaluate pq'\n"
            "sys.exit(rc)\n")
    args = ["evaluate", "pq", "--gt-json", paths["gt_json"], "--gt-folder", paths["gt_folder"], "--pred-json",
            paths["pred_json"], "--pred-folder", paths["pred_folder"], "--out", out, "--workers", "1"]
    r = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, cwd=ROOT,
                       timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr
    assert "All       |" in r.stdout and "Things    |" in r.stdout
    written = json.loads(out.read_text())
    expected = json.loads(json.dumps(_ours(paths, workers=1)))          # int keys become strings in JSON
    assert written == expected


def test_cli_error_message_names_the_file(tmp_path):
    from hle_core.commands.evaluate import main

    paths = write_random_dataset(tmp_path / "d", 8, n_images=2)
    _edit_json(paths["pred_json"], lambda d: d["annotations"][0]["segments_info"].pop())
    rc = main(["pq", "--gt-json", str(paths["gt_json"]), "--pred-json", str(paths["pred_json"]),
               "--gt-folder", str(paths["gt_folder"]), "--pred-folder", str(paths["pred_folder"]), "--workers", "1"])
    assert rc == 2
