"""Time ``hle evaluate pq`` against panopticapi's single process (and hotcoco) on synthetic COCO panoptic files.

Two scenes, each a set of ground-truth / prediction pairs at ``--height`` x ``--width`` (default 512x1024):

* ``sparse``: 80 pairs of about 11 segments per image (8 Voronoi stuff regions, 5 thing instances), where PNG
  decoding is almost all of the work;
* ``dense``: 60 pairs of about 20 Voronoi stuff regions (one segment per stuff category, as in COCO) and 30
  elliptic thing instances (a few crowd regions).

Void bands lie on region borders; the prediction moves the stuff borders, jitters, drops, relabels and adds
instances. Every tool is timed as a whole process (``subprocess``, wall clock, start-up included, median of
``--repeats``, the tools interleaved):

* ``hle evaluate pq`` with ``--workers 1`` and with the default (all cores);
* panopticapi's ``pq_compute_single_core`` in the tool venv made by ``scripts/panopticapi_venv.sh`` (run by
  ``scripts/panopticapi_runner.py``, the runner ``test/core/test_pq.py`` uses too);
* ``hotcoco.panoptic.pq_compute`` if hotcoco is installed in that venv (``WITH_HOTCOCO=1``).

Besides the wall clock (the criterion), each run's CPU time (user + sys of the child processes) is recorded; the
load average is printed before and after. Per scene it checks the numbers agree with panopticapi and prints where
the CPU time of the in-process evaluation goes (PNG decoding, RGB -> id, joint histogram, matching); then the
fixed start-up cost (one image pair) and a summary of the speed-ups over panopticapi per scene. Example (both
scenes; ``bench/run_all.sh pq`` runs this)::

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_pq.py --repeats 5

``--scenes sparse`` / ``--scenes dense`` run one; ``--pairs`` / ``--height`` / ``--width`` override the scene
sizes (e.g. ``--pairs 4 --height 64 --width 128 --repeats 1`` to check that it runs).
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


#: The scenes: pairs, Voronoi stuff regions per image (before merging by category), thing instances per image.
SCENES = {
    "sparse": {"pairs": 80, "stuff": 8, "instances": 5},
    "dense": {"pairs": 60, "stuff": 20, "instances": 30},
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenes", nargs="+", choices=sorted(SCENES), default=["sparse", "dense"],
                   help="scenes to time (default: sparse dense)")
    p.add_argument("--pairs", type=int, default=None, help="image pairs per scene (default: the scene's, 80 / 60)")
    p.add_argument("--height", type=int, default=512, help="image height in pixels")
    p.add_argument("--width", type=int, default=1024, help="image width in pixels")
    p.add_argument("--stuff", type=int, default=None, help="override the scene's Voronoi stuff regions per image")
    p.add_argument("--instances", type=int, default=None, help="override the scene's thing instances per image")
    p.add_argument("--repeats", type=int, default=3, help="timed whole-process runs per tool (median reported)")
    p.add_argument("--workers", type=int, default=None, help="--workers of the parallel hle run (default: all cores)")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="keep the generated files here (one folder per scene) and reuse them on later runs with "
                        "the same settings (default: a temp dir)")
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
    from hle_core.evaluation.pq_files import segment_table
    from hle_core.panoptic_io import _bgr_to_id

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
        g = segment_table(g_ann, cats, cats.index, "gt", True)
        p = segment_table(p_ann, cats, cats.index, "pred", False)
        t1 = time.process_time()
        g_bgr = cv2.imdecode(np.fromfile(str(paths["gt_folder"] / g_ann["file_name"]), np.uint8), cv2.IMREAD_UNCHANGED)
        p_bgr = cv2.imdecode(np.fromfile(str(paths["pred_folder"] / p_ann["file_name"]), np.uint8),
                             cv2.IMREAD_UNCHANGED)
        t2 = time.process_time()
        g_ids, p_ids = _bgr_to_id(g_bgr, bufs.get("g")), _bgr_to_id(p_bgr, bufs.get("p"))   # as read_panoptic_png
        bufs["g"], bufs["p"] = g_ids.base, p_ids.base
        t3 = time.process_time()
        inter, _, _ = P._joint_histogram(g_ids, p_ids, g.ids, p.ids)   # as evaluate_coco_pair
        t4 = time.process_time()
        P.image_stats(inter, g, p, cats, stats)
        t5 = time.process_time()
        for key, dt in zip(t, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
            t[key] += dt
    return t


def _scene_data(args: argparse.Namespace, scene: str, root: Path) -> tuple[dict[str, Path], dict]:
    """The scene's files under ``root/<scene>``: reused when written with the same settings, else generated."""
    cfg = {**SCENES[scene], "height": args.height, "width": args.width, "seed": args.seed}
    for key in ("pairs", "stuff", "instances"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    data = root / scene
    paths = {"gt_json": data / "gt.json", "gt_folder": data / "gt", "pred_json": data / "pred.json",
             "pred_folder": data / "pred"}
    settings = data / "settings.json"
    if settings.exists() and json.loads(settings.read_text()) == cfg and paths["pred_json"].exists():
        print(f"[{scene}] reusing the data under {data} (delete it to regenerate)")
    else:
        t0 = time.perf_counter()
        shutil.rmtree(data, ignore_errors=True)
        paths = write_dataset(data, cfg["pairs"], cfg["height"], cfg["width"], cfg["stuff"], cfg["instances"],
                              cfg["seed"])
        settings.write_text(json.dumps(cfg))
        print(f"[{scene}] generated {cfg['pairs']} pairs at {cfg['height']}x{cfg['width']} in "
              f"{time.perf_counter() - t0:.1f} s under {data}")
    gt = json.loads(paths["gt_json"].read_text())
    cfg["segments per GT image"] = statistics.mean(len(a["segments_info"]) for a in gt["annotations"])
    return paths, cfg


def _hle_command(args: argparse.Namespace) -> list[str]:
    """``hle evaluate`` (or ``python -m hle_core.commands.evaluate``), ready for ``pq ...``."""
    if args.hle:
        return [args.hle, "evaluate"]
    if (ROOT / ".venv" / "bin" / "hle").exists():
        return [str(ROOT / ".venv" / "bin" / "hle"), "evaluate"]
    return [sys.executable, "-m", "hle_core.commands.evaluate"]


def run_scene(args: argparse.Namespace, scene: str, paths: dict[str, Path], cfg: dict) -> dict[str, float]:
    """Time the tools on one scene, print the table and the CPU profile; returns tool -> wall-clock speed-up
    over panopticapi (empty without the tool venv)."""
    from scripts.panopticapi_runner import has_hotcoco, hotcoco_command, panopticapi_command, panopticapi_python

    data = paths["gt_json"].parent
    files = [paths[k] for k in ("gt_json", "pred_json", "gt_folder", "pred_folder")]
    pq_args = ["pq", "--gt-json", str(files[0]), "--pred-json", str(files[1]), "--gt-folder", str(files[2]),
               "--pred-folder", str(files[3])]
    runs: dict[str, tuple[list[str], Path]] = {}
    n = args.workers or os.cpu_count() or 1
    for w in (1, n):
        out = data / f"hle_w{w}.json"
        runs[f"hle evaluate pq --workers {w}"] = ([*_hle_command(args), *pq_args, "--workers", str(w), "--out",
                                                  str(out)], out)
    ref_name = "panopticapi pq_compute_single_core"
    papi = panopticapi_python(args.panopticapi_python)
    if papi is not None:
        runs[ref_name] = (panopticapi_command(papi, *files, data / "papi.json"), data / "papi.json")
        if has_hotcoco(papi):
            runs["hotcoco pq_compute"] = (hotcoco_command(papi, *files, data / "hc.json"), data / "hc.json")
    else:
        print("panopticapi tool venv not found: run scripts/panopticapi_venv.sh (no speed-ups without it)")
    env_note = f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, {os.cpu_count()} CPU cores"
    load_before = _load()
    times: dict[str, list[float]] = {name: [] for name in runs}
    cpus: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):          # interleaved, so load drift hits every tool alike
        for name, (cmd, _) in runs.items():
            _, wall, cpu = _time_process(cmd, 1)
            times[name].extend(wall)
            cpus[name].extend(cpu)
    load_after = _load()
    ref = json.loads(runs[ref_name][1].read_text()) if ref_name in runs else None
    ref_t = statistics.median(times[ref_name]) if ref_name in runs else None
    ref_c = statistics.median(cpus[ref_name]) if ref_name in runs else None
    print(f"\n[{scene}] {cfg['pairs']} pairs at {cfg['height']}x{cfg['width']}, "
          f"{cfg['segments per GT image']:.1f} segments per ground-truth image; whole process, median of "
          f"{args.repeats} ({env_note}; {load_before} before, {load_after} after):")
    print(f"{'tool':34s} {'wall s':>7s} {'runs (wall s)':>30s} {'x papi':>7s} {'CPU s':>7s} {'x papi':>7s} "
          f"{'max |diff|':>10s}")
    speedups = {}
    for name, (_, out) in runs.items():
        med, cpu = statistics.median(times[name]), statistics.median(cpus[name])
        speed = f"{ref_t / med:.1f}x" if ref_t else "-"
        cspeed = f"{ref_c / cpu:.1f}x" if ref_c else "-"
        if ref_t:
            speedups[name] = ref_t / med
        diff = "-"
        if ref is not None and name != ref_name:
            res = json.loads(out.read_text())
            if "per_class" in res and not isinstance(next(iter(res["per_class"])), str):
                res["per_class"] = {str(k): v for k, v in res["per_class"].items()}
            diff = f"{_max_diff(res, ref):.1e}"
        runs_s = " ".join(f"{x:.2f}" for x in times[name])
        print(f"{name:34s} {med:7.3f} {runs_s:>30s} {speed:>7s} {cpu:7.3f} {cspeed:>7s} {diff:>10s}")
    prof = profile(paths)
    total = sum(prof.values())
    print(f"in-process CPU profile, 1 worker, {cfg['pairs']} pairs ({total * 1e3:.0f} ms):")
    for k, v in prof.items():
        print(f"  {k:24s} {v * 1e3:8.1f} ms  {v / cfg['pairs'] * 1e3:6.2f} ms/pair  {100 * v / total:5.1f} %")
    return speedups


def startup(args: argparse.Namespace, paths: dict[str, Path]) -> None:
    """Fixed cost: python alone, the imports of the evaluation, and a whole ``hle evaluate pq`` of one pair."""
    one = paths["gt_json"].parent / "one_pair"
    one.mkdir(exist_ok=True)
    for key in ("gt_json", "pred_json"):
        full = json.loads(paths[key].read_text())
        full["annotations"] = full["annotations"][:1]
        (one / paths[key].name).write_text(json.dumps(full))
    one_cmd = [*_hle_command(args), "pq", "--gt-json", str(one / "gt.json"), "--pred-json", str(one / "pred.json"),
               "--gt-folder", str(paths["gt_folder"]), "--pred-folder", str(paths["pred_folder"]), "--workers", "1"]
    start = [sys.executable, "-c", "import cv2, hle_core.evaluation.pq_files, hle_core.evaluation.pq_tables"]
    bare = [sys.executable, "-c", "pass"]
    print("\nstart-up, median of 5 (wall / CPU ms): " + ", ".join(
        f"{what} {1e3 * r[0]:.0f} / {1e3 * statistics.median(r[2]):.0f}"
        for what, r in (("python alone", _time_process(bare, 5)),
                        ("+ numpy/cv2/hle_core.evaluation", _time_process(start, 5)),
                        ("hle evaluate pq of 1 pair", _time_process(one_cmd, 5)))))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from hle_core.allocator import keep_freed_memory

    print(f"memory allocator: {keep_freed_memory()}")   # as hle and the node do; HLE_KEEP_FREED_MEMORY=0: off
    tmp = None
    if args.data_dir is None:
        tmp = root = Path(tempfile.mkdtemp(prefix="bench_pq_"))
    else:
        root = args.data_dir
    try:
        summary = {}
        for scene in args.scenes:
            paths, cfg = _scene_data(args, scene, root)
            summary[scene] = (cfg, run_scene(args, scene, paths, cfg))
        startup(args, paths)
        print("\nspeed-up over panopticapi's single process (whole process, wall clock):")
        tools = sorted({name for _, sp in summary.values() for name in sp if not name.startswith("panopticapi")})
        print(f"{'scene':8s} {'pairs':>5s} {'size':>9s} {'seg/img':>7s} " + " ".join(f"{t:>30s}" for t in tools))
        for scene, (cfg, sp) in summary.items():
            cells = " ".join(f"{sp[t]:29.1f}x" if t in sp else f"{'-':>30s}" for t in tools)
            print(f"{scene:8s} {cfg['pairs']:5d} {cfg['height']:4d}x{cfg['width']:<4d} "
                  f"{cfg['segments per GT image']:7.1f} {cells}")
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
