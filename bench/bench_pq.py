"""Time ``hle evaluate pq`` against panopticapi's single process (and hotcoco) on synthetic COCO panoptic files.

Generates ``--pairs`` ground-truth / prediction pairs at ``--height`` x ``--width`` (default 60 at 512x1024):
about 20 Voronoi stuff regions (one segment per stuff category, as in COCO), about 30 elliptic thing instances
(a few crowd regions), void bands on region borders; the prediction moves the stuff borders, jitters, drops,
relabels and adds instances. Every tool is timed as a whole process (``subprocess``, wall clock, start-up
included, median of ``--repeats``):

* ``hle evaluate pq`` with ``--workers 1`` and with the default (all cores);
* panopticapi's ``pq_compute_single_core`` called directly (its ``pq_compute`` spawns one process per core),
  in the tool venv made by ``scripts/panopticapi_venv.sh``;
* ``hotcoco.panoptic.pq_compute`` if hotcoco is installed in that venv (``WITH_HOTCOCO=1``).

Besides the wall clock (the criterion), each run's CPU time (user + sys of the child processes) is recorded:
on a shared, loaded machine it is far less noisy than the wall clock, and for single-process tools it is what
the wall clock would be on an idle machine. The load average is printed before and after. Then it checks the
numbers agree, times the fixed start-up cost (one image pair) and prints where the CPU time of the in-process
evaluation goes (PNG decoding, RGB -> id, joint histogram, matching). Example::

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_pq.py --pairs 60 --height 512 --width 1024 --repeats 5
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

#: COCO-like category table of the synthetic data: 12 stuff + 8 thing categories.
STUFF_IDS = list(range(101, 113))
THING_IDS = list(range(1, 9))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", type=int, default=60, help="number of GT / prediction image pairs")
    p.add_argument("--height", type=int, default=512, help="image height in pixels")
    p.add_argument("--width", type=int, default=1024, help="image width in pixels")
    p.add_argument("--stuff", type=int, default=20, help="Voronoi stuff regions per image (before merging by category)")
    p.add_argument("--instances", type=int, default=30, help="thing instances per ground-truth image")
    p.add_argument("--repeats", type=int, default=3, help="timed whole-process runs per tool (median reported)")
    p.add_argument("--workers", type=int, default=None, help="--workers of the parallel hle run (default: all cores)")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="keep the generated files here and reuse them on later runs (default: a temp dir)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the generator")
    p.add_argument("--panopticapi-python", type=Path, default=None,
                   help="python of the panopticapi tool venv (default: $HLE_PANOPTICAPI_PYTHON or "
                        ".venv-panopticapi/bin/python)")
    p.add_argument("--hle", default=None, help="hle executable (default: .venv/bin/hle if present, else "
                                               "python -m hle_core.commands.evaluate)")
    return p.parse_args(argv)


# ----------------------------------------------------------------------------------------------------
# synthetic data
def _voronoi(seeds: np.ndarray, h: int, w: int, step: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Nearest seed (H, W) and the gap between the two nearest distances (H, W), computed on a grid of
    ``step`` pixels and repeated up (blocky borders, like coarse annotation polygons)."""
    ys, xs = np.mgrid[0:h:step, 0:w:step]                                   # h/step x w/step
    d = np.hypot(ys[..., None] - seeds[:, 0], xs[..., None] - seeds[:, 1])  # h/step x w/step x S
    part = np.partition(d, 1, axis=-1)
    label = d.argmin(-1)
    gap = part[..., 1] - part[..., 0]
    up = lambda a: np.repeat(np.repeat(a, step, 0), step, 1)[:h, :w]      # noqa: E731
    return up(label), up(gap)


def _ellipse(h: int, w: int, cy: float, cx: float, ry: float, rx: float) -> tuple[slice, slice, np.ndarray]:
    y0, x0 = min(max(int(cy - ry), 0), h), min(max(int(cx - rx), 0), w)
    y1, x1 = max(min(int(cy + ry) + 1, h), y0), max(min(int(cx + rx) + 1, w), x0)
    yy, xx = np.mgrid[y0:y1, x0:x1]
    return slice(y0, y1), slice(x0, x1), ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def make_pair(rng: np.random.Generator, h: int, w: int, n_stuff: int, n_inst: int):
    """One synthetic pair as two (H, W) 'semantic key' maps plus per-key categories and crowd flags.

    Returns ``(gt_key, gt_cat, gt_crowd, pred_key, pred_cat)``: key maps (H, W) int64 (0 = void), and dicts
    key -> category id / crowd flag. Keys are per-image segment numbers, not yet COCO ids.
    """
    seeds = rng.uniform([0, 0], [h, w], size=(n_stuff, 2))
    stuff_cat = rng.choice(STUFF_IDS, size=n_stuff)
    lab, gap = _voronoi(seeds, h, w)
    gt_key = np.zeros((h, w), np.int64)
    gt_cat: dict[int, int] = {}
    gt_crowd: dict[int, bool] = {}
    # one segment per stuff category (COCO): key = 1 + position of the category in STUFF_IDS
    cat_key = {c: 1 + i for i, c in enumerate(STUFF_IDS)}
    gt_key[:] = np.vectorize(lambda c: cat_key[c])(stuff_cat)[lab]
    gt_key[gap < 3.0] = 0                                                   # void band on borders
    if rng.random() < 0.5:                                                  # a void cell
        gt_key[lab == rng.integers(n_stuff)] = 0
    for c in set(stuff_cat.tolist()):
        gt_cat[cat_key[c]] = c
        gt_crowd[cat_key[c]] = False
    # prediction stuff: moved seeds, 10% of the regions relabelled
    p_seeds = seeds + rng.normal(0, 6, size=seeds.shape)
    p_cat = stuff_cat.copy()
    swap = rng.random(n_stuff) < 0.1
    p_cat[swap] = rng.choice(STUFF_IDS, size=int(swap.sum()))
    p_lab, p_gap = _voronoi(p_seeds, h, w)
    pred_key = np.vectorize(lambda c: cat_key[c])(p_cat)[p_lab]
    pred_key[p_gap < 1.0] = 0
    pred_cat = {cat_key[c]: c for c in set(p_cat.tolist())}

    key = 100
    crowd_key: dict[int, int] = {}
    for i in range(n_inst):
        cat = int(rng.choice(THING_IDS))
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = rng.uniform(8, h / 6), rng.uniform(8, w / 10)
        sy, sx, m = _ellipse(h, w, cy, cx, ry, rx)
        crowd = rng.random() < 0.08
        if crowd:   # one crowd segment per category (COCO), possibly in several places
            k = crowd_key.setdefault(cat, key + 1000)
        else:
            k = key
        gt_key[sy, sx][m] = k
        gt_cat[k], gt_crowd[k] = cat, crowd
        key += 1
        if crowd:   # a detector finds a few objects inside a crowd region
            for _ in range(2):
                sy2, sx2, m2 = _ellipse(h, w, cy + rng.normal(0, ry / 3), cx + rng.normal(0, rx / 3), ry / 3, rx / 3)
                pred_key[sy2, sx2][m2] = key + 5000
                pred_cat[key + 5000] = cat
                key += 1
            continue
        if rng.random() < 0.12:      # missed
            continue
        pc = cat if rng.random() > 0.05 else int(rng.choice(THING_IDS))
        sy, sx, m = _ellipse(h, w, cy + rng.normal(0, ry / 8), cx + rng.normal(0, rx / 8),
                             ry * rng.uniform(0.8, 1.2), rx * rng.uniform(0.8, 1.2))
        pred_key[sy, sx][m] = k
        pred_cat[k] = pc
    for _ in range(3):               # spurious detections
        cat = int(rng.choice(THING_IDS))
        sy, sx, m = _ellipse(h, w, rng.uniform(0, h), rng.uniform(0, w), rng.uniform(5, 30), rng.uniform(5, 40))
        pred_key[sy, sx][m] = key
        pred_cat[key] = cat
        key += 1
    return gt_key, gt_cat, gt_crowd, pred_key, pred_cat


def _to_coco(key_map: np.ndarray, cats: dict[int, int], crowd: dict[int, bool] | None, rng: np.random.Generator):
    """Key map -> (RGB PNG array, segments_info) with random distinct COCO ids in [1, 256^3)."""
    keys, areas = np.unique(key_map, return_counts=True)
    keep = keys != 0
    keys, areas = keys[keep], areas[keep]
    ids = rng.choice(np.arange(1, 256 ** 3), size=len(keys), replace=False)
    lut = np.zeros(int(key_map.max()) + 1, np.int64)
    lut[keys] = ids
    pan = lut[key_map]
    rgb = np.stack([pan % 256, pan // 256 % 256, pan // 65536], -1).astype(np.uint8)
    info = [{"id": int(i), "category_id": int(cats[int(k)]), "iscrowd": int(bool(crowd and crowd[int(k)])),
             "area": int(a)} for k, i, a in zip(keys, ids, areas)]
    return rgb, info


def write_dataset(out: Path, pairs: int, h: int, w: int, n_stuff: int, n_inst: int, seed: int,
                  string_ids: bool = False) -> dict[str, Path]:
    """Write ``gt.json``, ``gt/``, ``pred.json``, ``pred/`` under ``out`` (PNGs written with PIL, like COCO)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    cats = ([{"id": c, "name": f"stuff{c}", "isthing": 0} for c in STUFF_IDS]
            + [{"id": c, "name": f"thing{c}", "isthing": 1} for c in THING_IDS])
    paths = {"gt_json": out / "gt.json", "gt_folder": out / "gt", "pred_json": out / "pred.json",
             "pred_folder": out / "pred"}
    paths["gt_folder"].mkdir(parents=True, exist_ok=True)
    paths["pred_folder"].mkdir(parents=True, exist_ok=True)
    gt_anns, pred_anns, images = [], [], []
    for i in range(pairs):
        image_id = f"city_{i:06d}" if string_ids else i + 1
        gk, gc, gcr, pk, pc = make_pair(rng, h, w, n_stuff, n_inst)
        name = f"img_{i:06d}.png"
        g_rgb, g_info = _to_coco(gk, gc, gcr, rng)
        p_rgb, p_info = _to_coco(pk, pc, None, rng)
        Image.fromarray(g_rgb).save(paths["gt_folder"] / name)
        Image.fromarray(p_rgb).save(paths["pred_folder"] / name)
        images.append({"id": image_id, "file_name": name.replace(".png", ".jpg"), "height": h, "width": w})
        gt_anns.append({"image_id": image_id, "file_name": name, "segments_info": g_info})
        pred_anns.append({"image_id": image_id, "file_name": name, "segments_info": p_info})
    paths["gt_json"].write_text(json.dumps({"images": images, "annotations": gt_anns, "categories": cats}))
    paths["pred_json"].write_text(json.dumps({"annotations": pred_anns}))
    return paths


# ----------------------------------------------------------------------------------------------------
# whole-process timing
PANOPTICAPI_SINGLE = r"""
import json, sys
from panopticapi.evaluation import pq_compute_single_core
gt_json, pred_json, gt_folder, pred_folder, out = sys.argv[1:6]
gt = json.load(open(gt_json)); pred = json.load(open(pred_json))
cats = {c["id"]: c for c in gt["categories"]}
by_id = {a["image_id"]: a for a in pred["annotations"]}
stat = pq_compute_single_core(0, [(a, by_id[a["image_id"]]) for a in gt["annotations"]], gt_folder, pred_folder, cats)
res = {}
for name, isthing in [("All", None), ("Things", True), ("Stuff", False)]:
    res[name], per_class = stat.pq_average(cats, isthing=isthing)
    if name == "All":
        res["per_class"] = per_class
json.dump(res, open(out, "w"), default=float)
"""

HOTCOCO = r"""
import json, sys
from hotcoco.panoptic import pq_compute
gt_json, pred_json, gt_folder, pred_folder, out = sys.argv[1:6]
json.dump(pq_compute(gt_json, pred_json, gt_folder, pred_folder), open(out, "w"), default=float)
"""


def _time_process(cmd: list[str], repeats: int) -> tuple[float, list[float], list[float]]:
    """Median wall clock, every run's wall clock and every run's CPU time (user + sys of the child), seconds."""
    times, cpus = [], []
    for _ in range(repeats):
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        times.append(time.perf_counter() - t0)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
    return statistics.median(times), times, cpus


def _load() -> str:
    return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def _max_diff(ours: dict, ref: dict) -> float:
    diff = 0.0
    for name in ("All", "Things", "Stuff"):
        if ours[name]["n"] != ref[name]["n"]:
            return float("inf")
        diff = max(diff, *(abs(ours[name][k] - ref[name][k]) for k in ("pq", "sq", "rq")))
    for cid, r in ref["per_class"].items():
        diff = max(diff, *(abs(ours["per_class"][str(cid)][k] - r[k]) for k in ("pq", "sq", "rq")))
    return diff


# ----------------------------------------------------------------------------------------------------
# in-process profile of hle's evaluation, stage by stage, one worker
def profile(paths: dict[str, Path]) -> dict[str, float]:
    """CPU seconds per stage over all pairs: JSON + tables, PNG decode, RGB -> id, joint histogram, matching."""
    import cv2

    from hle_core.evaluation import pq as P
    from hle_core.evaluation.png_io import _bgr_to_id

    t = dict.fromkeys(("json + segment tables", "PNG decode (cv2)", "RGB -> id", "joint histogram",
                       "matching + stats"), 0.0)
    t0 = time.process_time()
    gt = json.loads(paths["gt_json"].read_text())
    pred = json.loads(paths["pred_json"].read_text())
    cats = P.Categories.from_coco(gt["categories"])
    by_id = {a["image_id"]: a for a in pred["annotations"]}
    t["json + segment tables"] += time.process_time() - t0
    stats = P.PQStats(cats)
    bufs: dict[str, np.ndarray] = {}
    for g_ann in gt["annotations"]:
        p_ann = by_id[g_ann["image_id"]]
        t0 = time.process_time()
        g = P._segment_table(g_ann, cats, cats.index, "gt", True)
        p = P._segment_table(p_ann, cats, cats.index, "pred", False)
        t1 = time.process_time()
        g_bgr = cv2.imdecode(np.fromfile(str(paths["gt_folder"] / g_ann["file_name"]), np.uint8), cv2.IMREAD_UNCHANGED)
        p_bgr = cv2.imdecode(np.fromfile(str(paths["pred_folder"] / p_ann["file_name"]), np.uint8),
                             cv2.IMREAD_UNCHANGED)
        t2 = time.process_time()
        g_ids, p_ids = _bgr_to_id(g_bgr, bufs.get("g")), _bgr_to_id(p_bgr, bufs.get("p"))   # as in pq.py
        bufs["g"], bufs["p"] = g_ids.base, p_ids.base
        t3 = time.process_time()
        inter, _, _ = P._joint_histogram(g_ids, p_ids, g.ids, p.ids)   # as evaluate_coco_pair
        t4 = time.process_time()
        P.image_stats(inter, g, p, cats, stats)
        t5 = time.process_time()
        for key, dt in zip(t, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
            t[key] += dt
    return t


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tmp = None
    if args.data_dir is None:
        tmp = Path(tempfile.mkdtemp(prefix="bench_pq_"))
        data = tmp
    else:
        data = args.data_dir
    try:
        t0 = time.perf_counter()
        if (data / "gt.json").exists() and (data / "pred.json").exists():
            paths = {"gt_json": data / "gt.json", "gt_folder": data / "gt", "pred_json": data / "pred.json",
                     "pred_folder": data / "pred"}
            print(f"reusing the data under {data} (delete it to regenerate)")
        else:
            paths = write_dataset(data, args.pairs, args.height, args.width, args.stuff, args.instances, args.seed)
            print(f"generated {args.pairs} pairs at {args.height}x{args.width} in {time.perf_counter() - t0:.1f} s "
                  f"under {data}")
        files = [str(paths[k]) for k in ("gt_json", "pred_json", "gt_folder", "pred_folder")]
        hle = [args.hle] if args.hle else ([str(ROOT / ".venv" / "bin" / "hle")] if (ROOT / ".venv/bin/hle").exists()
                                           else [sys.executable, "-m", "hle_core.commands.evaluate"])
        hle_args = ["evaluate"] if args.hle or (ROOT / ".venv/bin/hle").exists() else []
        hle_args += ["pq", "--gt-json", files[0], "--pred-json", files[1], "--gt-folder", files[2],
                     "--pred-folder", files[3]]
        runs: dict[str, tuple[list[str], Path]] = {}
        out1, outn = data / "hle_w1.json", data / "hle_wn.json"
        runs["hle evaluate pq --workers 1"] = ([*hle, *hle_args, "--workers", "1", "--out", str(out1)], out1)
        n = args.workers or os.cpu_count() or 1
        runs[f"hle evaluate pq --workers {n}"] = ([*hle, *hle_args, "--workers", str(n), "--out", str(outn)], outn)
        papi = args.panopticapi_python or Path(os.environ.get("HLE_PANOPTICAPI_PYTHON",
                                                              ROOT / ".venv-panopticapi" / "bin" / "python"))
        if papi.exists():
            (data / "papi.py").write_text(PANOPTICAPI_SINGLE)
            runs["panopticapi pq_compute_single_core"] = ([str(papi), str(data / "papi.py"), *files,
                                                           str(data / "papi.json")], data / "papi.json")
            has_hotcoco = subprocess.run([str(papi), "-c", "import hotcoco"], capture_output=True).returncode == 0
            if has_hotcoco:
                (data / "run_hotcoco.py").write_text(HOTCOCO)   # not hotcoco.py: it would shadow the package
                runs["hotcoco pq_compute"] = ([str(papi), str(data / "run_hotcoco.py"), *files, str(data / "hc.json")],
                                              data / "hc.json")
        else:
            print(f"panopticapi tool venv not found at {papi}: run scripts/panopticapi_venv.sh")
        env_note = f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, {os.cpu_count()} CPU cores"
        load_before = _load()
        times = {name: [] for name in runs}
        cpus = {name: [] for name in runs}
        for _ in range(args.repeats):          # interleaved, so load drift hits every tool alike
            for name, (cmd, _) in runs.items():
                _, wall, cpu = _time_process(cmd, 1)
                times[name].extend(wall)
                cpus[name].extend(cpu)
        load_after = _load()
        ref_name = "panopticapi pq_compute_single_core"
        ref = json.loads(runs[ref_name][1].read_text()) if ref_name in runs else None
        ref_t = statistics.median(times[ref_name]) if ref_name in runs else None
        ref_c = statistics.median(cpus[ref_name]) if ref_name in runs else None
        print(f"\nwhole process, median of {args.repeats} ({env_note}; {load_before} before, {load_after} after):")
        print(f"{'tool':34s} {'wall s':>7s} {'runs (wall s)':>30s} {'x papi':>7s} {'CPU s':>7s} {'x papi':>7s} "
              f"{'max |diff|':>10s}")
        for name, (_, out) in runs.items():
            med, cpu = statistics.median(times[name]), statistics.median(cpus[name])
            speed = f"{ref_t / med:.1f}x" if ref_t else "-"
            cspeed = f"{ref_c / cpu:.1f}x" if ref_c else "-"
            diff = "-"
            if ref is not None and name != ref_name:
                res = json.loads(out.read_text())
                if "per_class" in res and not isinstance(next(iter(res["per_class"])), str):
                    res["per_class"] = {str(k): v for k, v in res["per_class"].items()}
                diff = f"{_max_diff(res, ref):.1e}"
            runs_s = " ".join(f"{x:.2f}" for x in times[name])
            print(f"{name:34s} {med:7.3f} {runs_s:>30s} {speed:>7s} {cpu:7.3f} {cspeed:>7s} {diff:>10s}")

        # fixed cost: python alone, the imports of the evaluation, and a whole `hle evaluate pq` of one pair
        one = data / "one_pair"
        one.mkdir(exist_ok=True)
        for key in ("gt_json", "pred_json"):
            full = json.loads(paths[key].read_text())
            full["annotations"] = full["annotations"][:1]
            (one / paths[key].name).write_text(json.dumps(full))
        one_cmd = [*hle, *hle_args, "--workers", "1"]
        one_cmd[one_cmd.index(str(paths["gt_json"]))] = str(one / paths["gt_json"].name)
        one_cmd[one_cmd.index(str(paths["pred_json"]))] = str(one / paths["pred_json"].name)
        start = [sys.executable, "-c", "import hle_core.evaluation.pq, hle_core.evaluation.png_io"]
        bare = [sys.executable, "-c", "pass"]
        print("\nstart-up, median of 5 (wall / CPU ms): " + ", ".join(
            f"{what} {1e3 * r[0]:.0f} / {1e3 * statistics.median(r[2]):.0f}"
            for what, r in (("python alone", _time_process(bare, 5)),
                            ("+ numpy/cv2/hle_core.evaluation", _time_process(start, 5)),
                            ("hle evaluate pq of 1 pair", _time_process(one_cmd, 5)))))
        prof = profile(paths)
        total = sum(prof.values())
        print(f"in-process CPU profile, 1 worker, {args.pairs} pairs ({total * 1e3:.0f} ms):")
        for k, v in prof.items():
            print(f"  {k:24s} {v * 1e3:8.1f} ms  {v / args.pairs * 1e3:6.2f} ms/pair  {100 * v / total:5.1f} %")
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
