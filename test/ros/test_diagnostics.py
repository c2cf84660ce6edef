"""Frame statistics and the DiagnosticStatus built from them."""
from __future__ import annotations

import math
import threading

import pytest

pytest.importorskip("diagnostic_msgs.msg")
from diagnostic_msgs.msg import DiagnosticStatus

from hle_core.bags.metrics import latency_percentiles
from hle_ros.diagnostics import FrameStats, diagnostic_status


def test_percentiles_against_hand_computed_ranks() -> None:
    # 1..101: with linear interpolation on rank, p-th percentile of 1..101 is exactly 1 + p
    got = latency_percentiles(range(1, 102))
    assert got == {"p50": 51.0, "p90": 91.0, "p99": 100.0, "max": 101.0}
    assert all(math.isnan(v) for v in latency_percentiles([]).values())


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_rate_and_window() -> None:
    clock = FakeClock()
    stats = FrameStats(window=5, clock=clock)
    for i in range(20):                      # 20 frames, 0.1 s apart, latency = i ms
        clock.t = i * 0.1
        stats.on_processed(float(i), {"infer": 2.0 * i})
    snap = stats.snapshot()
    assert snap.processed == 20
    assert snap.rate_hz == pytest.approx(10.0)
    assert snap.latency_ms["max"] == 19.0 and snap.latency_ms["p50"] == 17.0   # window = frames 15..19
    assert snap.stage_ms["infer"] == pytest.approx(34.0)
    with pytest.raises(ValueError, match="window must be >= 2 frames, got 1"):
        FrameStats(window=1)


def test_counters_are_exact_under_threads() -> None:
    stats = FrameStats()

    def hammer() -> None:
        for _ in range(1000):
            stats.on_received()
            stats.on_rejected("step")
            stats.on_dropped()

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    snap = stats.snapshot()
    assert (snap.received, snap.dropped, snap.rejected) == (4000, 4000, {"step": 4000})


def values(status: DiagnosticStatus) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


def test_status_levels_and_values() -> None:
    stats = FrameStats()
    idle = diagnostic_status(stats.snapshot(), "n: panoptic", "n", "none", "inactive")
    assert idle.level == DiagnosticStatus.WARN and "inactive" in idle.message
    stats.on_received()
    stats.on_processed(12.0, {"infer": 10.0})
    first = stats.snapshot()
    ok = diagnostic_status(first, "n: panoptic", "n", "torch on cpu", "active")
    assert ok.level == DiagnosticStatus.OK
    v = values(ok)
    assert v["backend"] == "torch on cpu" and v["processed"] == "1" and v["rejected"] == "0"
    stats.on_rejected("encoding")
    stats.on_rejected("encoding")
    stats.on_rejected("too_large")
    stats.on_failed("RuntimeError")
    warn = diagnostic_status(stats.snapshot(), "n: panoptic", "n", "torch on cpu", "active", previous=first)
    assert warn.level == DiagnosticStatus.WARN
    assert "3 frame(s) rejected, 1 failed" in warn.message
    v = values(warn)
    assert (v["rejected.encoding"], v["rejected.too_large"], v["failed.RuntimeError"]) == ("2", "1", "1")
    again = stats.snapshot()
    calm = diagnostic_status(again, "n: panoptic", "n", "torch on cpu", "active", previous=again)
    assert calm.level == DiagnosticStatus.OK            # nothing new since the last report
