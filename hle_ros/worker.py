"""Inference off the executor thread: a latest-frame slot and the thread that drains it.

Subscription callbacks only :meth:`InferenceWorker.submit` a frame, which never blocks: the frame replaces
whatever is waiting in the one-element slot, and the replaced frame is reported through ``on_drop`` (the
node counts it as dropped). The worker thread always takes the newest frame, so when inference is slower
than the camera the node falls behind by at most one frame instead of queueing stale ones.

:class:`BatchInferenceWorker` is the same policy for several cameras served by one network: a latest-frame slot per
camera, and one thread that takes the newest frame of every camera that has one and processes them as one batch.

:class:`PipelinedWorker` is the same latest-frame policy with the work split in two stages on two threads (stage 1:
preprocess + inference; stage 2: decode, track, publish) joined by a hand-off of one: while frame N is decoded and
published, frame N+1 is already in the network (torch / onnxruntime release the GIL during inference). Outputs
leave stage 2 in the order frames entered stage 1; a frame whose ``order_key`` (the stamp) is older than one
already finished is dropped as late (``on_late``) instead of being published out of order.

No ROS here: the node hands in plain callables, and the tests drive the worker directly.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, Generic, TypeVar

__all__ = ["LatestSlot", "InferenceWorker", "BatchInferenceWorker", "PipelinedWorker"]

T = TypeVar("T")


class LatestSlot(Generic[T]):
    """A thread-safe slot holding at most one item; a new item replaces the old one."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self._closed = False

    def put(self, item: T) -> T | None:
        """Store ``item``; return the item it replaced (never processed), or None. Never blocks on a consumer."""
        with self._cond:
            replaced, self._item = self._item, item
            self._cond.notify()
        return replaced

    def take(self, timeout: float | None = None) -> T | None:
        """Remove and return the item, waiting up to ``timeout`` seconds; None on timeout or after :meth:`close`."""
        with self._cond:
            self._cond.wait_for(lambda: self._item is not None or self._closed, timeout)
            item, self._item = self._item, None
            return None if self._closed else item

    def clear(self) -> T | None:
        """Remove and return the waiting item, if any."""
        with self._cond:
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        """Wake any waiter; :meth:`take` returns None from now on."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def pending(self) -> bool:
        with self._cond:
            return self._item is not None


def _serve(take: Callable[[], Any], process: Callable[[Any], None], on_error: Callable[[Any, BaseException], None],
           busy: threading.Event) -> None:
    """A worker thread's loop: ``process`` every work item ``take`` returns (``busy`` set meanwhile) until
    ``take`` returns None (closed); an exception is handed to ``on_error`` and the thread carries on."""
    while True:
        work = take()
        if work is None:
            return                                       # closed
        busy.set()
        try:
            process(work)
        except Exception as exc:                         # reported, counted by the node; the thread survives
            on_error(work, exc)
        finally:
            busy.clear()


class InferenceWorker(Generic[T]):
    """A daemon thread that runs ``process(item)`` on the newest submitted item.

    Args:
        process: the work for one item (convert, infer, publish); runs on the worker thread.
        on_error: called with the item and the exception when ``process`` raises; the thread carries on.
        on_drop: called (on the submitting thread) with each item replaced before it was processed.
    """

    def __init__(self, process: Callable[[T], None], on_error: Callable[[T, BaseException], None],
                 on_drop: Callable[[T], None] | None = None, name: str = "hle_inference") -> None:
        self._process = process
        self._on_error = on_error
        self._on_drop = on_drop
        self._slot: LatestSlot[T] = LatestSlot()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._busy = threading.Event()

    def start(self) -> None:
        self._thread.start()

    def submit(self, item: T) -> None:
        """Hand ``item`` to the worker without blocking; a frame still waiting is dropped in its favour."""
        replaced = self._slot.put(item)
        if replaced is not None and self._on_drop is not None:
            self._on_drop(replaced)

    @property
    def busy(self) -> bool:
        """True while ``process`` runs."""
        return self._busy.is_set()

    @property
    def pending(self) -> bool:
        """True when a frame waits in the slot."""
        return self._slot.pending

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 0.5) -> bool:
        """Ask the thread to finish after its current item; True if it ended within ``timeout`` seconds.

        A waiting (unprocessed) item is discarded. The thread is a daemon, so an inference still running when
        the timeout expires cannot keep the process alive.
        """
        self._slot.close()
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        _serve(self._slot.take, self._process, self._on_error, self._busy)


class BatchInferenceWorker(Generic[T]):
    """A daemon thread that runs ``process(batch)`` on the newest item of every source (camera) that has one.

    Each source has a latest-item slot (:class:`InferenceWorker`'s policy per source: a new item replaces the
    waiting one, reported through ``on_drop``). Once an item is waiting, the thread waits up to ``window_s`` more
    for the other sources, so frames that arrive together form one batch; a full set starts at once.

    Args:
        sources: the number of sources; ``source_of(item)`` gives an item's source index in ``0..sources-1``.
        process: the work for one batch (a list of items, at most one per source, in source order).
        on_error: called with the batch and the exception when ``process`` raises; the thread carries on.
        on_drop: called (on the submitting thread) with each item replaced before it was processed.
    """

    def __init__(self, sources: int, source_of: Callable[[T], int], process: Callable[[list[T]], None],
                 on_error: Callable[[list[T], BaseException], None], on_drop: Callable[[T], None] | None = None,
                 window_s: float = 0.01, name: str = "hle_inference") -> None:
        if sources < 1:
            raise ValueError(f"sources must be >= 1, got {sources}")
        self._n = sources
        self._source_of = source_of
        self._process = process
        self._on_error = on_error
        self._on_drop = on_drop
        self._window_s = max(0.0, float(window_s))
        self._cond = threading.Condition()
        self._items: list[T | None] = [None] * sources
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._busy = threading.Event()

    def start(self) -> None:
        self._thread.start()

    def submit(self, item: T) -> None:
        """Hand ``item`` to its source's slot without blocking; the item waiting there is dropped in its favour."""
        source = self._source_of(item)
        with self._cond:
            replaced, self._items[source] = self._items[source], item
            self._cond.notify()
        if replaced is not None and self._on_drop is not None:
            self._on_drop(replaced)

    @property
    def busy(self) -> bool:
        """True while ``process`` runs."""
        return self._busy.is_set()

    @property
    def pending(self) -> bool:
        """True when an item waits in any slot."""
        with self._cond:
            return any(item is not None for item in self._items)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 0.5) -> bool:
        """Ask the thread to finish after its current batch; True if it ended within ``timeout`` seconds.
        Waiting items are discarded."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def _take(self) -> list[T] | None:
        with self._cond:
            self._cond.wait_for(lambda: self._closed or any(i is not None for i in self._items))
            deadline = time.monotonic() + self._window_s
            while not self._closed and not all(i is not None for i in self._items):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            if self._closed:
                return None
            batch = [i for i in self._items if i is not None]
            self._items = [None] * self._n
            return batch

    def _run(self) -> None:
        _serve(self._take, self._process, self._on_error, self._busy)


class PipelinedWorker(Generic[T]):
    """Two daemon threads: ``infer(item)`` on the newest submitted item, then ``finish(item, staged)`` on the other
    thread, so the next item's ``infer`` overlaps this one's ``finish``.

    The input is a :class:`LatestSlot` (a waiting item is replaced, reported through ``on_drop``); between the
    stages is a hand-off of one: stage 1 waits (holding its result) while stage 2 is still busy with the previous
    item, and meanwhile new items keep replacing each other in the input slot. At most three items are in flight:
    one waiting, one in ``infer``, one in ``finish``.

    Every submitted item ends in exactly one of: ``finish`` returned (published), ``on_drop`` (replaced while
    waiting, or discarded by :meth:`stop`), ``on_late`` (its ``order_key`` is below that of an item already
    finished), ``on_error`` (``infer`` or ``finish`` raised; the threads carry on).

    Args:
        infer: stage 1 (e.g. convert, preprocess, network); returns what stage 2 needs.
        finish: stage 2 (e.g. decode, track, publish), called with the item and ``infer``'s result, in stage-1 order.
        on_error: called with the item and the exception when a stage raises.
        on_drop: called with each item replaced before it was processed (on the submitting thread) or discarded
            by :meth:`stop` (on the stopping thread, or on a stage thread that finds the worker stopped).
        order_key: the item's order (e.g. its stamp); None: no order check.
        on_late: called (on stage 2) with an item whose ``order_key`` is below the last finished one's; it is
            not finished. Without it, such an item is reported through ``on_drop``.
    """

    def __init__(self, infer: Callable[[T], Any], finish: Callable[[T, Any], None],
                 on_error: Callable[[T, BaseException], None], on_drop: Callable[[T], None] | None = None,
                 order_key: Callable[[T], Any] | None = None, on_late: Callable[[T], None] | None = None,
                 name: str = "hle_inference") -> None:
        self._infer, self._finish = infer, finish
        self._on_error, self._on_drop = on_error, on_drop
        self._order_key, self._on_late = order_key, on_late
        self._slot: LatestSlot[T] = LatestSlot()
        self._cond = threading.Condition()            # guards the hand-off, the in-flight count and _closed
        self._handoff: tuple[T, Any] | None = None
        self._closed = False
        self._inflight = 0                            # items taken by stage 1 and not yet done with
        self._last_key: Any = None
        self._threads = (threading.Thread(target=self._run_infer, name=f"{name}_infer", daemon=True),
                         threading.Thread(target=self._run_finish, name=f"{name}_finish", daemon=True))

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def submit(self, item: T) -> None:
        """Hand ``item`` to stage 1 without blocking; an item still waiting is dropped in its favour."""
        replaced = self._slot.put(item)
        if replaced is not None:
            self._drop(replaced)

    @property
    def busy(self) -> bool:
        """True while an item is in either stage or in the hand-off between them."""
        with self._cond:
            return self._inflight > 0

    @property
    def pending(self) -> bool:
        """True when an item waits for stage 1."""
        return self._slot.pending

    @property
    def alive(self) -> bool:
        return any(thread.is_alive() for thread in self._threads)

    def stop(self, timeout: float = 0.5) -> bool:
        """Ask both threads to finish their current item; True if both ended within ``timeout`` seconds.

        The item waiting for stage 1 and an item inferred but not yet finished are reported through ``on_drop``.
        """
        with self._cond:
            self._closed = True
            handed, self._handoff = self._handoff, None
            if handed is not None:
                self._inflight -= 1
            self._cond.notify_all()
        waiting = self._slot.clear()
        self._slot.close()
        for item in (waiting, handed[0] if handed is not None else None):
            if item is not None:
                self._drop(item)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            if thread.is_alive():
                thread.join(max(0.0, deadline - time.monotonic()))
        return not self.alive

    def _drop(self, item: T) -> None:
        if self._on_drop is not None:
            self._on_drop(item)

    def _done(self) -> None:
        with self._cond:
            self._inflight -= 1
            self._cond.notify_all()

    def _run_infer(self) -> None:
        while True:
            item = self._slot.take()
            if item is None:
                return                                   # closed
            with self._cond:
                self._inflight += 1
            try:
                staged = self._infer(item)
            except Exception as exc:                     # reported, counted by the node; the thread survives
                self._done()
                self._on_error(item, exc)
                continue
            with self._cond:                             # the hand-off of one: wait for stage 2 to take the last
                self._cond.wait_for(lambda: self._handoff is None or self._closed)
                if not self._closed:
                    self._handoff = (item, staged)
                    self._cond.notify_all()
                    continue
                self._inflight -= 1
            self._drop(item)                             # stopped while this item was in inference
            return

    def _run_finish(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._handoff is not None or self._closed)
                if self._closed:
                    return                               # stop() reported what was handed off
                (item, staged), self._handoff = self._handoff, None
                self._cond.notify_all()                  # stage 1 may hand off the next
            try:
                if self._order_key is not None:
                    key = self._order_key(item)
                    if self._last_key is not None and key < self._last_key:
                        (self._on_late or self._drop)(item)   # never published after a newer one
                        continue
                    self._last_key = key
                self._finish(item, staged)
            except Exception as exc:                     # reported, counted by the node; the thread survives
                self._on_error(item, exc)
            finally:
                self._done()
