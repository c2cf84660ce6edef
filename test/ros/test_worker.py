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


# --- PipelinedWorker: two stages on two threads (issue 15, item 3) ------------------------------------------------
def _wait(cond, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.005)
    return cond()


def test_pipelined_worker_overlaps_stage_1_of_the_next_item_with_stage_2() -> None:
    from hle_ros.worker import PipelinedWorker

    in_finish, release = threading.Event(), threading.Event()
    inferred, finished = [], []

    def finish(item: int, staged: int) -> None:
        in_finish.set()
        release.wait(5)
        finished.append((item, staged))

    w = PipelinedWorker(lambda i: (inferred.append(i), i * 10)[1], finish, lambda i, e: None)
    w.start()
    w.submit(1)
    assert in_finish.wait(5)                # 1 is in stage 2 (held)
    w.submit(2)
    assert _wait(lambda: inferred == [1, 2])   # 2 went through stage 1 while 1 is still in stage 2
    assert finished == [] and w.busy
    release.set()
    assert _wait(lambda: len(finished) == 2)
    assert finished == [(1, 10), (2, 20)] and _wait(lambda: not w.busy)
    assert w.stop(1.0) and not w.alive


def test_pipelined_worker_keeps_the_newest_frame_and_accounts_for_every_item() -> None:
    from hle_ros.worker import PipelinedWorker

    gate = threading.Event()
    finished, dropped, errors = [], [], []
    lock = threading.Lock()

    def finish(item: int, staged: int) -> None:
        gate.wait(5)
        if item == 7:
            raise RuntimeError("boom")
        finished.append(item)

    def on_drop(item: int) -> None:
        with lock:
            dropped.append(item)

    w = PipelinedWorker(lambda i: i, finish, lambda i, e: errors.append((i, str(e))), on_drop)
    w.start()
    for i in range(1, 201):                 # stage 2 blocked: 1 in stage 2, 2 handed off, 3 inferred and holding
        w.submit(i)
        if i in (1, 2, 3):
            assert _wait(lambda: not w.pending)   # taken by stage 1
    gate.set()
    assert _wait(lambda: not (w.pending or w.busy))
    assert finished == [1, 2, 3, 200]       # in order, then only the newest of those that waited
    assert sorted(dropped) == list(range(4, 200))
    w.submit(7)                             # a failing stage 2 is reported; the threads carry on
    assert _wait(lambda: errors == [(7, "boom")])
    w.submit(8)
    assert _wait(lambda: finished[-1] == 8)
    assert w.stop(1.0)


def test_pipelined_worker_never_finishes_an_older_key_after_a_newer_one() -> None:
    from hle_ros.worker import PipelinedWorker

    finished, late = [], []
    w = PipelinedWorker(lambda i: i, lambda i, s: finished.append(i), lambda i, e: None,
                        order_key=lambda i: i, on_late=late.append)
    w.start()
    for i in (5, 6, 3, 6, 9):               # 3 went backwards: dropped as late; an equal key is not late
        w.submit(i)
        assert _wait(lambda: not (w.pending or w.busy))
    assert finished == [5, 6, 6, 9] and late == [3]
    assert w.stop(1.0)


def test_pipelined_worker_stop_reports_what_it_discards_and_is_bounded() -> None:
    from hle_ros.worker import PipelinedWorker

    in_infer, in_finish, release = threading.Event(), threading.Event(), threading.Event()
    finished, dropped = [], []

    def infer(item: int) -> int:
        if item == 2:
            in_infer.set()
            release.wait(5)
        return item

    def finish(item: int, staged: int) -> None:
        in_finish.set()
        release.wait(5)
        finished.append(item)

    w = PipelinedWorker(infer, finish, lambda i, e: None, dropped.append)
    w.start()
    w.submit(1)
    assert in_finish.wait(5)                # 1 in stage 2
    w.submit(2)
    assert in_infer.wait(5)                 # 2 in stage 1
    w.submit(3)                             # 3 waits
    t0 = time.perf_counter()
    assert w.stop(0.2) is False             # both stages held: gives up after the timeout
    assert time.perf_counter() - t0 < 0.5
    assert dropped == [3]
    release.set()
    assert _wait(lambda: not w.alive)
    assert finished == [1] and dropped == [3, 2]   # 1 finished; 2, inferred after the stop, reported dropped
