"""Inference off the executor thread: a latest-frame slot and the thread that drains it.

Subscription callbacks only :meth:`InferenceWorker.submit` a frame, which never blocks: the frame replaces
whatever is waiting in the one-element slot, and the replaced frame is reported through ``on_drop`` (the
node counts it as dropped). The worker thread always takes the newest frame, so when inference is slower
than the camera the node falls behind by at most one frame instead of queueing stale ones.

:class:`BatchInferenceWorker` is the same policy for several cameras served by one network: a latest-frame slot per
camera, and one thread that takes the newest frame of every camera that has one and processes them as one batch.

No ROS here: the node hands in plain callables, and the tests drive the worker directly.
"""
from __future__ import annotations

import threading
import time
from typing import Callable, Generic, TypeVar

__all__ = ["LatestSlot", "InferenceWorker", "BatchInferenceWorker"]

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
        while True:
            item = self._slot.take()
            if item is None:
                return                                   # closed
            self._busy.set()
            try:
                self._process(item)
            except Exception as exc:                     # reported, counted by the node; the thread survives
                self._on_error(item, exc)
            finally:
                self._busy.clear()


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
        while True:
            batch = self._take()
            if batch is None:
                return                                   # closed
            self._busy.set()
            try:
                self._process(batch)
            except Exception as exc:                     # reported, counted by the node; the thread survives
                self._on_error(batch, exc)
            finally:
                self._busy.clear()
