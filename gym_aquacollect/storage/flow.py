"""Flow control between a recorder (user thread) and the writer thread: one byte budget for every path.

Contents:
    * :class:`PendingBytes` - the bytes handed to the writer and not yet written; a producer waits while
      adding a new item would exceed the cap (one item always passes, so an item larger than the cap
      cannot dead-lock). Counters (``pending``, ``peak``, ``waits``) make the bound observable.

Every recording path uses it through :meth:`~gym_aquacollect.storage.writer.DatasetWriter.submit`
(``nbytes=``): the single-env block pool, the vector / Isaac Lab / multi-agent chunks and the
collectors that keep rows themselves. So when frames arrive faster than the writer compresses them, the
env waits instead of memory growing.

Example:
    >>> budget = PendingBytes(100)
    >>> budget.acquire(60); budget.acquire(30)
    >>> budget.pending, budget.peak
    (90, 90)
    >>> budget.release(60); budget.pending
    30
"""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["PendingBytes"]


class PendingBytes:
    """A byte budget shared by a producer (acquire) and the writer thread (release).

    Args:
        cap: the most bytes that may wait for the writer (a single larger item still passes alone).
        on_wait: called once, the first time a producer has to wait (e.g. to log a warning).
    """

    def __init__(self, cap: int, on_wait: Callable[[], None] | None = None) -> None:
        self.cap = int(cap)
        self.pending = 0
        self.peak = 0
        self.waits = 0
        self._on_wait = on_wait
        self._cv = threading.Condition()

    def acquire(self, nbytes: int, check: Callable[[], None] | None = None) -> None:
        """Count ``nbytes`` as pending, first waiting while they would exceed the cap. ``check`` is
        called every 0.5 s while waiting (it raises when the writer failed, ending the wait)."""
        nbytes = int(nbytes)
        if nbytes <= 0:
            return
        with self._cv:
            if self.pending > 0 and self.pending + nbytes > self.cap:
                self.waits += 1
                if self._on_wait is not None:
                    cb, self._on_wait = self._on_wait, None
                    cb()
                while self.pending > 0 and self.pending + nbytes > self.cap:
                    self._cv.wait(0.5)
                    if check is not None:
                        check()
            self.pending += nbytes
            if self.pending > self.peak:
                self.peak = self.pending

    def release(self, nbytes: int) -> None:
        """The writer is done with ``nbytes`` (wakes waiting producers)."""
        nbytes = int(nbytes)
        if nbytes <= 0:
            return
        with self._cv:
            self.pending -= nbytes
            self._cv.notify_all()
