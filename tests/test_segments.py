"""Segmented indexes on SQLite and PostgreSQL: a write adds a segment of its own rows, removals are tombstones,
compaction keeps the number of segments bounded, and a search over the segments equals one index holding the same
live vectors and an exact NumPy reference (ids, order with ties broken by id, scores); filtered searches return
exactly min(k, matching). Readers pinned to a catalog version see that version's rows until they move on.

The gallery's ``audio`` modality (a fixed seeded head: no training) gives rows whose exact vectors are known.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, select

from unibind.indexer.gallery.items import NewItem, add_items, gallery_index, remove_items
from unibind.indexer.index.compaction import CompactionPolicy, SegmentSize, compact, plan
from unibind.indexer.index.fanout import Part, SegmentSet, merge_hits
from unibind.indexer.index.vector_store import VectorStore
from unibind.indexer.modalities.projection import load_projection
from unibind.indexer.runtime.device import Device
from unibind.indexer.runtime.faiss_lib import faiss
from unibind.indexer.index.readers import ReaderLeaseHolder
from unibind.indexer.store.vacuum import vacuum
from unibind.retrieval.search.cross_modal import CrossModalSearch, SearchFilter
from unibind.schema import Database, Item, Modality, Segment, Space, Tombstone
from unibind.schema.store_state import catalog_state
from tests.test_gallery import D_IN, LABELS, Setup, audio_space

CPU = Device()


# -- tiny real things --------------------------------------------------------------------------------
def modality(db: Database, setup: Setup) -> Modality:
    with db.session() as s:
        m = s.get(Modality, setup.modality_id)
        assert m is not None
        _ = m.space
        return m


def label_of(i: int) -> str:
    """Labels in turn dog / cat / bird, and every tenth item "rare" (few enough that removing them leaves
    tombstones: compaction rewrites a segment only when a fifth of it is gone)."""
    return "rare" if i % 10 == 0 else LABELS[i % 3]


def add(db: Database, home: Path, setup: Setup, raw: np.ndarray, start: int = 0, **kw: Any) -> None:
    """Add one batch of audio items (one segment)."""
    with db.session() as s:
        space = s.get(Space, setup.space_id)
    projection = load_projection(db, space, "audio", CPU, home=home)
    news = [NewItem(uri=f"clip-{start + i}", label=label_of(start + i)) for i in range(len(raw))]
    add_items(db, home, CPU, projection, news, raw, **kw)


def searcher(db: Database, home: Path, version: int | None = None) -> CrossModalSearch:
    with db.session() as s:
        space = s.scalars(select(Space)).one()
    return CrossModalSearch(db, home, CPU, space, "audio", version=version)


def live(db: Database) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(ids, vectors [n, d], labels) of the live items, by id: the exact reference's data."""
    with db.session() as s:
        rows = s.execute(select(Item.id, Item.vector, Item.label).where(Item.deleted_version.is_(None))
                         .order_by(Item.id)).all()
    return (np.array([r[0] for r in rows], dtype=np.int64),
            np.stack([np.frombuffer(r[1], dtype="<f4") for r in rows]) if rows else np.empty((0, 384), np.float32),
            [r[2] for r in rows])


def reference(queries: np.ndarray, ids: np.ndarray, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best by inner product in float64, ties broken by the smaller id."""
    # elementwise then summed: every column is summed the same way, so identical vectors tie exactly (a BLAS
    # product may round an edge column's block differently in the last bit)
    sims = (queries.astype(np.float64)[:, None, :] * vectors.astype(np.float64)[None, :, :]).sum(-1)  # [B, M]
    out_s, out_i = [], []
    for row in sims:
        order = np.lexsort((ids, -row))[: min(k, len(ids))]
        out_s.append(row[order])
        out_i.append(ids[order])
    return np.array(out_s), np.array(out_i)


def one_index(ids: np.ndarray, vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """The ids one flat FAISS index holding the same vectors answers."""
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(vectors.shape[1]))
    index.add_with_ids(np.ascontiguousarray(vectors), ids)
    return index.search(np.ascontiguousarray(queries, dtype=np.float32), min(k, len(ids)))[1]


def unit(rng: np.random.Generator, n: int, d: int = 384) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def segments(db: Database) -> list[Segment]:
    with db.session() as s:
        return list(s.scalars(select(Segment).where(Segment.dropped_version.is_(None)).order_by(Segment.id)))


# -- fan-out ------------------------------------------------------------------------------------------
def test_search_over_segments_equals_one_index_and_the_reference(db: Database, home: Path) -> None:
    setup = audio_space(db, home)
    rng = np.random.default_rng(0)
    start = 0
    for n in (37, 5, 60, 1, 23):  # five writes, five segments
        add(db, home, setup, rng.standard_normal((n, D_IN)).astype(np.float32), start)
        start += n
    assert len(segments(db)) == 5 and all(s.kind == f"items:{setup.modality_id}" for s in segments(db))
    assert remove_items(db, home, CPU, modality(db, setup), "rare") == 13  # tombstones across segments
    with db.session() as s:  # the segment of 5 lost a fifth and was rewritten; the others keep tombstones
        assert s.scalar(select(func.count()).select_from(Tombstone)) >= 10
    ids, vectors, labels = live(db)
    queries = unit(rng, 7)
    search = searcher(db, home)
    assert search.store.n_segments == 5
    for k in (1, 10, 50, 1000):
        hits = search.search(queries, k)
        ref_s, ref_i = reference(queries, ids, vectors, k)
        assert [[h.id for h in row] for row in hits] == ref_i.tolist()
        assert [[h.id for h in row] for row in hits] == one_index(ids, vectors, queries, k).tolist()
        np.testing.assert_allclose([[h.score for h in row] for row in hits], ref_s, atol=1e-5)
        assert all(h.label != "rare" for row in hits for h in row)
    for label in LABELS:  # filtered: exactly min(k, matching), the reference over the matching rows
        keep = np.array([lab == label for lab in labels])
        for k in (3, 200):
            hits = search.search(queries, k, SearchFilter(label=label))
            assert all(len(row) == min(k, int(keep.sum())) for row in hits)
            assert [[h.id for h in row] for row in hits] == reference(queries, ids[keep], vectors[keep], k)[1].tolist()


def test_equal_scores_are_ordered_by_id_across_segments(db: Database, home: Path) -> None:
    """The same features added three times: three segments of identical vectors, whose ties go by id."""
    setup = audio_space(db, home)
    raw = np.random.default_rng(3).standard_normal((9, D_IN)).astype(np.float32)
    for start in (0, 9, 18):
        add(db, home, setup, raw, start)
    ids, vectors, _ = live(db)
    queries = unit(np.random.default_rng(4), 3)
    for k in (2, 4, 27):
        hits = searcher(db, home).search(queries, k)
        assert [[h.id for h in row] for row in hits] == reference(queries, ids, vectors, k)[1].tolist()


def test_merge_hits_pads_and_orders() -> None:
    scores = np.array([[0.9, 0.5, -np.inf]], dtype=np.float32), np.array([[0.5, 0.7]], dtype=np.float32)
    ids = np.array([[7, 9, -1]]), np.array([[3, 4]])
    s, i = merge_hits(list(zip(scores, ids)), 6, 1)
    assert i.tolist() == [[7, 4, 3, 9, -1, -1]] and s[0, :4].tolist() == pytest.approx([0.9, 0.7, 0.5, 0.5])


@pytest.mark.parametrize("factory", ["IVF64,Flat", "HNSW16"])
def test_recall_of_segments_is_no_worse_than_one_index(factory: str) -> None:
    """Approximate segments: recall@10 against exact search, over 8 segments, is at least that of one index of the
    same type built over all the vectors, minus 0.01 (clustered data, 20,000 × 64)."""
    rng = np.random.default_rng(11)
    d, n, q = 64, 20_000, 200
    centres = unit(rng, 200, d)
    x = centres[rng.integers(0, 200, n)] + 0.35 * rng.standard_normal((n, d)).astype(np.float32) / np.sqrt(d)
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    queries = x[rng.choice(n, q, replace=False)] + 0.05 * unit(rng, q, d)
    queries = (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)
    ids = np.arange(1, n + 1, dtype=np.int64)
    exact = reference(queries, ids, x, 10)[1]

    def recall(found: np.ndarray) -> float:
        return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, exact)]))

    one = VectorStore.from_vectors(d, CPU, factory, ids, x)
    parts = []
    for chunk in np.array_split(np.arange(n), 8):
        store = VectorStore.from_vectors(d, CPU, factory, ids[chunk], x[chunk])
        parts.append(Part(len(parts) + 1, store, np.empty(0, np.int64), factory))
    fan = SegmentSet(parts, d, factory, 1)
    if "IVF" in factory:
        one.tune(nprobe=8)
        fan.tune(nprobe=8)
    else:
        one.tune(ef_search=32)
        fan.tune(ef_search=32)
    assert recall(fan.search(queries, 10)[1]) >= recall(one.search(queries, 10)[1]) - 0.01


# -- compaction ---------------------------------------------------------------------------------------
def test_plan_keeps_any_history_within_the_bound() -> None:
    """Simulated histories of writes of random sizes: after each write and the merges the plan asks for, at most
    max_segments remain; tombstone-heavy segments are rewritten; ``full`` asks for one."""
    policy = CompactionPolicy()
    rng = np.random.default_rng(5)
    for _ in range(20):
        sizes: list[SegmentSize] = []
        next_id = 1
        for _ in range(300):
            sizes.append(SegmentSize(next_id, int(rng.choice([1, 10, 1000, 5000, 100_000])), 0))
            next_id += 1
            while chosen := plan(sizes, policy):
                merged = [s for s in sizes if s.segment_id in chosen]
                sizes = [s for s in sizes if s.segment_id not in chosen]
                sizes.append(SegmentSize(next_id, sum(s.n_live for s in merged), 0))
                next_id += 1
            assert len(sizes) <= policy.max_segments
    assert plan([SegmentSize(1, 100, 30), SegmentSize(2, 100, 0)]) == [1]
    assert plan([SegmentSize(1, 100, 100)]) == [1]
    assert plan([SegmentSize(1, 100, 0)], full=True) == [] and plan([SegmentSize(1, 5, 0), SegmentSize(2, 5, 0)], full=True) == [1, 2]


def test_writes_are_compacted_and_answers_stay_exact(db: Database, home: Path) -> None:
    setup = audio_space(db, home)
    rng = np.random.default_rng(1)
    queries = unit(rng, 4)
    start = 0
    for n in [3] * 20:  # twenty small writes: tier 0 merges every eighth
        add(db, home, setup, rng.standard_normal((n, D_IN)).astype(np.float32), start)
        start += n
        assert len(segments(db)) < 8
        ids, vectors, _ = live(db)
        hits = searcher(db, home).search(queries, 10)
        assert [[h.id for h in row] for row in hits] == reference(queries, ids, vectors, 10)[1].tolist()
    remove_items(db, home, CPU, modality(db, setup), "rare")  # few: tombstones stay in the segments
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Tombstone)) > 0
    ids, vectors, _ = live(db)
    before = [[h.id for h in row] for row in searcher(db, home).search(queries, 10)]
    merges = compact(gallery_index(db, home, CPU, modality(db, setup)), full=True)
    assert merges and len(segments(db)) == 1
    vacuum(db, home, CPU)
    index = gallery_index(db, home, CPU, modality(db, setup))
    check = index.verify()
    assert check.ok and check.segments == 1 and check.n_file == len(ids), check.problems
    with db.session() as s:  # the tombstones went with the merged segments, and the dropped records with them
        assert s.scalar(select(func.count()).select_from(Tombstone)) == 0
        assert s.scalar(select(func.count(Segment.id))) == 1
    assert sorted(p.name for p in index.folder.glob("*.faiss")) == [index.files()[0].name]
    assert [[h.id for h in row] for row in searcher(db, home).search(queries, 10)] == before


# -- versions -----------------------------------------------------------------------------------------
def test_a_pinned_reader_sees_its_version_until_it_moves_on(db: Database, home: Path) -> None:
    """A search loaded at version v answers exactly as at v after items are removed, while a reader lease holds v;
    once the lease is gone and the vacuum passed v, it refreshes to the current version before answering."""
    setup = audio_space(db, home)
    rng = np.random.default_rng(2)
    add(db, home, setup, rng.standard_normal((30, D_IN)).astype(np.float32))
    add(db, home, setup, rng.standard_normal((30, D_IN)).astype(np.float32), 30)
    queries = unit(rng, 3)
    with db.session() as s:
        v = catalog_state(s)[0]
    old = searcher(db, home, version=v)
    at_v = [[(h.id, h.label, h.uri) for h in row] for row in old.search(queries, 20)]
    assert any(label == "cat" for row in at_v for _, label, _ in row)
    lease = ReaderLeaseHolder(db)
    try:
        lease.hold(v)
        remove_items(db, home, CPU, modality(db, setup), "cat")  # its vacuum keeps what version v sees
        with db.session() as s:
            cats = sum(label_of(i) == "cat" for i in range(60))
            assert s.scalar(select(func.count(Item.id)).where(Item.label == "cat")) == cats  # stamped, not deleted
        assert [[(h.id, h.label, h.uri) for h in row] for row in old.search(queries, 20)] == at_v
        fresh = searcher(db, home)
        assert all(h.label != "cat" for row in fresh.search(queries, 20) for h in row)
    finally:
        lease.close()
    report = vacuum(db, home, CPU)
    with db.session() as s:
        assert catalog_state(s)[0] >= report.horizon > v  # the versions that saw the removed rows are passed
        assert s.scalar(select(func.count(Item.id)).where(Item.label == "cat")) == 0  # now they go
    now = [[h.id for h in row] for row in old.search(queries, 20)]  # it moved on before answering
    assert old.version > v and now == [[h.id for h in row] for row in searcher(db, home).search(queries, 20)]


def test_a_replaced_corpus_answers_whole_to_a_pinned_search(db: Database, home: Path, tmp_path: Path,
                                                             minilm: Any) -> None:
    """Replacing a corpus while a reader holds the older version: that reader still gets exactly k hits with
    their texts and corpus names (multi-version rows), the next reader only the new corpus."""
    from unibind.indexer.readers.corpus import read_corpus
    from unibind.indexer.store.ingest import IngestConfig, ingest
    from tests.corpus_samples import ANIMALS, VEHICLES, write_json

    def put(data: dict[str, list[str]], replace: bool) -> None:
        corpus = read_corpus(write_json(tmp_path / "c.json", data))
        ingest(db, corpus, IngestConfig(name="kb", encoder="minilm", replace=replace), home=home, device=CPU,
               encoder=minilm)

    put(ANIMALS, False)
    with db.session() as s:
        space, v = s.scalars(select(Space)).one(), catalog_state(s)[0]
    q = minilm.encode_text(["a fish that lives in rivers"])
    old = CrossModalSearch(db, home, CPU, space, "descriptions", version=v)
    before = [(h.id, h.text, h.meta) for h in old.search(q, 5)[0]]
    with ReaderLeaseHolder(db) as lease:
        lease.hold(v)
        put(VEHICLES, True)
        after = old.search(q, 5)[0]
        assert [(h.id, h.text, h.meta) for h in after] == before and len(after) == 5
        assert all(h.meta["corpus"] == "kb" for h in after)
        new = CrossModalSearch(db, home, CPU, space, "descriptions").search(q, 5)[0]
        assert {h.label for h in new} <= set(VEHICLES) and not {h.id for h in new} & {i for i, _, _ in before}


def test_an_index_migrated_from_one_file_becomes_its_first_segment(db: Database, home: Path) -> None:
    """A store of the older layout (one recorded file per index) keeps its file as its first segment: nothing is
    encoded or rewritten, and the index verifies and answers as before."""
    from unibind.schema.database import migrate

    setup = audio_space(db, home)
    rng = np.random.default_rng(8)
    add(db, home, setup, rng.standard_normal((40, D_IN)).astype(np.float32))
    queries = unit(rng, 3)
    before = [[h.id for h in row] for row in searcher(db, home).search(queries, 10)]
    [path] = gallery_index(db, home, CPU, modality(db, setup)).files()
    migrate(db.engine, "0013", downgrade=True)  # the older layout: index_files
    from sqlalchemy import text

    with db.engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM index_files")).scalar() == 1
    migrate(db.engine)
    index = gallery_index(db, home, CPU, modality(db, setup))
    assert index.files() == [path] and index.verify().ok
    assert [[h.id for h in row] for row in searcher(db, home).search(queries, 10)] == before


def test_a_compaction_keeps_the_writes_made_while_it_merged(db: Database, home: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A compaction that read its segments, then was slow to write the merged one: meanwhile items were removed
    from the segments it merges and others added. Its publish keeps both: the removed rows are tombstoned in the
    merged segment, the new segment stays beside it; the answers equal the reference over the live rows."""
    from tests.test_concurrent_writers import PausedWrites

    setup = audio_space(db, home)
    rng = np.random.default_rng(12)
    for start in range(0, 50, 10):  # five segments
        add(db, home, setup, rng.standard_normal((10, D_IN)).astype(np.float32), start)
    paused = PausedWrites(monkeypatch)
    index = gallery_index(db, home, CPU, modality(db, setup))
    outcome = paused.run(lambda: compact(index, full=True, max_steps=1))
    assert paused.entered.wait(60), outcome
    removed = remove_items(db, home, CPU, modality(db, setup), "rare")  # tombstones in the segments it merges
    add(db, home, setup, rng.standard_normal((7, D_IN)).astype(np.float32), 50)
    paused.release.set()
    paused.thread.join(60)  # type: ignore[union-attr]
    assert "error" not in outcome and [(m.merged, m.rows) for m in outcome["value"]] == [(5, 50)], outcome
    assert removed == 5 and len(segments(db)) == 2  # the merged one and the add's
    with db.session() as s:  # the rows removed meanwhile are tombstoned in the merged segment
        merged = outcome["value"][0].segment_id
        assert s.scalar(select(func.count()).select_from(Tombstone).where(Tombstone.segment_id == merged)) == 5
    ids, vectors, labels = live(db)
    assert labels.count("rare") == 1 and len(ids) == 52  # the one added after the removal
    queries = unit(rng, 5)
    hits = searcher(db, home).search(queries, 60)
    assert [[h.id for h in row] for row in hits] == reference(queries, ids, vectors, 60)[1].tolist()
    assert gallery_index(db, home, CPU, modality(db, setup)).verify().ok
    [again] = compact(index, full=True)  # and the next merge folds them in
    assert (again.merged, again.rows, again.folded) == (2, 52, 5) and len(segments(db)) == 1
