"""Compaction: merging an index's segments, size-tiered, so a query touches a bounded number of them whatever the
history of writes, and folding tombstones in.

The policy (as Lucene's tiered merging, in small): a segment's *tier* grows with the logarithm of its live rows
(base 1,024 rows, factor 8). When one tier holds ``per_tier`` segments, they merge into one of the next tier; a
segment whose tombstones reach ``max_dead_fraction`` of it (or ``max_dead_rows``) is rewritten; and an index of more than
``max_segments`` segments merges its smallest ones. Each row is so rewritten O(log N) times over its life.

A merge reads the live ids of its segments from their payloads, their vectors from the store (the source of truth,
exact whatever the index type), writes one new segment outside any lock, and publishes it as any write does: one
short transaction that bumps the catalog version, makes the new segment live and drops the merged ones. Readers
never wait; a write that landed meanwhile is kept (rows removed meanwhile are tombstoned in the new segment); a
merge killed at any instant leaves its unpublished segment to the next write's sweep.
"""

from __future__ import annotations

import fcntl
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sqlalchemy import func, select

from unibind.indexer.index.readers import ReaderLeaseHolder
from unibind.indexer.index.segments import SegmentedIndex
from unibind.schema import Segment, Tombstone
from unibind.schema.errors import Busy
from unibind.schema.store_state import bump_version

log = logging.getLogger(__name__)

MAX_STEPS = 32  # merges one call may run before it leaves the rest to the next write


@dataclass(frozen=True)
class CompactionPolicy:
    max_segments: int = 16
    per_tier: int = 8
    tier_base: int = 1024
    tier_factor: int = 8
    max_dead_fraction: float = 0.2
    max_dead_rows: int = 8192  # whatever the segment's size: searches skip tombstones (a collection over-fetches)

    def __post_init__(self) -> None:
        if self.max_segments < 2 or self.per_tier < 2 or self.tier_base < 1 or self.tier_factor < 2:
            raise ValueError("a compaction policy needs max_segments, per_tier, tier_factor >= 2 and tier_base >= 1")
        if not 0 < self.max_dead_fraction <= 1:
            raise ValueError("max_dead_fraction must be in (0, 1]")

    def tier(self, n_live: int) -> int:
        if n_live < self.tier_base:
            return 0
        return 1 + int(math.floor(math.log(n_live / self.tier_base, self.tier_factor) + 1e-9))


DEFAULT_POLICY = CompactionPolicy()


@dataclass(frozen=True)
class SegmentSize:
    segment_id: int
    n_vectors: int
    n_dead: int

    @property
    def n_live(self) -> int:
        return self.n_vectors - self.n_dead


def plan(sizes: Sequence[SegmentSize], policy: CompactionPolicy = DEFAULT_POLICY, *, full: bool = False) -> list[int]:
    """The segments to merge next (ids; a single one is rewritten without its tombstones), or [] when the index is
    in shape. ``full``: everything into one segment (when there are several, or any tombstone)."""
    if full:
        return [s.segment_id for s in sizes] if len(sizes) > 1 or any(s.n_dead for s in sizes) else []
    empty = [s.segment_id for s in sizes if s.n_live <= 0]
    if empty:
        return empty  # nothing left in them: dropped without a new segment
    dead = [s for s in sizes if s.n_dead and (s.n_dead >= policy.max_dead_fraction * s.n_vectors
                                              or s.n_dead >= policy.max_dead_rows)]
    if dead:
        return [s.segment_id for s in dead]
    by_tier: dict[int, list[SegmentSize]] = {}
    for s in sizes:
        by_tier.setdefault(policy.tier(s.n_live), []).append(s)
    for tier in sorted(by_tier):
        group = by_tier[tier]
        if len(group) >= policy.per_tier:
            return [s.segment_id for s in sorted(group, key=lambda s: (s.n_live, s.segment_id))[: policy.per_tier]]
    if len(sizes) > policy.max_segments:
        smallest = sorted(sizes, key=lambda s: (s.n_live, s.segment_id))
        return [s.segment_id for s in smallest[: len(sizes) - policy.max_segments + 1]]
    return []


@dataclass(frozen=True)
class Merge:
    merged: int  # segments merged (or dropped, when nothing in them was live)
    rows: int  # live rows written to the new segment
    folded: int  # tombstones folded in
    segment_id: int | None  # the new segment (None when nothing was left)


def compact(index: SegmentedIndex, *, policy: CompactionPolicy = DEFAULT_POLICY, full: bool = False,
            max_steps: int = MAX_STEPS) -> list[Merge]:
    """Merge ``index``'s segments until the policy is satisfied (or everything into one, ``full``). One compactor
    per index per host at a time (another one running: nothing is done here). Returns the merges made."""
    done: list[Merge] = []
    with index.lock(fcntl.LOCK_EX, blocking=False, name="compact.lock") as held:
        if not held:
            return done
        for _ in range(max_steps):
            step = _merge_once(index, policy, full)
            if step is None:
                break
            done.append(step)
    if done:
        log.info("compacted the %s index: %d merges, %d rows rewritten", index.kind_name, len(done),
                 sum(m.rows for m in done))
    return done


def _choose(index: SegmentedIndex, policy: CompactionPolicy, full: bool, version: int | None
            ) -> tuple[list[Segment], dict[int, np.ndarray]]:
    """The segments the policy merges next at ``version`` (None: now), planned on the records alone, and the
    tombstones of the index at that version."""
    with index.db.session() as session:
        segs = [s for s in index.segments(session, version) if index.place.owns(s.path)]
        sizes = dict(session.execute(select(Tombstone.segment_id, func.count()).where(
            Tombstone.segment_id.in_([s.id for s in segs] or [-1]),
            *([Tombstone.version <= version] if version is not None else [])).group_by(Tombstone.segment_id)).all())
        chosen = set(plan([SegmentSize(s.id, int(s.n_vectors), int(sizes.get(s.id, 0))) for s in segs], policy,
                          full=full))
        sources = [s for s in segs if s.id in chosen]
        dead = index.tombstones(session, sources, version) if sources else {}
    return sources, dead


def _merge_once(index: SegmentedIndex, policy: CompactionPolicy, full: bool) -> Merge | None:
    if not _choose(index, policy, full, None)[0]:
        return None  # the common case after a write: nothing to merge, nothing taken
    with ReaderLeaseHolder(index.db) as lease:  # rows removed while it merges stay until its publish tombstones them
        return _merge_at(index, policy, full, lease.hold_current())


def _merge_at(index: SegmentedIndex, policy: CompactionPolicy, full: bool, read_at: int) -> Merge | None:
    sources, dead = _choose(index, policy, full, read_at)
    if not sources:
        return None
    none = np.empty(0, np.int64)
    with index.lock():
        parts = [index.open_segment(s, dead.get(s.id, none)) for s in sources]
    live_ids = [p.live_ids for p in parts]
    ids = np.sort(np.concatenate(live_ids)) if live_ids else none
    got, vectors = index.vectors_at(None, ids=ids) if ids.size else (ids, np.empty((0, index.dim), np.float32))
    folded = sum(int(p.dead.size) for p in parts)
    groups = sorted({g for s in sources for g in (s.group_ids or [])})
    built = index.build(got, vectors, groups=groups, factory=sources[-1].factory) if got.size else None
    try:
        with index.db.transaction() as session:
            version = bump_version(session)
            new = index.replace_segments(session, sources, built, read_at, version)
    except Busy:
        if built is not None:
            index.discard(built.segment_id)
        log.info("another process merged these segments of the %s index meanwhile", index.kind_name)
        return None
    except BaseException:
        if built is not None:
            index.discard(built.segment_id)
        raise
    return Merge(len(sources), int(got.size), folded, new.id if new is not None else None)


__all__ = ["CompactionPolicy", "DEFAULT_POLICY", "Merge", "SegmentSize", "compact", "plan"]
