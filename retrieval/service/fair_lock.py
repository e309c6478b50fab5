"""A re-entrant lock handed over in arrival order.

The service runs every query and every slice of an ingest job's encoding under one lock (the loaded encoders
and the cached query objects are not safe to share between threads). Python's ``RLock`` lets the thread that
releases it take it straight back, so a job encoding slice after slice could hold the lock for as long as it
encodes while queries wait. With this lock a thread that comes back queues behind those already waiting: a
query waits for at most the slice being encoded, then its turn comes."""

from __future__ import annotations

import threading
from collections import deque
from types import TracebackType


class FairLock:
    """Re-entrant; waiters get the lock first come, first served (FIFO)."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._owner: int | None = None
        self._depth = 0
        self._queue: deque[object] = deque()

    def acquire(self) -> bool:
        me = threading.get_ident()
        with self._cond:
            if self._owner == me:
                self._depth += 1
                return True
            ticket = object()
            self._queue.append(ticket)
            while self._owner is not None or self._queue[0] is not ticket:
                self._cond.wait()
            self._queue.popleft()
            self._owner, self._depth = me, 1
            return True

    def release(self) -> None:
        with self._cond:
            if self._owner != threading.get_ident():
                raise RuntimeError("release of a FairLock not held by this thread")
            self._depth -= 1
            if self._depth == 0:
                self._owner = None
                self._cond.notify_all()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.release()
