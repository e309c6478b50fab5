"""The service's locks.

- :class:`FairLock` guards the loaded encoders (a Hugging Face fast tokenizer cannot be used from two threads
  at once) and, on a GPU, all compute. Python's ``RLock`` lets the thread that releases it take it straight
  back, so an ingest job encoding slice after slice could hold it for as long as it encodes; with this lock a
  thread that comes back queues behind those already waiting.
- :class:`LockedEncoder` is an encoder whose every forward call holds a :class:`FairLock`, in slices, so a
  long encode lets queries in between.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import numpy as np

from unibind.indexer.encoders.base import Encoder

SLICE = 128  # texts or images encoded per turn of the lock: about half a second of MiniLM on 2 cores


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
            try:
                while self._owner is not None or self._queue[0] is not ticket:
                    self._cond.wait()
            except BaseException:  # interrupted while waiting: give the turn up, or the queue stalls
                self._queue.remove(ticket)
                self._cond.notify_all()
                raise
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


class LockedEncoder:
    """``encoder`` for use from many threads: each slice of ``slice_size`` inputs is encoded under ``lock``."""

    def __init__(self, encoder: Encoder, lock: Any, slice_size: int = SLICE) -> None:
        self._encoder, self._lock, self._slice = encoder, lock, slice_size

    def __getattr__(self, name: str) -> Any:
        return getattr(self._encoder, name)

    def _sliced(self, fn: Any, items: Sequence[Any], **kwargs: Any) -> np.ndarray:
        parts = []
        for start in range(0, len(items), self._slice):
            with self._lock:
                parts.append(fn(list(items[start:start + self._slice]), **kwargs))  # [n, d]
        if not parts:
            with self._lock:
                return fn([], **kwargs)  # type: ignore[no-any-return]
        return np.concatenate(parts)

    def encode_text(self, texts: Sequence[str], **kwargs: Any) -> np.ndarray:
        return self._sliced(self._encoder.encode_text, texts, **kwargs)

    def encode_images(self, images: Sequence[Any], **kwargs: Any) -> np.ndarray:
        return self._sliced(self._encoder.encode_images, images, **kwargs)
