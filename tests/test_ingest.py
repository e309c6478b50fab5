"""Ingestion round trips on SQLite and PostgreSQL: counts, ids, search, incremental add, replace,
delete, verify and rebuild — with the real MiniLM encoder."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from unibind.indexer.store.contents import corpus_state, description_index
from unibind.indexer.store.removal import delete_corpus, reap_abandoned
from unibind.indexer.readers.corpus import read_corpus
from unibind.indexer.index.descriptions import StaleIndexError
from unibind.indexer.encoders.base import Encoder
from unibind.indexer.store.ingest import IngestConfig, ingest
from unibind.indexer.runtime.vectors import from_bytes
from unibind.retrieval.search.cross_modal import CrossModalSearch, Hit
from unibind.schema import Corpus, CorpusStatus, Database, Description, Segment, Space
from tests.corpus_samples import ANIMALS, VEHICLES, write_json, write_jsonl


class CountingEncoder(Encoder):
    """The real encoder, recording which texts it was asked to encode."""

    def __init__(self, inner: Encoder) -> None:
        self.inner, self.spec, self.dim, self.device = inner, inner.spec, inner.dim, inner.device
        self.seen: list[str] = []

    def encode_text(self, texts: Sequence[str], *, batch_size: int = 256, progress: bool | None = None) -> np.ndarray:
        self.seen += list(texts)
        return self.inner.encode_text(texts, batch_size=batch_size, progress=progress)

    def _text_batch(self, texts: Sequence[str]) -> np.ndarray:
        raise AssertionError("not used")


def _ingest(db: Database, home: Path, path: Path, name: str, encoder: Encoder, **kw) -> object:  # type: ignore[no-untyped-def]
    return ingest(db, read_corpus(path), IngestConfig(name=name, encoder="minilm", chunk_size=4, **kw),
                  home=home, device=encoder.device, encoder=encoder)


def _space(db: Database) -> Space:
    with db.session() as s:
        return s.scalars(select(Space)).one()


def _searcher(db: Database, home: Path, encoder: Encoder) -> CrossModalSearch:
    return CrossModalSearch(db, home, encoder.device, _space(db), "descriptions")


def _search(db: Database, home: Path, encoder: Encoder, texts: list[str], k: int) -> list[list[Hit]]:
    """The descriptions nearest to each text: the search a user runs (`unibind search-descriptions`)."""
    return _searcher(db, home, encoder).search(encoder.encode_text(texts), k=k)


def _stored(db: Database, corpus: str | None = None) -> dict[int, tuple[str, np.ndarray]]:
    stmt = select(Description.id, Description.text, Description.vector).join(Corpus)
    if corpus:
        stmt = stmt.where(Corpus.name == corpus)
    with db.session() as s:
        return {i: (t, from_bytes([v], 384)[0]) for i, t, v in s.execute(stmt)}


def test_round_trip(db: Database, home: Path, tmp_path: Path, minilm: Encoder) -> None:
    report = _ingest(db, home, write_jsonl(tmp_path / "animals.jsonl", ANIMALS), "animals", minilm, source="hand-written")
    n = sum(len(v) for v in ANIMALS.values())
    assert (report.n_descriptions, report.n_categories, report.n_duplicates) == (n, 3, 0)
    with db.session() as s:
        corpus = s.scalars(select(Corpus)).one()
        assert (corpus.name, corpus.status, corpus.n_descriptions, corpus.source) == ("animals", CorpusStatus.COMPLETE, n, "hand-written")
        assert s.scalars(select(Description.meta).where(Description.text.like("A tench is%"))).one() == {"n": 0}
    stored = _stored(db)
    index = description_index(db, _space(db), home, minilm.device)
    store = index.load()
    assert sorted(store.ids().tolist()) == sorted(stored)  # FAISS ids are the rows' primary keys
    texts = [t for t, _ in stored.values()]
    np.testing.assert_allclose(np.stack([v for _, v in stored.values()]), minilm.encode_text(texts), atol=1e-6)
    for (i, (text, _)), hits in zip(stored.items(), _search(db, home, minilm, texts, k=3)):
        assert hits[0].id == i and hits[0].text == text and hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert index.verify().ok


def test_search_equals_numpy_brute_force(db: Database, home: Path, tmp_path: Path, minilm: Encoder) -> None:
    _ingest(db, home, write_json(tmp_path / "a.json", {**ANIMALS, **VEHICLES}), "all", minilm)
    stored = _stored(db)
    ids = np.array(list(stored))
    x = np.stack([v for _, v in stored.values()])
    queries = ["a red vehicle that puts out fires", "an orange pet fish", "two wheels"]
    q = minilm.encode_text(queries)
    order = np.argsort(-(q @ x.T), axis=1, kind="stable")[:, :5]
    hits = _search(db, home, minilm, queries, k=5)
    for row, ref in zip(hits, order):
        assert [h.id for h in row] == ids[ref].tolist()
    assert hits[0][0].label == "fire truck" and hits[1][0].label == "goldfish"


def test_incremental_add_does_not_reencode(db: Database, home: Path, tmp_path: Path, minilm: Encoder) -> None:
    counting = CountingEncoder(minilm)
    _ingest(db, home, write_json(tmp_path / "a.json", ANIMALS), "animals", counting)
    before = description_index(db, _space(db), home, minilm.device).load()
    counting.seen.clear()
    _ingest(db, home, write_json(tmp_path / "v.json", VEHICLES), "vehicles", counting)
    assert sorted(counting.seen) == sorted(t for v in VEHICLES.values() for t in v)
    after = description_index(db, _space(db), home, minilm.device).load()
    assert set(before.ids()) < set(after.ids()) and after.ntotal == len(_stored(db))
    index = description_index(db, _space(db), home, minilm.device)
    with db.session() as s:  # the second ingest added a segment of its own corpus: nothing was rewritten
        segments = index.segments(s)
        assert [seg.n_vectors for seg in segments] == [len(before.ids()), len(after.ids()) - len(before.ids())]
        assert s.scalar(select(func.count(Segment.id))) == 2  # no history, no unfinished segment
    assert sorted(p.name for p in index.folder.glob("*.faiss")) == sorted(Path(seg.path).name for seg in segments)


def test_name_conflict_replace_and_delete(db: Database, home: Path, tmp_path: Path, minilm: Encoder) -> None:
    path = write_json(tmp_path / "a.json", ANIMALS)
    _ingest(db, home, path, "kb", minilm)
    _ingest(db, home, write_json(tmp_path / "v.json", VEHICLES), "vehicles", minilm)
    with pytest.raises(ValueError, match="corpus 'kb' already exists .* use --replace"):
        _ingest(db, home, path, "kb", minilm)
    with db.session() as s:
        assert s.scalar(select(func.count(Corpus.id))) == 2  # the failed attempt left nothing
    small = write_json(tmp_path / "small.json", {"tench": ANIMALS["tench"][:2]})
    _ingest(db, home, small, "kb", minilm, replace=True)
    assert len(_stored(db, "kb")) == 2
    index = description_index(db, _space(db), home, minilm.device)
    assert index.verify().ok and index.load().ntotal == 2 + sum(len(v) for v in VEHICLES.values())
    with db.session() as s:
        kb_id = s.scalars(select(Corpus.id).where(Corpus.name == "kb")).one()
    assert delete_corpus(db, kb_id, home, minilm.device) == 2
    assert sorted(index.load().ids()) == sorted(_stored(db, "vehicles")) and index.verify().ok
    hits = _search(db, home, minilm, ["A tench is a freshwater fish"], k=20)[0]
    assert {h.meta["corpus"] for h in hits if h.meta} == {"vehicles"} and all(h.meta for h in hits)


def test_hnsw_factory_delete_rebuilds(db: Database, home: Path, tmp_path: Path, minilm: Encoder) -> None:
    _ingest(db, home, write_json(tmp_path / "a.json", ANIMALS), "animals", minilm, factory="HNSW16")
    _ingest(db, home, write_json(tmp_path / "v.json", VEHICLES), "vehicles", minilm)
    with db.session() as s:
        animals = s.scalars(select(Corpus.id).where(Corpus.name == "animals")).one()
    delete_corpus(db, animals, home, minilm.device)  # HNSW cannot remove ids: its segment is dropped whole
    index = description_index(db, _space(db), home, minilm.device)
    assert index.verify().ok
    with db.session() as s:
        assert index.configured_factory(s) == "HNSW16"


def test_verify_detects_stale_file_and_rebuild_repairs(db: Database, home: Path, tmp_path: Path, minilm: Encoder) -> None:
    _ingest(db, home, write_json(tmp_path / "a.json", ANIMALS), "animals", minilm)
    _ingest(db, home, write_json(tmp_path / "v.json", VEHICLES), "vehicles", minilm)
    index = description_index(db, _space(db), home, minilm.device)
    first, second = index.files()
    shutil.copy(first, second)  # another segment's file in its place: it disagrees with its record and the store
    check = index.verify()
    assert not check.ok and any("bytes, the record says" in p for p in check.problems), check.problems
    with pytest.raises(StaleIndexError, match="unibind index rebuild"):
        _searcher(db, home, minilm)
    second.unlink()
    assert any("missing" in p for p in index.verify().problems)
    rec = index.rebuild("IVF2,Flat")
    assert rec.factory == "IVF2,Flat" and rec.n_vectors == len(_stored(db))
    assert index.verify().ok
    assert sorted(index.load().ids()) == sorted(_stored(db))


def test_reap_removes_dead_ingests_only_and_hidden_until_complete(db: Database, home: Path, tmp_path: Path,
                                                                   minilm: Encoder) -> None:
    from datetime import datetime, timedelta, timezone

    from unibind.indexer.runtime.lease import current_owner

    _ingest(db, home, write_json(tmp_path / "a.json", ANIMALS), "animals", minilm)
    now = datetime.now(timezone.utc)
    owners = {  # what killed runs leave (a dead process here, a silent one elsewhere), and a live run's rows
        "dead": (current_owner().rsplit("/", 2)[0] + "/999999999/1", now),
        "silent": ("otherhost/abcd1234/1/42/7", now - timedelta(minutes=10)),
        "remote": ("otherhost/abcd1234/1/43/7", now),
        "live": (current_owner(), now),
        "hung": (current_owner(), now - timedelta(minutes=10)),  # its process lives but its lease ran out
    }
    with db.transaction() as s:
        space = s.scalars(select(Space)).one()
        cat = s.scalars(select(Description.category_id)).first()
        for name, (owner, beat) in owners.items():
            c = Corpus(space_id=space.id, name=f"~ingesting-{name}", target_name=name, status=CorpusStatus.INGESTING,
                       owner=owner, heartbeat_at=beat)
            s.add(c)
            s.flush()
            s.add(Description(corpus_id=c.id, category_id=cat, text=f"half {name}", text_hash="0" * 40,
                              vector=b"\0" * 4 * 384))
    with db.session() as s:
        states = {c.target_name: corpus_state(c) for c in s.scalars(select(Corpus).where(Corpus.target_name.is_not(None)))}
    assert states == {"dead": "interrupted", "silent": "interrupted", "remote": "ingesting", "live": "ingesting",
                      "hung": "interrupted"}
    index = description_index(db, space, home, minilm.device)
    assert index.verify().ok  # the hidden corpora are not part of what the file must hold
    assert sorted(reap_abandoned(db)) == ["dead", "hung", "silent"]
    with db.session() as s:
        left = set(s.scalars(select(Description.text).where(Description.text.like("half %"))))
    assert left == {"half remote", "half live"}  # a live process's ingest is never touched
    assert reap_abandoned(db) == []

    with db.transaction() as s:  # a killed ingest that had created its own space: the space goes with it
        other = Space(encoder="st:/elsewhere", dim=384)
        s.add(other)
        s.flush()
        s.add(Corpus(space_id=other.id, name="~ingesting-new", target_name="new", status=CorpusStatus.INGESTING,
                     owner=owners["dead"][0], heartbeat_at=now, created_space=True))
    assert reap_abandoned(db) == ["new"]
    with db.session() as s:
        assert [sp.encoder for sp in s.scalars(select(Space))] == ["minilm"]


def test_no_records_is_an_error(db: Database, home: Path, minilm: Encoder) -> None:
    from unibind.indexer.readers.corpus import CorpusData

    empty = CorpusData(path="x.json", format="json", records=[], n_duplicates=0, file_sha256="0" * 64)
    with pytest.raises(ValueError, match="x.json: no descriptions to ingest"):
        ingest(db, empty, IngestConfig(name="e", encoder="minilm"), home=home, device=minilm.device, encoder=minilm)


@pytest.mark.parametrize("name", ["", "  ", "~hidden", "x" * 201, "a\nb"])
def test_bad_corpus_names(name: str) -> None:
    with pytest.raises(ValueError, match="corpus name"):
        IngestConfig(name=name, encoder="minilm")


def test_ingest_with_tiny_open_clip(db_url: str, home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The default encoder family through the CLI: a tiny real open_clip checkpoint defines its own space."""
    import json

    from unibind.retrieval.cli.main import main
    from tiny_models import make_tiny_open_clip

    spec = make_tiny_open_clip(tmp_path / "clip")
    base = ["--db", db_url, "--home", str(home)]
    assert main([*base, "ingest", str(write_json(tmp_path / "a.json", ANIMALS)), "--name", "animals", "--encoder", spec]) == 0
    capsys.readouterr()
    assert main([*base, "search-descriptions", ANIMALS["goldfish"][1], "-k", "1", "--json"]) == 0
    hit = json.loads(capsys.readouterr().out)[0]
    assert hit["text"] == ANIMALS["goldfish"][1] and hit["score"] == pytest.approx(1.0, abs=1e-5)
    assert main([*base, "corpus", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["space"] == spec


def test_same_size_file_with_other_ids_is_stale(db: Database, home: Path, tmp_path: Path, minilm: Encoder) -> None:
    from unibind.indexer.index.vector_store import VectorStore

    _ingest(db, home, write_json(tmp_path / "a.json", ANIMALS), "animals", minilm)
    index = description_index(db, _space(db), home, minilm.device)
    store = index.load()
    forged = VectorStore.create(store.dim, minilm.device)
    forged.add(store.ids() + 1000, np.stack([v for _, v in _stored(db).values()]))  # same count, other ids
    forged.save(index.files()[0])
    with pytest.raises(StaleIndexError, match="not the 10 of dim 384 with the ids its record names"):
        index.load()
    assert not index.verify().ok


def test_failed_ingest_leaves_no_space_and_bad_factory_fails_first(db: Database, home: Path, tmp_path: Path, minilm: Encoder) -> None:
    counting = CountingEncoder(minilm)
    path = write_json(tmp_path / "a.json", ANIMALS)
    with pytest.raises(ValueError, match="factory string 'Bogus' is not valid"):
        _ingest(db, home, path, "animals", counting, factory="Bogus")
    assert counting.seen == []  # rejected before anything was encoded
    from unibind.indexer.index.data_home import DataHome

    folder = DataHome(db, home).index_dir
    folder.parent.mkdir(parents=True, exist_ok=True)
    folder.write_text("a file where the index folder should be")  # the segment cannot be written
    with pytest.raises(OSError):
        _ingest(db, home, path, "animals", counting)
    assert counting.seen  # it failed after encoding, when it wrote its segment
    with db.session() as s:  # the failed ingest took its new space with it, and its segment's record
        assert s.scalar(select(func.count(Space.id))) == 0 and s.scalar(select(func.count(Corpus.id))) == 0
        assert s.scalar(select(func.count(Segment.id))) == 0
