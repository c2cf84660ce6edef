"""The latest-frame worker: newest frame only, submit never blocks, errors do not kill the thread."""
from __future__ import annotations

import threading
import time

import pytest

from hle_ros.worker import InferenceWorker, LatestSlot


def test_slot_keeps_only_the_newest() -> None:
    slot: LatestSlot[int] = LatestSlot()
    assert slot.put(1) is None
    assert slot.put(2) == 1                 # 1 replaced, never to be processed
    assert slot.pending
    assert slot.take(0) == 2
    assert slot.take(0.01) is None          # empty: times out
    slot.put(3)
    slot.close()
    assert slot.take() is None              # closed: no blocking, no item


def test_worker_processes_first_and_newest_and_counts_drops() -> None:
    gate, started = threading.Event(), threading.Event()
    processed, dropped, errors = [], [], []

    def process(item: int) -> None:
        started.set()
        gate.wait(5)
        processed.append(item)

    w = InferenceWorker(process, lambda i, e: errors.append(e), dropped.append)
    w.start()
    w.submit(1)
    assert started.wait(5)                  # 1 is being processed (blocked on the gate)
    t0 = time.perf_counter()
    for i in range(2, 1002):
        w.submit(i)                         # the worker is busy: each replaces the previous
    submit_s = time.perf_counter() - t0
    gate.set()
    deadline = time.time() + 5
    while len(processed) < 2 and time.time() < deadline:
        time.sleep(0.005)
    assert w.stop(1.0)
    assert processed == [1, 1001]
    assert dropped == list(range(2, 1001))
    assert errors == []
    assert submit_s < 0.5                   # 1000 submits while busy: never waited for the worker


def test_worker_survives_errors() -> None:
    done, errors = [], []

    def process(item: int) -> None:
        if item == 1:
            raise RuntimeError("boom")
        done.append(item)

    w = InferenceWorker(process, lambda i, e: errors.append((i, str(e))))
    w.start()
    w.submit(1)
    deadline = time.time() + 5
    while not errors and time.time() < deadline:
        time.sleep(0.005)
    w.submit(2)
    while not done and time.time() < deadline:
        time.sleep(0.005)
    assert w.stop(1.0)
    assert errors == [(1, "boom")] and done == [2]


def test_stop_is_bounded_while_busy() -> None:
    release = threading.Event()
    w = InferenceWorker(lambda i: release.wait(10), lambda i, e: None)
    w.start()
    w.submit(0)
    time.sleep(0.05)
    assert w.busy
    t0 = time.perf_counter()
    assert w.stop(0.2) is False             # still inside process: gives up after the timeout
    assert time.perf_counter() - t0 < 0.5
    release.set()
    assert not w.alive or w.stop(1.0)


@pytest.mark.parametrize("n_threads", [4])
def test_concurrent_submitters_lose_nothing_uncounted(n_threads: int) -> None:
    processed, dropped = [], []
    lock = threading.Lock()

    def on_drop(i: int) -> None:
        with lock:
            dropped.append(i)

    w = InferenceWorker(lambda i: processed.append(i), lambda i, e: None, on_drop)
    w.start()
    threads = [threading.Thread(target=lambda k=k: [w.submit(k * 1000 + j) for j in range(500)])
               for k in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    deadline = time.time() + 5
    while (w.pending or w.busy) and time.time() < deadline:
        time.sleep(0.005)
    assert w.stop(1.0)
    # every submitted item was either processed or reported dropped, exactly once
    assert sorted(processed + dropped) == sorted(k * 1000 + j for k in range(n_threads) for j in range(500))


def test_batch_worker_takes_the_newest_frame_of_every_camera_as_one_batch() -> None:
    from hle_ros.worker import BatchInferenceWorker

    gate, started = threading.Event(), threading.Event()
    batches, dropped, errors = [], [], []

    def process(batch: list[tuple[int, int]]) -> None:
        batches.append(batch)
        started.set()
        gate.wait(5)
        if batch == [(1, 9)]:
            raise RuntimeError("boom")

    w = BatchInferenceWorker(2, lambda item: item[0], process, lambda b, e: errors.append((b, str(e))),
                             dropped.append, window_s=1.0)
    w.start()
    w.submit((0, 1))
    w.submit((1, 1))                        # the second camera arrives inside the window: one batch, at once
    assert started.wait(0.5), "a full set must not wait for the window"
    started.clear()
    for k in (2, 3):                        # while busy: camera 0 sends 2 and 3 (2 dropped), camera 1 sends 2
        w.submit((0, k))
    w.submit((1, 2))
    assert w.pending and w.busy
    gate.set()
    deadline = time.monotonic() + 5
    while len(batches) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert batches == [[(0, 1), (1, 1)], [(0, 3), (1, 2)]] and dropped == [(0, 2)]
    gate.clear()
    t0 = time.monotonic()
    w.submit((1, 9))                        # only one camera: processed after the window, then fails
    gate.set()
    while not errors and time.monotonic() < deadline:
        time.sleep(0.01)
    assert time.monotonic() - t0 >= 0.9 and errors == [([(1, 9)], "boom")]
    w.submit((0, 10))
    w.submit((1, 10))
    while len(batches) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert batches[-1] == [(0, 10), (1, 10)] and w.alive    # the thread survived the error
    assert w.stop(1.0) and not w.alive


def test_batch_worker_stop_discards_waiting_frames() -> None:
    from hle_ros.worker import BatchInferenceWorker

    seen = []
    w = BatchInferenceWorker(3, lambda item: item, seen.append, lambda b, e: None, window_s=5.0)
    w.start()
    w.submit(0)                             # waits for cameras 1 and 2 (window 5 s)
    time.sleep(0.05)
    assert w.stop(1.0) and seen == []
    with pytest.raises(ValueError):
        BatchInferenceWorker(0, lambda item: 0, seen.append, lambda b, e: None)
