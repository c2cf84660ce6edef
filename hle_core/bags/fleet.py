"""Fleet evaluation: ``hle bag-eval --bags``: many bags, one model, one report; serial, a process pool or Ray.

Each bag is evaluated by :func:`hle_core.bags.evaluate_bag` exactly as ``hle bag-eval --bag`` does (its
``metrics.json`` / ``report.md`` / plots land in ``OUT/bags/<key>/``) and returns its *summable statistics*
(PQ's per-category TP / FP / FN / ΣIoU, STQ's association numerator Σ AQ·#tubes, tube count and semantic
confusion, VPQ's per-window-size sums, ID switches, a log-spaced latency histogram per stage). The fleet figures
(:mod:`hle_core.bags.fleet_report`) are computed from the sums over all frames of all bags, never by averaging
per-bag scores.

Executors (the same task function, :func:`evaluate_task`, in all three):

* ``serial``: in this process, one bag after the other.
* ``pool`` (default): :class:`concurrent.futures.ProcessPoolExecutor` (spawn) sized to the cores, torch
  threads per worker = cores // workers; one pipeline (model) per worker process, built on its first bag and
  reused. When a worker dies (``BrokenProcessPool``), the bags in progress at that moment (each worker
  reports the bag it starts through a queue) are charged an attempt and retried up to ``max_retries`` times in
  a fresh pool; finished bags keep their result, bags not yet started are resubmitted without an attempt.
* ``ray``: one Ray task per bag (``num_cpus=1``, ``max_retries``: Ray reruns the task of a dead worker;
  exceptions are caught inside the task and returned, so they are not retried). ``--ray`` starts a local
  runtime (or uses the one already initialised in this process), ``--ray-address`` joins a cluster. The model
  file goes into the object store once (``ray.put``); each worker process caches it on its node's disk under
  its sha256 and builds its pipeline once. Bags are read by path: on a cluster they must be on storage every
  node can read. Workers return the per-bag files (a few hundred kB) and the driver writes them, so a worker
  needs no write access and a killed one leaves nothing half-written.

Bags are summed in the fleet's order whatever the order they finish in, and a bag's result does not depend on
which worker ran it (the pipeline's tracker is reset per sequence), so the executors agree to the last bit when
their workers run the same number of threads (``--threads``; the float reductions of torch / onnxruntime
depend on it, serial defaults to all cores, the pool and Ray to cores // workers).

Results are gathered in the driver as they complete, keyed by bag (a retried bag is stored once). Each bag's
``result.json`` is written atomically (tmp file in the same folder, ``os.replace``) after its report files;
rerunning the same command skips a bag whose ``result.json`` holds the same bag sha256, model sha256 and
settings hash, and recomputes the others. A bag that cannot be read is a row with its reason (and is not
retried: the error is deterministic), never the end of the run.

Test hook (tests only): with ``HLE_FLEET_TEST_CRASH_DIR`` set in the driver's environment, a worker that
starts a bag named ``X`` while the file ``<dir>/X.crash`` exists removes the file and ``os._exit`` s after the
bag's first frame, i.e. its worker dies mid-bag once.
"""
from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ..atomic_io import atomic_write_bytes, file_sha256, update_from_file

__all__ = ["FleetSettings", "FleetBag", "expand_bags", "bag_fingerprint", "file_sha256", "evaluate_task",
           "run_fleet", "EXECUTORS", "TEST_CRASH_ENV", "RESULT_FILE"]

EXECUTORS = ("serial", "pool", "ray")
#: Environment variable of the killed-worker test hook (see the module docstring). Tests only.
TEST_CRASH_ENV = "HLE_FLEET_TEST_CRASH_DIR"
#: Per-bag result, written last and atomically: its presence (with matching hashes) means the bag is done.
RESULT_FILE = "result.json"
BAG_SUFFIXES = (".mcap", ".db3")


@dataclass(frozen=True)
class FleetSettings:
    """Everything besides the bag and the model that decides a bag's result (hashed for resuming)."""

    image_topic: str
    gt_topic: str | None = None
    backend: str = "auto"
    device: str = "auto"
    input_size: tuple[int, int] | None = None
    resize: str = "letterbox"
    tracking: bool = True
    tracker: dict[str, Any] | None = None        # TrackerConfig fields; None: the node's default
    sequence_gap_s: float = 2.0
    warmup: int = 1
    num_overlays: int = 6
    plots: bool = True

    def canonical(self) -> str:
        """Canonical JSON (sorted keys, no spaces): the input of :meth:`digest`."""
        d = asdict(self)
        d["input_size"] = list(self.input_size) if self.input_size is not None else None
        return json.dumps(d, sort_keys=True, separators=(",", ":"))

    def digest(self) -> str:
        return hashlib.sha256(self.canonical().encode()).hexdigest()


@dataclass
class FleetBag:
    """One bag of the fleet: its path, output key and (once hashed) fingerprint."""

    path: Path
    key: str                                     # folder name under OUT/bags/
    fingerprint: dict[str, Any] | None = None    # {"sha256", "size", "mtime_ns"}; None: not hashable (reason)
    error: str | None = None


# --- bags and hashes ----------------------------------------------------------------------------------------
def _is_bag_dir(p: Path) -> bool:
    return p.is_dir() and (p / "metadata.yaml").is_file()


def _bags_under(folder: Path) -> list[Path]:
    """Bags inside a folder that is not itself a bag: ``*.mcap`` / ``*.db3`` files outside bag directories and
    rosbag2 directories (``metadata.yaml``), recursively."""
    found: list[Path] = []
    for root, dirs, files in os.walk(folder):
        r = Path(root)
        if (r / "metadata.yaml").is_file() and r != folder:
            found.append(r)
            dirs[:] = []
            continue
        dirs.sort()
        found += [r / f for f in sorted(files) if f.endswith(BAG_SUFFIXES)]
    return found


def expand_bags(specs: Sequence[str | Path]) -> list[FleetBag]:
    """Files, bag directories, folders of bags and globs → the fleet's bags, in the order given (each folder /
    glob sorted), duplicates (same resolved path) dropped. A path that does not exist becomes a bag with an
    ``error`` (a row of the report), a glob matching nothing too.

    Output keys are ``<name>-<8 hex of the resolved path>``: unique, and stable while the bags stay put.
    """
    paths: list[tuple[Path, str | None]] = []
    for spec in specs:
        s = str(spec)
        p = Path(s)
        if p.is_file() or _is_bag_dir(p):
            paths.append((p, None))
        elif p.is_dir():
            paths += [(q, None) for q in _bags_under(p)]
        elif glob.has_magic(s):
            hits = sorted(glob.glob(s, recursive=True))
            if not hits:
                paths.append((p, f"no bag matches the pattern {s!r}"))
            for h in hits:
                q = Path(h)
                if q.is_file() and q.suffix in BAG_SUFFIXES or _is_bag_dir(q):
                    paths.append((q, None))
                elif q.is_dir():
                    paths += [(b, None) for b in _bags_under(q)]
        else:
            paths.append((p, f"not found: {s}"))
    seen: set[str] = set()
    out: list[FleetBag] = []
    for p, err in paths:
        resolved = str(p.resolve())
        if resolved in seen:
            continue
        seen.add(resolved)
        name = p.name[:-len(p.suffix)] if p.suffix in BAG_SUFFIXES else p.name
        out.append(FleetBag(p, f"{name or 'bag'}-{hashlib.sha256(resolved.encode()).hexdigest()[:8]}", error=err))
    return out


def bag_fingerprint(path: str | Path) -> dict[str, Any]:
    """``{"sha256", "size", "mtime_ns"}`` of a bag file, or of a bag directory (sha256 over the sorted relative
    paths and bytes of its files; size summed, newest mtime)."""
    p = Path(path)
    if p.is_file():
        st = p.stat()
        return {"sha256": file_sha256(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    if not p.is_dir():
        raise FileNotFoundError(f"bag not found: {p}")
    h, size, mtime = hashlib.sha256(), 0, 0
    for f in sorted(q for q in p.rglob("*") if q.is_file()):
        st = f.stat()
        size, mtime = size + st.st_size, max(mtime, st.st_mtime_ns)
        h.update(str(f.relative_to(p)).encode() + b"\0")
        update_from_file(h, f)
        h.update(b"\0")
    return {"sha256": h.hexdigest(), "size": size, "mtime_ns": mtime}


# --- the task (runs in a worker: this process, a pool process or a Ray worker) -------------------------------
_WORKER: dict[str, Any] = {"key": None, "pipeline": None, "threads": None, "started": None}


def _init_pool_worker(threads: int, started: Any) -> None:
    """Pool initializer: torch threads, and the queue the worker reports each bag it starts to."""
    _WORKER["threads"], _WORKER["started"] = threads, started


def _pipeline_for(model: str, model_sha: str, settings: FleetSettings, threads: int | None, log: Any) -> Any:
    """This worker's pipeline for (model, settings), built on the first bag and reused (one model per worker);
    ``threads`` also bounds onnxruntime's intra-op pool (torch's is set by the caller)."""
    key = (model_sha, settings.canonical(), threads)
    if _WORKER["key"] != key:
        from ..runtime import build_pipeline
        from ..tracking import TrackerConfig

        if _WORKER["pipeline"] is not None:
            _WORKER["pipeline"].close()
            _WORKER["pipeline"] = None
        tracker = (TrackerConfig(**settings.tracker) if settings.tracker is not None else TrackerConfig()) \
            if settings.tracking else None
        _WORKER["pipeline"] = build_pipeline(model, settings.backend, device=settings.device,
                                             input_size=settings.input_size, resize=settings.resize,
                                             tracker=tracker, logger=log, intra_op_threads=int(threads or 0))
        _WORKER["key"] = key
    return _WORKER["pipeline"]


def _model_from_blob(blob: bytes, model_sha: str, suffix: str) -> str:
    """A Ray worker's local copy of the model (object store → node disk, once per node and model)."""
    path = Path(tempfile.gettempdir()) / "hle_fleet_models" / f"{model_sha}{suffix}"
    if not path.is_file():
        atomic_write_bytes(path, blob)
    return str(path)


def evaluate_task(task: dict[str, Any], model_blob: bytes | None = None) -> dict[str, Any]:
    """Evaluate one bag; never raises for a bad bag (``{"status": "error", "reason"}``).

    ``task``: ``bag``, ``key``, ``model`` (path), ``model_sha256``, ``settings`` (FleetSettings fields),
    ``threads`` (torch threads, None: leave), ``crash_dir`` (test hook). ``model_blob``: the model's bytes
    (Ray: from the object store) when the path is not readable here.
    Returns ``{"status": "ok", "metrics": <bag metrics without per_frame>, "sums": ..., "files": {name: bytes},
    "pid", "host", "elapsed_s"}``.
    """
    import socket

    started = time.time()
    log = logging.getLogger("hle_core.bags.fleet")
    if _WORKER["started"] is not None:
        _WORKER["started"].put((os.getpid(), task["index"]))
    threads = task.get("threads") or _WORKER["threads"]
    settings = FleetSettings(**{**task["settings"], "input_size": tuple(task["settings"]["input_size"])
                                if task["settings"].get("input_size") else None})
    on_frame = None
    crash_dir = task.get("crash_dir")
    if crash_dir:                                                   # test hook: die mid-bag, once per armed bag
        arm = Path(crash_dir) / f"{Path(task['bag']).name}.crash"

        def on_frame(*_: Any) -> None:
            try:
                arm.unlink()
            except FileNotFoundError:
                return
            os._exit(17)
    out: dict[str, Any] = {"pid": os.getpid(), "host": socket.gethostname()}
    try:
        import torch

        if threads:
            torch.set_num_threads(int(threads))
        from .evaluate import evaluate_bag

        model = task["model"]
        if model_blob is not None and not (Path(model).is_file() and file_sha256(model) == task["model_sha256"]):
            model = _model_from_blob(model_blob, task["model_sha256"], Path(model).suffix)
        pipeline = _pipeline_for(model, task["model_sha256"], settings, threads, log)
        sums: dict[str, Any] = {}
        with tempfile.TemporaryDirectory(prefix="hle_fleet_") as tmp:
            metrics = evaluate_bag(task["bag"], settings.image_topic, gt_topic=settings.gt_topic, model=model,
                                   pipeline=pipeline, out_dir=tmp, sequence_gap_s=settings.sequence_gap_s,
                                   warmup=settings.warmup, num_overlays=settings.num_overlays,
                                   plots=settings.plots, progress=False, logger=log, on_frame=on_frame, sums=sums)
            files = {str(f.relative_to(tmp)): f.read_bytes() for f in sorted(Path(tmp).rglob("*")) if f.is_file()}
        metrics.pop("per_frame", None)
        from .fleet_report import latency_histogram

        sums["latency"] = latency_histogram(sums["latency"])       # summable, and small however long the bag
        out.update(status="ok", metrics=metrics, sums=sums, files=files)
    except Exception as exc:                    # a bad bag is a row of the report, never the end of the run
        out.update(status="error", reason=f"{type(exc).__name__}: {exc}")
    out["elapsed_s"] = time.time() - started
    return out


# --- executors ------------------------------------------------------------------------------------------------
def _run_serial(tasks: list[dict], on_result: Callable[[int, dict], None], **_: Any) -> None:
    import torch

    threads = torch.get_num_threads()
    try:
        for t in tasks:
            on_result(t["index"], {**evaluate_task(t), "attempts": 1})
    finally:
        torch.set_num_threads(threads)         # this process's own setting, as it was


def _run_pool(tasks: list[dict], on_result: Callable[[int, dict], None], *, workers: int, threads: int,
              max_retries: int, log: Any, **_: Any) -> None:
    """Process pool; a broken pool only charges an attempt to the bags a worker had started and not finished."""
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    ctx = mp.get_context("spawn")               # the driver may hold torch / OpenMP state: never fork it
    pending = {t["index"]: t for t in tasks}
    attempts = {i: 0 for i in pending}
    while pending:
        started = ctx.SimpleQueue()              # written synchronously: a worker's report survives its os._exit
        running: set[int] = set()
        broken = False
        with ProcessPoolExecutor(max_workers=min(workers, len(pending)), mp_context=ctx,
                                 initializer=_init_pool_worker, initargs=(threads, started)) as pool:
            futures = {pool.submit(evaluate_task, t): i for i, t in pending.items()}
            todo = set(futures)
            while todo:
                done, todo = wait(todo, return_when=FIRST_COMPLETED)
                for fut in done:
                    i = futures[fut]
                    try:
                        res = fut.result()
                    except BrokenProcessPool:
                        broken = True
                        continue
                    pending.pop(i, None)
                    on_result(i, {**res, "attempts": attempts[i] + 1})
        if broken:
            while not started.empty():
                running.add(started.get()[1])
            suspects = running & set(pending) or set(pending)   # in progress when the pool broke
            for i in sorted(suspects):
                attempts[i] += 1
                log.warning(f"worker died while evaluating {pending[i]['bag']} (attempt {attempts[i]} of "
                            f"{max_retries + 1})")
                if attempts[i] > max_retries:
                    t = pending.pop(i)
                    on_result(i, {"status": "error", "retryable": True, "attempts": attempts[i],
                                  "reason": f"worker died {attempts[i]} times evaluating {t['bag']}"})
        started.close()


def _run_ray(tasks: list[dict], on_result: Callable[[int, dict], None], *, workers: int, threads: int,
             max_retries: int, ray_address: str | None, gpus_per_task: float, log: Any, **_: Any) -> dict[str, Any]:
    """One Ray task per bag; Ray reruns the task of a dead worker (``max_retries``)."""
    try:
        import ray
    except ImportError as exc:
        from ..config import ConfigError

        raise ConfigError("--ray needs Ray: pip install .[fleet] (make setup installs it)") from exc
    info: dict[str, Any] = {}
    own = not ray.is_initialized()
    t0 = time.time()
    if own:
        if ray_address:
            ray.init(address=ray_address, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    info["ray_init_s"] = time.time() - t0
    info["ray_cluster_cpus"] = ray.cluster_resources().get("CPU")
    try:
        fn = ray.remote(num_cpus=1, num_gpus=gpus_per_task, max_retries=max_retries)(evaluate_task)
        blob = ray.put(Path(tasks[0]["model"]).read_bytes()) if tasks else None   # weights: once in the store
        refs = {fn.remote({**t, "threads": threads}, blob): t["index"] for t in tasks}
        todo = list(refs)
        while todo:
            done, todo = ray.wait(todo, num_returns=1)
            i = refs[done[0]]
            try:
                res = ray.get(done[0])
            except Exception as exc:            # retries used up (WorkerCrashedError ...) or the node was lost
                res = {"status": "error", "retryable": True,
                       "reason": f"Ray task failed after {max_retries} retries: {type(exc).__name__}: {exc}"}
            on_result(i, res)
    finally:
        if own:
            ray.shutdown()
    return info


# --- the driver -------------------------------------------------------------------------------------------------
@dataclass
class _Run:
    out: Path
    model_sha: str
    settings_sha: str
    rows: dict[int, dict[str, Any]] = field(default_factory=dict)


def run_fleet(specs: Sequence[str | Path], model: str | Path, settings: FleetSettings, out_dir: str | Path, *,
              executor: str = "pool", workers: int | None = None, threads: int | None = None,
              max_retries: int = 2, ray_address: str | None = None, gpus_per_task: float = 0.0,
              recompute: bool = False, logger: Any = None) -> dict[str, Any]:
    """Evaluate every bag of ``specs`` with ``model`` and ``settings``; write ``OUT/bags/<key>/`` per bag and the
    fleet report (``OUT/fleet.json``, ``OUT/fleet_report.md``, ``OUT/fleet_pq.png``).

    Args:
        specs: bag files, bag directories, folders of bags, globs (:func:`expand_bags`).
        executor: ``serial`` | ``pool`` | ``ray`` (see the module docstring).
        workers: pool size / CPUs of a local Ray runtime (default: the cores); threads: torch threads per worker
            (default: cores // workers, at least 1).
        max_retries: reruns of a bag whose worker died (not of a bag that raised: that error is its row).
        gpus_per_task: Ray only: GPUs a task reserves (e.g. 0.25: four workers share a GPU; Ray sets
            ``CUDA_VISIBLE_DEVICES``); 0 for CPU workers.
        recompute: ignore existing results (default: skip bags whose result matches bag, model and settings).
    Returns:
        the fleet dict (also ``fleet.json``): ``fleet`` (summed metrics), ``bags`` (rows), ``run`` (executor,
        timing, how many bags were computed / reused).
    """
    from .fleet_report import aggregate, write_fleet_report

    log = logger if logger is not None else logging.getLogger("hle_core.bags.fleet")
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {EXECUTORS}, got {executor!r}")
    model = Path(model)
    if not model.is_file():
        raise FileNotFoundError(f"model file not found: {model}")
    if max_retries < 0 or gpus_per_task < 0:
        raise ValueError(f"max_retries and gpus_per_task must be >= 0, got {max_retries} and {gpus_per_task}")
    t_start = time.time()
    cores = os.cpu_count() or 1
    workers = max(1, workers or cores)
    threads = threads or max(1, cores // (1 if executor == "serial" else workers))
    out = Path(out_dir)
    bags = expand_bags(specs)
    if not bags:
        from ..config import ConfigError

        raise ConfigError(f"no bag found in {list(map(str, specs))}")
    run = _Run(out, file_sha256(model), settings.digest())
    crash_dir = os.environ.get(TEST_CRASH_ENV) or None

    tasks, reused = [], 0
    for i, b in enumerate(bags):
        if b.error is None:
            try:
                b.fingerprint = bag_fingerprint(b.path)
            except OSError as exc:
                b.error = f"{type(exc).__name__}: {exc}"
        if b.error is not None:
            run.rows[i] = {"index": i, "bag": str(b.path), "key": b.key, "status": "error", "reason": b.error}
            continue
        prev = None if recompute else _load_result(out / "bags" / b.key / RESULT_FILE)
        if prev is not None and prev.get("bag_sha256") == b.fingerprint["sha256"] \
                and prev.get("model_sha256") == run.model_sha and prev.get("settings_sha256") == run.settings_sha \
                and not prev.get("retryable"):
            run.rows[i] = {**prev, "index": i, "reused": True}
            reused += 1
            continue
        tasks.append({"index": i, "bag": str(b.path), "key": b.key, "model": str(model),
                      "model_sha256": run.model_sha, "settings": asdict(settings),
                      "threads": threads, "crash_dir": crash_dir})
    log.info(f"fleet: {len(bags)} bags, {reused} up to date, {len(tasks)} to evaluate ({executor})")

    def on_result(i: int, res: dict[str, Any]) -> None:
        if i in run.rows:                       # a retried bag is stored once
            log.warning(f"bag {bags[i].path}: second result ignored")
            return
        run.rows[i] = _store_result(run, bags[i], i, res)

    info: dict[str, Any] = {}
    if tasks:
        if executor == "serial":
            _run_serial(tasks, on_result)
        elif executor == "pool":
            _run_pool(tasks, on_result, workers=workers, threads=threads, max_retries=max_retries, log=log)
        else:
            info = _run_ray(tasks, on_result, workers=workers, threads=threads, max_retries=max_retries,
                            ray_address=ray_address, gpus_per_task=gpus_per_task, log=log) or {}
    rows = [run.rows[i] for i in range(len(bags))]
    fleet = aggregate(rows)
    result = {
        "model": str(model), "model_sha256": run.model_sha, "settings": json.loads(settings.canonical()),
        "settings_sha256": run.settings_sha, "fleet": fleet,
        "bags": [{k: v for k, v in r.items() if k != "sums"} for r in rows],
        "run": {"executor": executor, "workers": 1 if executor == "serial" else workers, "threads": threads,
                "max_retries": max_retries, "ray_address": ray_address, "gpus_per_task": gpus_per_task,
                "bags": len(bags),
                "evaluated": len(tasks), "reused": reused, "elapsed_s": time.time() - t_start, **info},
    }
    result["files"] = write_fleet_report(result, rows, out)
    return result


def _load_result(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _store_result(run: _Run, bag: FleetBag, i: int, res: dict[str, Any]) -> dict[str, Any]:
    """Write a bag's files, then its ``result.json`` (atomically, last); return its row (with ``sums``)."""
    row: dict[str, Any] = {"index": i, "bag": str(bag.path), "key": bag.key, "status": res["status"],
                           "bag_sha256": bag.fingerprint["sha256"] if bag.fingerprint else None,
                           "model_sha256": run.model_sha, "settings_sha256": run.settings_sha,
                           "elapsed_s": res.get("elapsed_s"), "pid": res.get("pid"), "host": res.get("host"),
                           "attempts": res.get("attempts")}       # None: not known (Ray retries on its own)
    folder = run.out / "bags" / bag.key
    if res["status"] == "ok":
        m = res["metrics"]
        for name, data in res["files"].items():
            atomic_write_bytes(folder / name, data)
        row.update({k: m.get(k) for k in ("frames_total", "frames_evaluated", "frames_rejected", "frames_scored",
                                          "rejected_by_reason", "sequences", "read_error", "PQ")},
                   sums=res["sums"], report=str(Path("bags") / bag.key / "report.md"))
    else:
        row.update(reason=res.get("reason"), retryable=bool(res.get("retryable")))
    atomic_write_bytes(folder / RESULT_FILE, json.dumps(row).encode())
    return row
