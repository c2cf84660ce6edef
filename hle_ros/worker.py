"""Inference off the executor thread: a latest-frame slot and the thread that drains it.

Subscription callbacks only :meth:`InferenceWorker.submit` a frame, which never blocks: the frame replaces
whatever is waiting in the one-element slot, and the replaced frame is reported through ``on_drop`` (the
node counts it as dropped). The worker thread always takes the newest frame, so when inference is slower
than the camera the node falls behind by at most one frame instead of queueing stale ones.

No ROS here: the node hands in plain callables, and the tests drive the worker directly.
"""
from __future__ import annotations

import threading
from typing import Callable, Generic, TypeVar

__all__ = ["LatestSlot", "InferenceWorker"]

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
