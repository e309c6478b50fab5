"""The service's locks: the compute lock is first come, first served (a thread that releases and comes straight
back queues behind the waiters) and re-entrant; the catalog lock lets readers share and a writer wait for them
and go before new readers; the sliced, locked encoder gives the encoder's own vectors."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytest

from unibind.retrieval.service.locks import FairLock, LockedEncoder


def wait_until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def test_waiters_get_the_lock_in_arrival_order_before_a_returning_holder() -> None:
    lock, order = FairLock(), []
    lock.acquire()

    def take(name: str) -> None:
        with lock:
            order.append(name)

    threads = []
    for name in "abcd":  # each queues before the next starts
        t = threading.Thread(target=take, args=(name,))
        t.start()
        threads.append(t)
        wait_until(lambda n=len(threads): len(lock._queue) == n)
    lock.release()
    take("holder")  # back at once: behind a, b, c and d
    for t in threads:
        t.join(10)
    assert order == ["a", "b", "c", "d", "holder"]


def test_reentrant_and_owned() -> None:
    lock = FairLock()
    with lock:
        with lock:  # the same thread again: no deadlock
            got = []
            t = threading.Thread(target=lambda: got.append(lock.acquire()))
            t.start()
            time.sleep(0.05)
            assert got == []  # another thread waits while the depth is 2 ...
        assert got == []  # ... and 1
    t.join(10)
    assert got == [True]
    with pytest.raises(RuntimeError, match="not held by this thread"):
        lock.release()  # held by the other thread, which has ended without releasing
    lock2 = FairLock()
    with pytest.raises(RuntimeError, match="not held by this thread"):
        lock2.release()


@pytest.mark.slow
def test_sliced_encoding_equals_the_encoder(minilm: Any) -> None:
    texts = [f"description number {i} of a small striped animal" for i in range(23)] + ["a red fire truck"]
    lock, turns = FairLock(), []

    class CountingLock:  # the job's lock, counting how often the encoding takes it
        def __enter__(self) -> None:
            lock.acquire()
            turns.append(1)

        def __exit__(self, *_: Any) -> None:
            lock.release()

    sliced = LockedEncoder(minilm, CountingLock(), slice_size=5).encode_text(texts, batch_size=8)  # type: ignore[arg-type]
    np.testing.assert_allclose(sliced, minilm.encode_text(texts, batch_size=8), atol=1e-5)
    assert sliced.shape == (24, minilm.dim) and len(turns) == 5  # 24 texts in slices of 5: five turns
    assert LockedEncoder(minilm, lock).encode_text([]).shape == (0, minilm.dim)
