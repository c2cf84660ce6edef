"""Fleet evaluation, ``hle bag-eval --bags`` (hle_core.bags.fleet): serial, process pool and Ray agree; a killed
worker's bag is retried and counted once; a corrupt bag is a row; a rerun recomputes only what is out of date.

Oracles: :func:`hle_core.bags.evaluate_bag` on one bag (a fleet of that bag, and of the bag twice under two
names, must give its PQ / STQ / VPQ exactly: summed statistics of identical bags have the same ratios, while
ID switches and frame counts double), and the serial executor for the others. The shipped model
(models/hle_street.pt, torch backend on the CPU, one thread per worker) gives non-trivial scores on the
synthetic bags. The Ray tests share one local 2-CPU Ray runtime (module fixture) and are marked slow.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("rosbags")

from hle_core.bags import evaluate_bag, write_synthetic_bag
from hle_core.bags.fleet import TEST_CRASH_ENV, FleetSettings, expand_bags, run_fleet
from hle_core.cli import main

MODEL = Path(__file__).resolve().parents[2] / "models" / "hle_street.pt"
IMG, GT = "/camera/image_raw", "/camera/panoptic_gt"
SETTINGS = FleetSettings(image_topic=IMG, gt_topic=GT, backend="torch", device="cpu", num_overlays=0, plots=False)
KEYS = ("PQ", "PQ_th", "PQ_st", "SQ", "RQ", "STQ", "AQ", "SQ_sem", "VPQ", "VPQ_things", "VPQ_stuff")
SPECS = ("a", "b", "c", "corrupt", "notabag")
FRAMES = ("frames_total", "frames_evaluated", "frames_rejected", "frames_scored", "bags_ok", "bags_failed")

pytestmark = pytest.mark.skipif(not MODEL.is_file(), reason=f"{MODEL} not present")


@pytest.fixture(scope="module")
def bags(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three good bags (one of two clips), a copy of the first under another name, a damaged MCAP file (magic
    bytes, then garbage: read as a bag with no message) and a file that is no bag at all."""
    d = tmp_path_factory.mktemp("fleet_bags")
    out = {}
    for name, seed, clips in (("a", 11, 2), ("b", 12, 1), ("c", 13, 1)):
        out[name] = d / f"{name}.mcap"
        write_synthetic_bag(out[name], num_clips=clips, frames=3, size=(64, 128), seed=seed, fps=20.0,
                            progress=False)
    out["a_copy"] = d / "copy" / "a.mcap"                              # same name, other folder: other key
    out["a_copy"].parent.mkdir()
    shutil.copy(out["a"], out["a_copy"])
    out["corrupt"] = d / "corrupt.mcap"
    out["corrupt"].write_bytes(b"\x89MCAP0\r\n" + b"garbage" * 50)
    out["notabag"] = d / "notabag.mcap"
    out["notabag"].write_text("not a bag\n")
    return out


@pytest.fixture(scope="module")
def serial(bags: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The serial (in-process) fleet run of a, b, c and the two bad files: the reference of the other executors."""
    return run_fleet([bags[k] for k in SPECS], MODEL, SETTINGS,
                     tmp_path_factory.mktemp("serial"), executor="serial", threads=1)


def same_fleet(got: dict, want: dict, tol: float = 1e-9) -> None:
    g, w = got["fleet"], want["fleet"]
    for k in KEYS:
        assert g[k] == pytest.approx(w[k], abs=tol), k
    for k in FRAMES + ("id_switches",):
        assert g[k] == w[k], k
    assert [(r["key"], r["status"], r.get("frames_total")) for r in got["bags"]] == \
        [(r["key"], r["status"], r.get("frames_total")) for r in want["bags"]]
    for a, b in zip(got["bags"], want["bags"]):
        assert (a.get("PQ") is None) == (b.get("PQ") is None)
        if a.get("PQ") is not None:
            assert a["PQ"] == pytest.approx(b["PQ"], abs=tol)


def no_tmp_files(out: Path) -> None:
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


# --- serial: the fleet of one bag is that bag --------------------------------------------------------------------
def test_fleet_sums_equal_single_bag(bags: dict[str, Path], serial: dict, tmp_path: Path) -> None:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)                         # as the fleet's workers run (threads=1)
    try:
        single = evaluate_bag(bags["a"], IMG, gt_topic=GT, model=MODEL, backend="torch", device="cpu",
                              num_overlays=0, plots=False, progress=False)
    finally:
        torch.set_num_threads(threads)
    assert single["frames_scored"] == 6 and single["sequences"] == 2 and single["PQ"] > 0.1
    want = {"PQ": single["PQ"], "PQ_th": single["pq"]["Things"]["pq"], "PQ_st": single["pq"]["Stuff"]["pq"],
            "STQ": single["stq"]["STQ"], "AQ": single["stq"]["AQ"], "SQ_sem": single["stq"]["SQ_sem"],
            "VPQ": single["vpq"]["VPQ"], "VPQ_things": single["vpq"]["VPQ_things"]}
    r = run_fleet([bags["a"], bags["a_copy"]], MODEL, SETTINGS, tmp_path / "twice", executor="serial", threads=1)
    f = r["fleet"]
    assert [b["key"].split("-")[0] for b in r["bags"]] == ["a", "a"] and r["bags"][0]["key"] != r["bags"][1]["key"]
    for k, v in want.items():                        # identical bags: summed statistics, the same ratios
        assert f[k] == pytest.approx(v, rel=1e-12, abs=1e-12), k
    assert (f["frames_total"], f["frames_scored"], f["id_switches"]) == (12, 12, 2 * single["id_switches"])
    assert f["latency_ms"]["total"]["n"] == 2 * (6 - 1)                # every frame after each bag's warm-up
    # the serial reference: bad bags are rows with their reason, the others have all frames accounted for
    rows = {b["key"].split("-")[0]: b for b in serial["bags"]}
    assert rows["notabag"]["status"] == "error" and "BagError" in rows["notabag"]["reason"]
    assert rows["corrupt"]["status"] == "ok" and rows["corrupt"]["frames_total"] == 0
    assert "malformed record" in rows["corrupt"]["read_error"]
    assert all(rows[k]["frames_evaluated"] + rows[k]["frames_rejected"] == rows[k]["frames_total"] for k in "abc")
    assert rows["a"]["PQ"] == pytest.approx(single["PQ"], abs=1e-12)
    assert serial["fleet"]["frames_total"] == 6 + 3 + 3
    assert (serial["fleet"]["bags_failed"], serial["fleet"]["bags_damaged"]) == (1, 1)
    # summed, not averaged: the fleet PQ is not the mean of the bags' PQ
    mean_pq = sum(rows[k]["PQ"] for k in "abc") / 3
    assert abs(serial["fleet"]["PQ"] - mean_pq) > 1e-6


# --- process pool: same numbers, a killed worker retried, a resumed run recomputes nothing up to date --------------
@pytest.mark.slow
def test_pool_killed_worker_corrupt_bag_and_resume(bags: dict[str, Path], serial: dict, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    crash = tmp_path / "crash"
    crash.mkdir()
    (crash / "b.mcap.crash").touch()                 # test hook: the worker evaluating b.mcap dies after a frame
    monkeypatch.setenv(TEST_CRASH_ENV, str(crash))
    out = tmp_path / "pool"
    specs = [bags[k] for k in SPECS]
    r = run_fleet(specs, MODEL, SETTINGS, out, executor="pool", workers=2, threads=1, max_retries=2)
    assert not (crash / "b.mcap.crash").exists()     # the hook fired: a worker died mid-bag
    same_fleet(r, serial)                            # ... and the totals are unchanged, b counted once
    rows = {b["key"].split("-")[0]: b for b in r["bags"]}
    assert rows["b"]["status"] == "ok" and rows["b"]["attempts"] == 2
    assert rows["notabag"]["status"] == "error" and "BagError" in rows["notabag"]["reason"]
    for k in "abc":                                  # per-bag outputs as `hle bag-eval --bag` writes them
        m = json.loads((out / rows[k]["report"]).with_name("metrics.json").read_text())
        assert m["PQ"] == pytest.approx(rows[k]["PQ"], abs=1e-12)
    assert (out / "fleet_report.md").is_file() and json.loads((out / "fleet.json").read_text())["fleet"]["PQ"] \
        == pytest.approx(serial["fleet"]["PQ"], abs=1e-12)
    no_tmp_files(out)
    monkeypatch.delenv(TEST_CRASH_ENV)

    # rerun: nothing recomputed (a bad bag's error is deterministic: kept too), same report
    again = run_fleet(specs, MODEL, SETTINGS, out, executor="serial", threads=1)
    assert (again["run"]["evaluated"], again["run"]["reused"]) == (0, 5)
    same_fleet(again, serial, tol=0.0)
    # a changed bag is recomputed, alone; a changed setting recomputes everything
    write_synthetic_bag(tmp_path / "c2.mcap", num_clips=1, frames=3, size=(64, 128), seed=99, progress=False)
    changed = tmp_path / "c.mcap"
    shutil.copy(bags["c"], changed)
    r1 = run_fleet([bags["a"], changed], MODEL, SETTINGS, out, executor="serial", threads=1)
    assert (r1["run"]["evaluated"], r1["run"]["reused"]) == (1, 1)
    shutil.copy(tmp_path / "c2.mcap", changed)
    r2 = run_fleet([bags["a"], changed], MODEL, SETTINGS, out, executor="serial", threads=1)
    assert (r2["run"]["evaluated"], r2["run"]["reused"]) == (1, 1)
    assert r2["bags"][1]["bag_sha256"] != r1["bags"][1]["bag_sha256"]
    other = FleetSettings(**{**SETTINGS.__dict__, "sequence_gap_s": 3.0})
    r3 = run_fleet([bags["a"], changed], MODEL, other, out, executor="serial", threads=1)
    assert (r3["run"]["evaluated"], r3["run"]["reused"]) == (2, 0)
    no_tmp_files(out)


@pytest.mark.slow
def test_pool_retries_are_bounded(bags: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """max_retries=0: the bag whose worker dies is a row ("worker died"), not reused by the next run."""
    crash = tmp_path / "crash"
    crash.mkdir()
    (crash / "b.mcap.crash").touch()
    monkeypatch.setenv(TEST_CRASH_ENV, str(crash))
    out = tmp_path / "out"
    r = run_fleet([bags["b"]], MODEL, SETTINGS, out, executor="pool", workers=1, threads=1, max_retries=0)
    row = r["bags"][0]
    assert row["status"] == "error" and "worker died 1 times" in row["reason"] and row["attempts"] == 1
    assert r["fleet"]["bags_failed"] == 1 and r["fleet"]["frames_total"] == 0
    monkeypatch.delenv(TEST_CRASH_ENV)
    again = run_fleet([bags["b"]], MODEL, SETTINGS, out, executor="serial", threads=1)
    assert (again["run"]["evaluated"], again["bags"][0]["status"], again["fleet"]["frames_total"]) == (1, "ok", 3)


def test_expand_bags_and_cli(bags: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = bags["a"].parent
    found = expand_bags([folder, str(folder / "*.mcap"), tmp_path / "none.mcap", str(tmp_path / "*.db3")])
    names = [(b.path.name, b.error is None) for b in found]        # folders recursively, duplicates once
    assert names == [("a.mcap", True), ("b.mcap", True), ("c.mcap", True), ("corrupt.mcap", True),
                     ("notabag.mcap", True), ("a.mcap", True), ("none.mcap", False), ("*.db3", False)]
    out = tmp_path / "cli"
    args = ["bag-eval", "--bags", str(bags["b"]), str(tmp_path / "none.mcap"), "--image-topic", IMG, "--gt-topic", GT,
            "--model", str(MODEL), "--backend", "torch", "--device", "cpu", "--out", str(out), "--serial",
            "--threads", "1", "--overlays", "0"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "bags: 2 (1 read, 1 failed" in text and "not evaluated" in text and "not found" in text
    report = (out / "fleet_report.md").read_text()
    assert "| b.mcap" in report or "[b.mcap]" in report
    assert (out / "fleet_pq.png").is_file()
    assert main(args[:-2] + ["--pred-bag", str(bags["b"])]) == 2                # one --bag only
    assert main(["bag-eval", "--bag", str(bags["b"]), "--image-topic", IMG, "--model", str(MODEL), "--out",
                 str(tmp_path / "x"), "--ray"]) == 2                             # fleet options need --bags


def test_latency_histograms_merge_and_match_exact_percentiles() -> None:
    import numpy as np

    from hle_core.bags.fleet_report import _merge_histograms, histogram_percentiles, latency_histogram
    from hle_core.bags.metrics import stage_latency_percentiles

    rng = np.random.default_rng(0)
    parts = [[{"total": float(v), "infer": float(v) / 2} for v in rng.lognormal(3, 0.7, n)] for n in (50, 300, 7)]
    merged: dict = {}
    for part in parts:
        _merge_histograms(merged, latency_histogram(part))
    whole = sum(parts, [])
    assert merged == {k: {**v, "sum": pytest.approx(v["sum"])} for k, v in latency_histogram(whole).items()}
    got, exact = histogram_percentiles(merged), stage_latency_percentiles(whole)
    for stage in ("total", "infer"):
        assert got[stage]["n"] == exact[stage]["n"] == 357 and got[stage]["max"] == exact[stage]["max"]
        assert got[stage]["mean"] == pytest.approx(exact[stage]["mean"], rel=1e-12)
        for q in ("p50", "p90", "p99"):             # 1 % bins; numpy's percentile interpolates between ranks
            assert got[stage][q] == pytest.approx(exact[stage][q], rel=0.02)


# --- Ray: a 2-CPU local runtime, one per module ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_runtime():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_ray_matches_serial_and_retries_killed_worker(ray_runtime, bags: dict[str, Path], serial: dict,
                                                      tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "ray"
    specs = [bags[k] for k in SPECS]
    r = run_fleet(specs, MODEL, SETTINGS, out, executor="ray", workers=2, threads=1, max_retries=2)
    assert r["run"]["executor"] == "ray" and r["run"]["ray_cluster_cpus"] == 2
    same_fleet(r, serial)
    # a Ray worker killed mid-bag: Ray reruns the task (max_retries); the bag is counted once
    key_b = next(b["key"] for b in r["bags"] if b["key"].startswith("b-"))
    (out / "bags" / key_b / "result.json").unlink()
    crash = tmp_path / "crash"
    crash.mkdir()
    (crash / "b.mcap.crash").touch()
    monkeypatch.setenv(TEST_CRASH_ENV, str(crash))
    again = run_fleet(specs, MODEL, SETTINGS, out, executor="ray", workers=2, threads=1, max_retries=2)
    assert not (crash / "b.mcap.crash").exists()
    assert (again["run"]["evaluated"], again["run"]["reused"]) == (1, 4)
    same_fleet(again, serial)
    no_tmp_files(out)
