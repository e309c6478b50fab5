"""Reader leases: a long-lived reader (a service process; a compaction or rebuild, from its read to its publish)
records the oldest catalog version it still reads, so the vacuum keeps whatever that version can see
(``unibind.indexer.store.vacuum``).

A lease has an owner and a heartbeat, as an ingest's (``unibind.indexer.runtime.lease``): a dead reader's lease is
ignored and removed. Taking or moving a lease reads the store's horizon in the same transaction, with the state row
shared-locked, so it cannot interleave with a vacuum: a reader whose version the horizon already passed is told so
(``VersionGone``) and moves to a newer one instead.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from datetime import datetime, timezone
from types import TracebackType

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from unibind.indexer.runtime.lease import Heartbeat, current_owner, is_alive
from unibind.schema import Database, ReaderLease, StoreState
from unibind.schema.errors import Conflict
from unibind.schema.store_state import ROW, catalog_version

log = logging.getLogger(__name__)

HOLD_ATTEMPTS = 5


class VersionGone(Conflict):
    """The vacuum removed what a reader at this catalog version could see: it must read a newer version."""


def oldest_reader(session: Session, version: int) -> int:
    """The oldest version a live reader lease holds (``version`` when none); removes the leases of dead readers.
    Call under the catalog lock."""
    oldest, dead = version, []
    for lid, owner, held, beat in session.execute(select(ReaderLease.id, ReaderLease.owner, ReaderLease.version,
                                                         ReaderLease.heartbeat_at)):
        if is_alive(owner, beat):
            oldest = min(oldest, int(held))
        else:
            dead.append(lid)
    if dead:
        session.execute(delete(ReaderLease).where(ReaderLease.id.in_(dead)))
    return oldest


class ReaderLeaseHolder:
    """This process's lease on the catalog versions its readers use.

    A reader takes the *served* version (the one new readers get) and calls ``use(v)`` / ``release(v)`` around its
    reads; ``prepare(v)`` before a version is served (it checks the vacuum has not passed it), ``serve(v)`` once it
    is. The lease protects the oldest version in use or served, its *floor*: ``use`` refuses a version below the
    floor (the served version moved on meanwhile: take the new one), so the floor is never above a version in use.
    The in-memory state is kept under one lock that no database call is made under; lease writes run one at a
    time, and a heartbeat renews the lease."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._in_use: Counter[int] = Counter()
        self._served: int | None = None
        self._floor: int | None = None  # the lowest version the lease covers, as decided last
        self._lease_id: int | None = None
        self._lock = threading.Lock()  # the state above; never held across a database call
        self._writing = threading.Lock()  # one lease write at a time
        self._heartbeat: Heartbeat | None = None

    def _target(self) -> int | None:
        versions = [*self._in_use, *([self._served] if self._served is not None else [])]
        return min(versions) if versions else None

    def prepare(self, version: int) -> None:
        """Cover ``version`` before readers get it (VersionGone when the vacuum already passed it)."""
        with self._lock:
            target = min(v for v in (self._target(), version) if v is not None)
        self._write(target, check=version)  # lowering a lease is always safe
        with self._lock:
            self._floor = target if self._floor is None else min(self._floor, target)

    def serve(self, version: int) -> None:
        """From now on new readers get ``version``: the lease rises to the oldest version still in use."""
        with self._lock:
            self._served = version
            target = self._target()
            self._floor = target  # raised first: a reader of an older version is refused from now on
        if target is not None:
            self._write(target)

    def hold(self, version: int) -> None:
        """Serve ``version`` alone (a one-off reader; VersionGone when the vacuum already passed it)."""
        self.prepare(version)
        self.serve(version)

    def hold_current(self) -> int:
        """Hold the current catalog version and return it (a writer that reads at one version and publishes
        later: compaction, a rebuild, a re-projection)."""
        for _ in range(HOLD_ATTEMPTS):
            with self.db.session() as session:
                version = catalog_version(session)
            try:
                self.hold(version)
                return version
            except VersionGone:
                continue
        raise Conflict("the catalog keeps changing faster than this reader can follow; try again")

    def use(self, version: int) -> bool:
        """A reader starts at ``version``; False when the lease no longer covers it (read the served one)."""
        with self._lock:
            if self._floor is None or version < self._floor:
                return False
            self._in_use[version] += 1
            return True

    def release(self, version: int) -> None:
        with self._lock:
            self._in_use[version] -= 1
            if self._in_use[version] <= 0:
                del self._in_use[version]

    def _write(self, version: int, check: int | None = None) -> None:
        """Record the lease at ``version``; with ``check``, VersionGone when the horizon passed it. The state row is
        read (shared-locked) before the lease row is touched: the vacuum takes them in the same order."""
        with self._writing:
            lease_id = self._lease_id
            with self.db.transaction() as session:
                horizon: int | None = None
                if check is not None or lease_id is None:
                    horizon = session.scalar(select(StoreState.horizon).where(StoreState.id == ROW)
                                             .with_for_update(read=True))
                    if check is not None and horizon is not None and int(horizon) > check:
                        raise VersionGone(f"catalog version {check} was vacuumed (the horizon is {horizon})")
                found = 0
                if lease_id is not None:
                    found = session.execute(update(ReaderLease).where(ReaderLease.id == lease_id).values(
                        version=version, heartbeat_at=datetime.now(timezone.utc))).rowcount
                if not found:  # first use, or a vacuum took this process for dead (a long pause): a new lease
                    if horizon is None:
                        horizon = session.scalar(select(StoreState.horizon).where(StoreState.id == ROW)
                                                 .with_for_update(read=True))
                    version = max(version, int(horizon or 0))  # what the vacuum removed cannot be covered again
                    lease = ReaderLease(owner=current_owner(), version=version, heartbeat_at=datetime.now(timezone.utc))
                    session.add(lease)
                    session.flush()
                    lease_id = lease.id
            self._lease_id = lease_id
        with self._lock:
            if self._floor is not None and version > self._floor:
                self._floor = version  # a re-created lease covers only what the vacuum left
        if self._heartbeat is None:
            self._heartbeat = Heartbeat(self._beat, name="unibind-reader-lease")
            self._heartbeat.__enter__()

    def _beat(self) -> bool:
        with self._lock:
            target = self._target()
            if target is not None:
                self._floor = target
        if target is not None:
            self._write(target)
        return True

    def close(self) -> None:
        """Stop the heartbeat and give the lease up."""
        if self._heartbeat is not None:
            self._heartbeat.__exit__(None, None, None)
            self._heartbeat = None
        if self._lease_id is not None:
            try:
                with self.db.transaction() as session:
                    session.execute(delete(ReaderLease).where(ReaderLease.id == self._lease_id))
            except Exception as e:  # noqa: BLE001 - a dead lease is ignored and removed by the next vacuum
                log.warning("could not give the reader lease up: %s", e)
            self._lease_id = None

    def __enter__(self) -> ReaderLeaseHolder:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


__all__ = ["HOLD_ATTEMPTS", "ReaderLeaseHolder", "VersionGone", "oldest_reader"]
