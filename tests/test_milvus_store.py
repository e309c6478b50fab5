"""The store's indexes in Milvus (``--vectors milvus-lite:PATH``), on SQLite and PostgreSQL: the gallery, the
description index and recognition go through the same commands as on FAISS files and give the same answers, equal
to an exact NumPy reference; filtered gallery search returns exactly k when k items match; ``index verify`` /
``index rebuild`` / ``gallery verify`` / ``gallery rebuild`` work the same (a rebuild re-uploads stored vectors,
and moves an index between FAISS files and Milvus); each write inserts its rows into the index's one collection under
a segment token, a reader keeps the version it opened, and the rows of dropped segments go once no reader needs them.

Marked ``slow`` (each test starts an embedded milvus-lite server). Skipped without the milvus extra, except
under CI, where ``.ci/run`` installs it. ``UNIBIND_TEST_MILVUS_URL=milvus://HOST:PORT`` runs the same tests against
a Milvus server instead (e.g. the ``milvus`` package's standalone ``milvus-server``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from unibind.indexer.index.milvus_backend import MilvusBackend, close_shared
from unibind.indexer.index.milvus_index import collection_prefix, split_path
from unibind.indexer.index.vector_store import VectorStore
from unibind.indexer.runtime.device import Device
from unibind.indexer.store.contents import description_index
from unibind.retrieval.cli.main import main
from unibind.retrieval.recognition.backend_engine import BackendEngine
from unibind.retrieval.recognition.recognizer import Recognizer
from unibind.retrieval.search.cross_modal import CrossModalSearch, SearchFilter
from unibind.schema import Database, Item, Segment, Space
from unibind.schema.settings import parse_vectors_spec
from tests.corpus_samples import ANIMALS, VEHICLES, write_json
from tests.test_gallery import FILTERS, N, audio_space, exact_top, gallery_rows, reference, write_gallery
from tests.test_vector_backends import need_milvus

pytestmark = pytest.mark.slow


@pytest.fixture
def vectors(tmp_path: Path) -> str:
    """A milvus-lite folder of the test's own, or the Milvus server UNIBIND_TEST_MILVUS_URL names
    (``milvus://HOST:PORT``; collections are named by each test's store, so tests do not see each other's)."""
    need_milvus()
    return os.environ.get("UNIBIND_TEST_MILVUS_URL") or f"milvus-lite:{tmp_path / 'milvus'}"


def uri(vectors: str) -> str:
    found = parse_vectors_spec(vectors).uri
    assert found is not None
    return found


@pytest.fixture
def mdb(db_url: str, vectors: str) -> Iterator[Database]:
    """The test's store, with its index versions in the milvus-lite folder."""
    database = Database(db_url, vectors=vectors)
    yield database
    database.engine.dispose()
    close_shared(uri(vectors))  # the process's connection (and a milvus-lite folder's embedded server)


def run(db_url: str, home: Path, vectors: str | None, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    flags = ["--vectors", vectors] if vectors else []
    code = main(["--db", db_url, "--home", str(home), "--device", "cpu", *flags, *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def collections(db: Database, vectors: str) -> list[str]:
    """The Milvus collections of ``db``'s store."""
    with MilvusBackend(uri(vectors), None, 1) as b:
        return b.collections(collection_prefix(db.identity))


def records(db: Database) -> dict[str, list[str]]:
    """{index kind: the paths of its live segments, oldest first}."""
    out: dict[str, list[str]] = {}
    with db.session() as s:
        for r in s.scalars(select(Segment).where(Segment.dropped_version.is_(None)).order_by(Segment.id)):
            out.setdefault(r.kind, []).append(r.path)
    return out


def test_gallery_on_milvus_equals_the_exact_reference(mdb: Database, db_url: str, home: Path, tmp_path: Path,
                                                      vectors: str, capsys: pytest.CaptureFixture[str]) -> None:
    setup = audio_space(mdb, home)
    raw, metas = gallery_rows()
    feats, meta = write_gallery(tmp_path, raw, metas)
    code, out, err = run(db_url, home, vectors, "gallery", "add", "--modality", "audio", "--features", str(feats),
                         "--meta", str(meta), "--json", capsys=capsys)
    assert code == 0, err
    assert (json.loads(out)["total"], json.loads(out)["factory"]) == (N, "FLAT")
    assert [p[:7] for p in records(mdb)[f"items:{setup.modality_id}"]] == ["milvus:"]  # one segment: a collection

    ref = reference(raw, setup.w, setup.b)
    ids = np.arange(1, N + 1, dtype=np.int64)
    queries = reference(np.random.default_rng(3).standard_normal((6, raw.shape[1])).astype(np.float32), setup.w, setup.b)
    with mdb.session() as s:
        space = s.scalars(select(Space)).one()
    search = CrossModalSearch(mdb, home, Device(), space, "audio")
    assert [type(p.store).__name__ for p in search.store.parts] == ["MilvusIndex"]
    hits = search.search(queries, k=7)
    want_s, want_i = exact_top(queries, ids, ref, 7)
    assert [[h.id for h in row] for row in hits] == want_i.tolist()
    np.testing.assert_allclose([[h.score for h in row] for row in hits], want_s, atol=1e-5)

    for flt, keep in FILTERS:  # label, metadata, uri, no match: exactly min(k, matching), the exact ones
        mask = np.array([keep(i, m) for i, m in enumerate(metas)], dtype=bool)
        for k in (3, 40):
            got = search.search(queries, k=k, flt=flt)
            if not mask.any():
                assert got == [[] for _ in queries]
                continue
            want_s, want_i = exact_top(queries, ids[mask], ref[mask], k)
            assert [len(row) for row in got] == [min(k, int(mask.sum()))] * len(queries), flt
            assert [[h.id for h in row] for row in got] == want_i.tolist(), flt

    with mdb.session() as s:  # a label filter runs on the collection's own label column, counted in the store
        pushed = search._pushdown(s, SearchFilter(label="dog"))
        assert pushed is not None and pushed[1] == N // 3
        assert search._pushdown(s, SearchFilter(where=(("split", "test"),))) is None  # metadata: by keys

    code, out, err = run(db_url, home, vectors, "gallery", "verify", capsys=capsys)
    assert code == 0, out + err
    code, _, err = run(db_url, home, vectors, "gallery", "remove", "--modality", "audio", "--label", "dog", capsys=capsys)
    assert code == 0, err
    after = CrossModalSearch(mdb, home, Device(), space, "audio").search(queries, k=N)
    assert all(metas[h.id - 1]["label"] != "dog" for row in after for h in row)
    assert [len(row) for row in after] == [N - N // 3] * len(queries)
    code, out, err = run(db_url, home, vectors, "gallery", "verify", capsys=capsys)
    assert code == 0, out + err


def test_descriptions_on_milvus_verify_rebuild_and_move(mdb: Database, db_url: str, home: Path, tmp_path: Path,
                                                        vectors: str, capsys: pytest.CaptureFixture[str]) -> None:
    animals = write_json(tmp_path / "animals.json", ANIMALS)
    code, _, err = run(db_url, home, vectors, "ingest", str(animals), "--name", "animals", "--encoder", "minilm",
                         capsys=capsys)
    assert code == 0, err
    texts = ["a striped wild cat", "a small pet that barks"]
    code, out, err = run(db_url, home, vectors, "search", "--target", "descriptions", "-k", "6", "--json",
                         *[a for t in texts for a in ("--text", t)], capsys=capsys)
    assert code == 0, err
    on_milvus = json.loads(out)
    code, out, err = run(db_url, home, vectors, "index", "verify", "--json", capsys=capsys)
    assert code == 0, err
    check = json.loads(out)[0]
    assert check["ok"] and check["file"] == check["store"] and check["location"].startswith("Milvus at ")

    filters = (["--label", "goldfish"], ["--where", "corpus=animals"], ["--label", "tench", "--where", "corpus=animals"],
               ["--label", "no such category"], ["--where", "corpus=nothing"])
    filtered = {}
    for flt in filters:  # on the collection's category and corpus columns
        code, out, err = run(db_url, home, vectors, "search", "--target", "descriptions", "-k", "4", "--json", *flt,
                             "--text", texts[0], capsys=capsys)
        assert code == 0, err
        filtered[tuple(flt)] = json.loads(out)

    # the same store read with FAISS files: the record names a collection, so it is refused with what to do
    code, _, err = run(db_url, home, None, "search", "--target", "descriptions", "--text", texts[0], capsys=capsys)
    assert code == 3 and "Milvus collection" in err and "--vectors" in err
    # and a writer without the setting does not move it behind the readers' backs: refused, nothing published
    vehicles = write_json(tmp_path / "vehicles.json", VEHICLES)
    code, _, err = run(db_url, home, None, "ingest", str(vehicles), "--name", "vehicles", "--encoder", "minilm",
                       capsys=capsys)
    assert code == 3 and "--vectors" in err and "index rebuild" in err
    code, out, _ = run(db_url, home, None, "corpus", "list", "--json", capsys=capsys)
    assert [c["name"] for c in json.loads(out)] == ["animals"]
    # moved to FAISS files by a rebuild (stored vectors, no encoding), the same answers
    code, _, err = run(db_url, home, None, "index", "rebuild", capsys=capsys)
    assert code == 0, err
    code, out, err = run(db_url, home, None, "search", "--target", "descriptions", "-k", "6", "--json",
                         *[a for t in texts for a in ("--text", t)], capsys=capsys)
    assert code == 0, err
    on_faiss = json.loads(out)
    assert [[h["id"] for h in q["hits"]] for q in on_faiss] == [[h["id"] for h in q["hits"]] for q in on_milvus]
    np.testing.assert_allclose([[h["score"] for h in q["hits"]] for q in on_faiss],
                               [[h["score"] for h in q["hits"]] for q in on_milvus], atol=1e-5)
    for flt, want in filtered.items():
        code, out, err = run(db_url, home, None, "search", "--target", "descriptions", "-k", "4", "--json", *flt,
                             "--text", texts[0], capsys=capsys)
        assert code == 0, err
        got = json.loads(out)
        assert [[h["id"] for h in q["hits"]] for q in got] == [[h["id"] for h in q["hits"]] for q in want], flt
    assert [len(q["hits"]) for q in filtered[("--label", "goldfish")]] == [3]  # exactly the 3 that match
    assert filtered[("--label", "no such category")][0]["hits"] == []

    # and back to Milvus as an HNSW collection; a bad type is refused before any work
    code, _, err = run(db_url, home, vectors, "index", "rebuild", "--factory", "IVF1024,PQ8", capsys=capsys)
    assert code == 2 and "FLAT, IVF_FLAT, IVF_SQ8, HNSW" in err
    code, _, err = run(db_url, home, vectors, "index", "rebuild", "--factory", "HNSW", capsys=capsys)
    assert code == 0, err
    code, out, _ = run(db_url, home, vectors, "index", "verify", "--json", capsys=capsys)
    assert code == 0 and json.loads(out)[0]["ok"]

    # a lost collection is reported and repaired by one command
    [name] = {split_path(p)[0] for p in records(mdb)["descriptions"]}
    with MilvusBackend(uri(vectors), None, 1) as b:
        b.drop_collection(name)
    code, out, _ = run(db_url, home, vectors, "index", "verify", capsys=capsys)
    assert code == 1 and "STALE" in out and f"Milvus collection '{name}' is missing" in out
    code, _, err = run(db_url, home, vectors, "search", "--target", "descriptions", "--text", texts[0], capsys=capsys)
    assert code == 3 and "index rebuild" in err
    code, _, err = run(db_url, home, vectors, "index", "rebuild", capsys=capsys)
    assert code == 0, err
    code, out, _ = run(db_url, home, vectors, "index", "verify", capsys=capsys)
    assert code == 0, out


def test_writes_insert_only_their_rows_into_one_collection_and_readers_keep_their_version(
        mdb: Database, db_url: str, home: Path, tmp_path: Path, vectors: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Each ingest inserts only its own rows, under a segment token, into the index's one collection; the rows of a
    write whose process died (its record left building) go before its record with the next write; a reader pinned
    to an older version (its lease held) keeps searching exactly that version after a delete, and the deleted
    segment's rows go once no reader needs them, while the collection stays."""
    from datetime import datetime, timedelta, timezone

    from unibind.indexer.index.milvus_backend import seg_scope
    from unibind.indexer.index.readers import ReaderLeaseHolder
    from unibind.schema import SegmentState
    from unibind.schema.store_state import catalog_state

    animals, vehicles = write_json(tmp_path / "a.json", ANIMALS), write_json(tmp_path / "v.json", VEHICLES)
    code, _, err = run(db_url, home, vectors, "ingest", str(animals), "--name", "animals", "--encoder", "minilm",
                       capsys=capsys)
    assert code == 0, err
    with mdb.session() as s:
        space, version = s.scalars(select(Space)).one(), catalog_state(s)[0]
    index = description_index(mdb, space, home, Device())
    [first] = records(mdb)["descriptions"]
    name, token = split_path(first)
    assert token is not None
    reader = CrossModalSearch(mdb, home, Device(), space, "descriptions", version=version)  # a replica, pinned
    n_first = reader.store.ntotal
    q = np.random.default_rng(0).standard_normal((2, space.dim)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    before = [[(h.id, h.text) for h in row] for row in reader.search(q, 5)]

    def rows(tok: int | None = None) -> int:
        with MilvusBackend(uri(vectors), name, space.dim, create=False, segmented=True,
                           fields=index.field_types) as b:
            return b.count(seg_scope([tok]) if tok is not None else "")

    assert rows(token) == rows() == n_first

    # a write whose process died after inserting its rows: its record is building, with a lapsed heartbeat
    orphan = index.place.new_path(index.index_name, "FLAT", [first])
    with mdb.transaction() as s:
        s.add(Segment(space_id=space.id, kind="descriptions", state=SegmentState.BUILDING, path=orphan,
                      factory="FLAT", group_ids=[], owner="elsewhere/1/1/1/1",
                      heartbeat_at=datetime.now(timezone.utc) - timedelta(days=1)))
    orphan_store = VectorStore.from_vectors(space.dim, Device(), "Flat", np.array([10_000]), q[:1])
    index.place.write(orphan, orphan_store, "FLAT", np.array([10_000]), {"category": np.array([1]),
                                                                       "corpus": np.array([1])})
    orphan_token = split_path(orphan)[1]
    assert split_path(orphan)[0] == name and rows(orphan_token) == 1

    lease = ReaderLeaseHolder(mdb)
    lease.hold(version)
    code, _, err = run(db_url, home, vectors, "ingest", str(vehicles), "--name", "vehicles", "--encoder", "minilm",
                       capsys=capsys)
    assert code == 0, err
    assert rows(orphan_token) == 0  # what the dead write inserted went, and its record after it
    with mdb.session() as s:
        assert s.scalar(select(func.count(Segment.id)).where(Segment.path == orphan)) == 0
    [again, second] = records(mdb)["descriptions"]
    assert again == first and split_path(second)[0] == name  # the first segment was not rewritten: one collection
    fresh = index.load()
    with mdb.session() as s:
        assert fresh.ntotal == index.store_count(s) == rows() > n_first
    code, _, err = run(db_url, home, vectors, "corpus", "delete", "animals", capsys=capsys)
    assert code == 0, err
    assert rows(token) == n_first  # kept for the reader
    assert [[(h.id, h.text) for h in row] for row in reader.search(q, 5)] == before  # its version, whole
    lease.close()
    code, _, err = run(db_url, home, vectors, "index", "compact", capsys=capsys)  # the vacuum runs
    assert code == 0, err
    assert rows(token) == 0 and rows() == fresh.ntotal - n_first
    assert [c for c in collections(mdb, vectors) if f"s{space.id}_descriptions_" in c] == [name]
    code, out, _ = run(db_url, home, vectors, "index", "verify", capsys=capsys)
    assert code == 0, out

    # rows that no record names (a write that could not clean up after itself) fail the verify; a rebuild repairs
    stray = index.place.new_path(index.index_name, "FLAT", [first])
    stray_store = VectorStore.from_vectors(space.dim, Device(), "Flat", np.array([10_001]), q[:1])
    index.place.write(stray, stray_store, "FLAT", np.array([10_001]), {"category": np.array([1]),
                                                                      "corpus": np.array([1])})
    code, out, _ = run(db_url, home, vectors, "index", "verify", capsys=capsys)
    assert code == 1 and "1 rows of 1 segment token(s) that no record names" in out, out

    # a rebuild fills a new collection and switches to it in one record flip; the old one goes with the vacuum
    want = CrossModalSearch(mdb, home, Device(), space, "descriptions").search(q, 5)
    code, _, err = run(db_url, home, vectors, "index", "rebuild", capsys=capsys)
    assert code == 0, err
    [rebuilt] = records(mdb)["descriptions"]
    assert split_path(rebuilt)[0] != name and split_path(rebuilt)[0].startswith(name.rsplit("_", 1)[0])
    assert [c for c in collections(mdb, vectors) if f"s{space.id}_descriptions_" in c] == [split_path(rebuilt)[0]]
    got = CrossModalSearch(mdb, home, Device(), space, "descriptions").search(q, 5)
    assert [[h.id for h in row] for row in got] == [[h.id for h in row] for row in want]
    code, out, _ = run(db_url, home, vectors, "index", "verify", capsys=capsys)
    assert code == 0, out


def test_recognition_on_milvus_equals_the_dense_engine(mdb: Database, db_url: str, home: Path, tmp_path: Path,
                                                       vectors: str, capsys: pytest.CaptureFixture[str],
                                                       minilm) -> None:  # type: ignore[no-untyped-def]
    animals = write_json(tmp_path / "a.json", {**ANIMALS, **VEHICLES})
    code, _, err = run(db_url, home, vectors, "ingest", str(animals), "--name", "animals", "--encoder", "minilm",
                         capsys=capsys)
    assert code == 0, err
    texts = ["a striped wild cat", "a small pet that barks", "a vehicle with two wheels", "it flies"]
    for top_m in (1, 3):
        rec = Recognizer(mdb, Device(), encoder="minilm", top_m=top_m, encoder_obj=minilm)
        engine = rec.engine("faiss", batch=64)
        assert isinstance(engine, BackendEngine)
        labels = rec.categories[::2]
        for lab in (None, labels):
            got = rec.recognize_texts(texts, k=3, labels=lab, engine="faiss")
            want = rec.recognize_texts(texts, k=3, labels=lab, engine="dense")
            assert [g.labels for g in got] == [w.labels for w in want]
            np.testing.assert_allclose([g.scores for g in got], [w.scores for w in want], atol=1e-5)
    # the second recognizer (another replica) reuses the filled collection of the same table
    centre_collections = [c for c in collections(mdb, vectors) if "_centres_" in c]
    again = Recognizer(mdb, Device(), encoder="minilm", top_m=3, encoder_obj=minilm)
    again.engine("faiss", batch=64)
    assert [c for c in collections(mdb, vectors) if "_centres_" in c] == centre_collections
    # a collection evicted under a live recognizer (by new tables elsewhere) is made again on its next query
    want = again.recognize_texts(texts, k=3, engine="dense")
    name = again.engine("faiss", batch=64).backend.collection  # type: ignore[attr-defined]
    with MilvusBackend(uri(vectors), None, 1) as b:
        b.drop_collection(name)
    got = again.recognize_texts(texts, k=3, engine="faiss")
    assert [g.labels for g in got] == [w.labels for w in want]
    np.testing.assert_allclose([g.scores for g in got], [w.scores for w in want], atol=1e-5)


def test_a_milvus_lite_folder_open_in_another_process_is_named_with_the_way_to_share_it(tmp_path: Path) -> None:
    need_milvus()
    import subprocess
    import sys

    from unibind.schema.errors import Unavailable

    folder = tmp_path / "lite"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\n"
        "from unibind.indexer.index.milvus_backend import MilvusBackend\n"
        f"b = MilvusBackend({str(folder)!r}, 'rows', 4)\n"
        "print('open', flush=True)\n"
        "time.sleep(120)\n")], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        with pytest.raises(Unavailable, match=r"one process at a time may open it.*milvus-lite server --data-dir"):
            MilvusBackend(str(folder), "rows", 4)
    finally:
        holder.kill()
        holder.wait(timeout=30)


def test_an_image_gallery_of_the_other_place_is_refused(tmp_path: Path, vectors: str,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """An image gallery written to FAISS files, added to under --vectors milvus…: one line naming the setting and
    the move (``gallery add`` checks it before encoding the images), and nothing is written."""
    from tests.image_site import build_image_site, draw

    site = build_image_site(tmp_path / "site")
    image = draw(tmp_path / "new.png", (200, 30, 30), "disc")
    database = Database(site.url)
    try:
        with database.session() as s:
            before = s.scalar(select(func.count(Item.id)))
        code, _, err = run(site.url, site.home, vectors, "gallery", "add", "--modality", "image", "--files",
                           str(image), capsys=capsys)
        assert code == 3 and "--vectors" in err and "gallery rebuild" in err, err
        with database.session() as s:
            assert s.scalar(select(func.count(Item.id))) == before
    finally:
        database.engine.dispose()
        close_shared(uri(vectors))


def test_segments_of_the_earlier_one_collection_per_segment_layout_stay_readable_and_move_on_merge(
        mdb: Database, db_url: str, home: Path, tmp_path: Path, vectors: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A store written before segmented collections (each segment a collection of its own, keyed by the row key)
    is searched and verified as it is; the next write goes to a segmented collection beside it, and a merge moves
    the old segment's rows there and drops the old collection."""
    from unibind.indexer.index.places import content_digest

    animals, vehicles = write_json(tmp_path / "a.json", ANIMALS), write_json(tmp_path / "v.json", VEHICLES)
    code, _, err = run(db_url, home, vectors, "ingest", str(animals), "--name", "animals", "--encoder", "minilm",
                       capsys=capsys)
    assert code == 0, err
    with mdb.session() as s:
        space = s.scalars(select(Space)).one()
    index = description_index(mdb, space, home, Device())
    [path] = records(mdb)["descriptions"]
    q = np.random.default_rng(1).standard_normal((3, space.dim)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    want = [[h.id for h in row] for row in CrossModalSearch(mdb, home, Device(), space, "descriptions").search(q, 6)]

    # rewrite that segment in the earlier layout: its own collection, the row key as primary key
    ids, vecs = index.vectors_at(None)
    legacy = f"{collection_prefix(mdb.identity)}s{space.id}_descriptions_{1234567890123:013d}_0badc0de"
    with mdb.session() as s:
        columns = index.fields_of(s, ids)
    with MilvusBackend(uri(vectors), legacy, space.dim, fields=index.field_types) as b:
        b.upsert(ids, vecs, columns)
        b.flush()
    index.place.remove_recorded([path], index.index_name, space.dim)  # its rows in the segmented collection
    with mdb.transaction() as s:
        seg = s.scalars(select(Segment).where(Segment.path == path)).one()
        seg.path, seg.file_sha256 = f"milvus:{legacy}", content_digest(ids, vecs)

    got = [[h.id for h in row] for row in CrossModalSearch(mdb, home, Device(), space, "descriptions").search(q, 6)]
    assert got == want
    code, out, _ = run(db_url, home, vectors, "index", "verify", capsys=capsys)
    assert code == 0, out
    code, _, err = run(db_url, home, vectors, "ingest", str(vehicles), "--name", "vehicles", "--encoder", "minilm",
                       capsys=capsys)
    assert code == 0, err
    [old, new] = records(mdb)["descriptions"]
    assert old == f"milvus:{legacy}" and split_path(new)[1] is not None
    code, _, err = run(db_url, home, vectors, "index", "compact", "--full", capsys=capsys)
    assert code == 0, err
    [merged] = records(mdb)["descriptions"]
    assert split_path(merged)[0] == split_path(new)[0]  # into the segmented collection
    assert legacy not in collections(mdb, vectors)
    code, out, _ = run(db_url, home, vectors, "index", "verify", capsys=capsys)
    assert code == 0, out
    both = CrossModalSearch(mdb, home, Device(), space, "descriptions").search(q, 200)
    assert {h.id for row in both for h in row} >= {i for row in want for i in row}
