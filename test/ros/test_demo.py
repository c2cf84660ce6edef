"""``make demo`` (hle_ros.demo): the parts that need no node process. The whole demo is too slow for the suite."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from hle_ros import demo

ROOT = Path(__file__).resolve().parents[2]

FULL = {
    "frames_evaluated": 78, "frames_total": 80,
    "pq": {"All": {"pq": 0.5123}, "Things": {"pq": 0.25}, "Stuff": {"pq": 0.75}},
    "stq": {"STQ": 0.4, "AQ": 0.3}, "vpq": {"VPQ": 0.45}, "id_switches": 3,
    "embedding_stability": {"mean_same_object_distance": 0.0124, "mean_nearest_other_distance": 0.5},
    "latency_ms": {"total": {"p50": 41.6, "p90": 55.2}},
}


def cells(table: str, row: int) -> list[str]:
    line = table.splitlines()[2 + row]
    return [c.strip() for c in line.strip().strip("|").split("|")]


def test_summary_table_renders_numbers_and_dashes_for_missing_metrics() -> None:
    not_scored = {"frames_evaluated": 0, "frames_total": 80, "not_scored": "no frame had valid ground truth"}
    nan_and_none = {"frames_evaluated": 5, "frames_total": 5,
                    "pq": {"All": {"pq": float("nan")}, "Things": None, "Stuff": {"pq": None}},
                    "stq": {"STQ": None, "AQ": float("nan")}, "vpq": None, "id_switches": None,
                    "embedding_stability": {"mean_same_object_distance": float("nan")}, "latency_ms": {"total": {}}}
    table = demo.summary_table({"full": FULL, "not scored": not_scored, "spoilt": nan_and_none})
    head = cells(table, -2)
    assert len(table.splitlines()) == 5 and head[0] == "run" and len(head) == 11
    assert cells(table, 0) == ["full", "78/80", "51.2", "25.0", "75.0", "40.0", "30.0", "45.0", "3",
                               "0.012 / 0.500", "42 / 55"]
    for row, frames in ((1, "0/80"), (2, "5/5")):
        c = cells(table, row)
        assert c[1] == frames and c[2:9] == ["-"] * 7 and c[9] == "- / -" and c[10] == "- / -"
    assert "nan" not in table.lower() and "None" not in table


def test_ensure_model_returns_an_existing_checkpoint_unchanged(tmp_path: Path) -> None:
    model = tmp_path / "model.pt"
    model.write_bytes(b"not read")
    out = tmp_path / "out"
    assert demo.ensure_model(model, tmp_path / "no_recipe.yaml", out) == model
    assert not out.exists()                                  # nothing trained, nothing written


def test_demo_help() -> None:
    proc = subprocess.run([sys.executable, "-m", "hle_ros.demo", "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    for option in ("--out", "--model", "--backend", "--clips", "--frames", "--rate"):
        assert option in proc.stdout
