"""Bounded queues between engine stages.

Live mode uses latest-frame-wins (`drop_oldest=True`): a slow consumer sees fresh frames
and end-to-end latency stays flat. Offline mode blocks the producer instead so that no
frame is ever lost. Either way the queue never grows past `maxsize`.
"""
from __future__ import annotations

import collections
import threading
from typing import Generic, TypeVar

T = TypeVar("T")


class QueueClosed(Exception):
    """The queue was closed and (for `get`) is empty: the producer has finished."""


class StageQueue(Generic[T]):
    """A closable bounded queue; `close()` wakes every waiter so no thread hangs on shutdown."""

    def __init__(self, maxsize: int = 1, drop_oldest: bool = True) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize}")
        self.maxsize = maxsize
        self.drop_oldest = drop_oldest
        self.dropped = 0
        self.high_water = 0  # most items ever held: proves the bound in tests and benchmarks
        self._items: collections.deque[T] = collections.deque()
        self._cond = threading.Condition()
        self._closed = False

    def put(self, item: T) -> None:
        """Add an item; drops the oldest (live) or waits for room (offline). Raises QueueClosed."""
        with self._cond:
            if self._closed:
                raise QueueClosed
            if len(self._items) >= self.maxsize:
                if self.drop_oldest:
                    self._items.popleft()
                    self.dropped += 1
                else:
                    self._cond.wait_for(lambda: len(self._items) < self.maxsize or self._closed)
                    if self._closed:
                        raise QueueClosed
            self._items.append(item)
            self.high_water = max(self.high_water, len(self._items))
            self._cond.notify_all()

    def get(self, timeout: float | None = None) -> T:
        """Next item; after `close()` the remaining items are still delivered, then QueueClosed.

        Raises TimeoutError when `timeout` passes with nothing to return."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._items or self._closed, timeout):
                raise TimeoutError
            if self._items:
                item = self._items.popleft()
                self._cond.notify_all()
                return item
            raise QueueClosed

    def wait_empty(self, timeout: float | None = None) -> bool:
        """Block until the consumer has taken everything (or the queue is closed); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._items or self._closed, timeout)

    def close(self, discard: bool = False) -> None:
        """End of input. `discard=True` (abort) also drops what is queued."""
        with self._cond:
            self._closed = True
            if discard:
                self._items.clear()
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)


class LatestQueue(StageQueue[T]):
    """Latest-frame-wins queue for live mode."""

    def __init__(self, maxsize: int = 1) -> None:
        super().__init__(maxsize, drop_oldest=True)


class BlockingQueue(StageQueue[T]):
    """Lossless bounded queue for offline mode."""

    def __init__(self, maxsize: int = 4) -> None:
        super().__init__(maxsize, drop_oldest=False)
