"""What the node reports on ``/diagnostics``: rate, latency percentiles, dropped / rejected / failed frames, backend.

:class:`FrameStats` is thread-safe plain Python (the subscription callbacks and the inference thread both
update it); :func:`diagnostic_status` turns one :class:`StatsSnapshot` into a ``diagnostic_msgs`` status.

Counters (monotonic since start):
  * ``received``  frames that arrived on a subscription;
  * ``rejected``  frames refused before inference, per reason (bad encoding, step, size, ...);
  * ``dropped``   valid frames replaced by a newer one before the inference thread took them (the node is
    slower than the camera; expected, not an error);
  * ``failed``    frames whose processing raised, per exception type;
  * ``processed`` frames published on ``~/panoptic``.
Rates and latency percentiles are over the last ``window`` processed frames.
"""
from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from hle_core.bags.metrics import latency_percentiles

__all__ = ["FrameStats", "StatsSnapshot", "diagnostic_status", "diagnostic_array", "FAILURES_FOR_ERROR"]

#: This many failed frames in a row, none processed in between, make the status ERROR (the node cannot serve, e.g.
#: a model that refuses every frame) instead of WARN.
FAILURES_FOR_ERROR = 5


@dataclass
class StatsSnapshot:
    """Counters and windowed statistics at one instant."""

    received: int
    processed: int
    dropped: int
    rejected: dict[str, int]
    failed: dict[str, int]
    rate_hz: float                       # processed frames per second over the window
    latency_ms: dict[str, float]         # receive → publish, percentiles over the window
    stage_ms: dict[str, float] = field(default_factory=dict)   # mean per-stage times over the window
    failed_in_a_row: int = 0             # failed frames since the last processed one
    last_failure: str = ""               # what the last failed frame raised

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    @property
    def failed_total(self) -> int:
        return sum(self.failed.values())


class FrameStats:
    """Thread-safe frame counters plus a window of the last ``window`` processed frames."""

    def __init__(self, window: int = 300, clock: Callable[[], float] = time.monotonic) -> None:
        if window < 2:
            raise ValueError(f"window must be >= 2 frames, got {window}")
        self._lock = threading.Lock()
        self._clock = clock
        self._done_at: deque[float] = deque(maxlen=window)
        self._latency: deque[float] = deque(maxlen=window)
        self._stages: deque[Mapping[str, float]] = deque(maxlen=window)
        self.received = 0
        self.processed = 0
        self.dropped = 0
        self.rejected: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.failed_in_a_row = 0
        self.last_failure = ""

    def on_received(self) -> None:
        with self._lock:
            self.received += 1

    def on_dropped(self) -> None:
        with self._lock:
            self.dropped += 1

    def on_rejected(self, reason: str) -> None:
        with self._lock:
            self.rejected[reason] += 1

    def on_failed(self, reason: str, detail: str = "") -> None:
        with self._lock:
            self.failed[reason] += 1
            self.failed_in_a_row += 1
            self.last_failure = f"{reason}: {detail}" if detail else reason

    def on_processed(self, latency_ms: float, stages_ms: Mapping[str, float] | None = None) -> None:
        with self._lock:
            self.processed += 1
            self.failed_in_a_row = 0
            self._done_at.append(self._clock())
            self._latency.append(float(latency_ms))
            self._stages.append(dict(stages_ms or {}))

    def snapshot(self) -> StatsSnapshot:
        with self._lock:
            done = list(self._done_at)
            lat = list(self._latency)
            stages = list(self._stages)
            snap = StatsSnapshot(self.received, self.processed, self.dropped, dict(self.rejected),
                                 dict(self.failed), 0.0, {}, failed_in_a_row=self.failed_in_a_row,
                                 last_failure=self.last_failure)
        if len(done) >= 2 and done[-1] > done[0]:
            snap.rate_hz = (len(done) - 1) / (done[-1] - done[0])
        snap.latency_ms = latency_percentiles(lat)
        keys = sorted({k for s in stages for k in s})
        snap.stage_ms = {k: float(np.mean([s[k] for s in stages if k in s])) for k in keys}
        return snap


def _kv(key: str, value: object) -> KeyValue:
    if isinstance(value, float):
        value = f"{value:.3f}"
    return KeyValue(key=key, value=str(value))


def diagnostic_status(snap: StatsSnapshot, name: str, hardware_id: str, backend: str, state: str,
                      previous: StatsSnapshot | None = None) -> DiagnosticStatus:
    """One ``DiagnosticStatus`` for the node.

    Level: ERROR while active when the last :data:`FAILURES_FOR_ERROR` or more frames all failed (with the last
    failure as the message); WARN while the node is not active, or when frames were rejected or failed since
    ``previous``; OK otherwise (dropping frames because the camera is faster than inference is normal and only
    counted).
    """
    new_rejected = snap.rejected_total - (previous.rejected_total if previous else 0)
    new_failed = snap.failed_total - (previous.failed_total if previous else 0)
    if state != "active":
        level, message = DiagnosticStatus.WARN, f"{state}: not processing images"
    elif snap.failed_in_a_row >= FAILURES_FOR_ERROR:
        level = DiagnosticStatus.ERROR
        message = f"the last {snap.failed_in_a_row} frames all failed: {snap.last_failure}"[:500]
    elif new_rejected or new_failed:
        level = DiagnosticStatus.WARN
        message = f"{new_rejected} frame(s) rejected, {new_failed} failed since the last report"
    elif snap.processed == 0:
        level, message = DiagnosticStatus.OK, "active, waiting for images"
    else:
        level, message = DiagnosticStatus.OK, f"{snap.rate_hz:.1f} Hz, p50 latency {snap.latency_ms['p50']:.1f} ms"
    values = [_kv("state", state), _kv("backend", backend), _kv("received", snap.received),
              _kv("processed", snap.processed), _kv("dropped", snap.dropped),
              _kv("rejected", snap.rejected_total), _kv("failed", snap.failed_total),
              _kv("failed_in_a_row", snap.failed_in_a_row), _kv("rate_hz", snap.rate_hz)]
    values += [_kv(f"latency_{k}_ms", v) for k, v in snap.latency_ms.items()]
    values += [_kv(f"rejected.{k}", v) for k, v in sorted(snap.rejected.items())]
    values += [_kv(f"failed.{k}", v) for k, v in sorted(snap.failed.items())]
    values += [_kv(f"stage_{k}_ms", v) for k, v in snap.stage_ms.items()]
    return DiagnosticStatus(level=level, name=name, message=message, hardware_id=hardware_id, values=values)


def diagnostic_array(stamp: object, statuses: list[DiagnosticStatus]) -> DiagnosticArray:
    """Wrap ``statuses`` for ``/diagnostics``."""
    msg = DiagnosticArray()
    msg.header.stamp = stamp
    msg.status = statuses
    return msg
