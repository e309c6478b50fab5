"""The gallery and cross-modal search on SQLite and PostgreSQL: ``gallery add`` stores items and indexes them under
their primary keys, ``search`` (unfiltered and filtered by label, metadata and uri) equals an exact NumPy
reference, hits are hydrated in one query per call, a new head re-projects the gallery, removal and stale files
are handled, and bad input writes nothing.

The feature modality ``audio`` gets a head with fixed seeded weights (no training), so the exact reference of an
item's vector is ``normalize(raw @ W.T + b)``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import event, func, select

from unibind.indexer.index.data_home import DataHome
from unibind.indexer.runtime.device import Device
from unibind.indexer.encoders.base import Encoder
from unibind.indexer.runtime.faiss_lib import faiss
from unibind.indexer.gallery.items import NewItem, add_items, gallery_index
from unibind.indexer.modalities.head import LinearHead
from unibind.indexer.modalities.versions import record_head
from unibind.indexer.modalities.registry import register_modality
from unibind.indexer.modalities.projection import Projection, load_projection, query_vectors
from unibind.indexer.index.vector_store import VectorStore
from unibind.retrieval.cli.main import main
from unibind.retrieval.search.cross_modal import CrossModalSearch, SearchFilter
from unibind.schema import Category, Database, Description, Head, Item, ItemField, Modality, Space
from unibind.schema.errors import InvalidInput, NotFound
from tests.corpus_samples import ANIMALS, VEHICLES, write_json

DIM = 384  # the space: MiniLM's dimension
D_IN = 16  # the audio encoder's (external) output dimension
N = 240  # gallery items
LABELS = ("dog", "cat", "bird")

Run = Callable[..., tuple[int, str, str]]


# -- tiny real things --------------------------------------------------------------------------------
def head_weights(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A fixed head Linear(D_IN, DIM): weight [DIM, D_IN], bias [DIM]."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((DIM, D_IN)) / np.sqrt(D_IN)).astype(np.float32), \
        (0.1 * rng.standard_normal(DIM)).astype(np.float32)


def reference(raw: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The exact projection in float64: [N, D_IN] → [N, DIM] unit rows."""
    y = raw.astype(np.float64) @ w.astype(np.float64).T + b.astype(np.float64)  # [N, DIM]
    return y / np.linalg.norm(y, axis=1, keepdims=True)


def exact_top(queries: np.ndarray, ids: np.ndarray, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores [B, k'], ids [B, k']) best first over ``vectors`` [M, DIM], k' = min(k, M)."""
    q = queries.astype(np.float64)
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    sims = q @ vectors.astype(np.float64).T  # [B, M]
    order = np.argsort(-sims, axis=1, kind="stable")[:, : min(k, len(ids))]  # [B, k']
    return np.take_along_axis(sims, order, axis=1), ids[order]


def gallery_rows(n: int = N, seed: int = 7) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Raw audio features [n, D_IN] and one META.jsonl object per row (uri, label, string / int / bool / nested)."""
    raw = np.random.default_rng(seed).standard_normal((n, D_IN)).astype(np.float32)
    metas = [{"uri": f"clips/{i:04d}.wav", "label": LABELS[i % 3], "split": "test" if i % 4 == 0 else "train",
              "n": i % 7, "ok": i % 5 == 0, "extra": {"source": "synthetic", "i": i}} for i in range(n)]
    return raw, metas


def write_gallery(folder: Path, raw: np.ndarray, metas: list[dict[str, Any]], name: str = "audio") -> tuple[Path, Path]:
    np.save(folder / f"{name}.npy", raw)
    meta = folder / f"{name}.jsonl"
    meta.write_text("".join(json.dumps(m) + "\n" for m in metas), encoding="utf-8")
    return folder / f"{name}.npy", meta


@dataclass(frozen=True)
class Setup:
    space_id: int
    modality_id: int
    w: np.ndarray
    b: np.ndarray


def audio_space(db: Database, home: Path, *, seed: int = 1) -> Setup:
    """A MiniLM space (created, or the existing one), the audio modality and an active head v1."""
    with db.transaction() as s:
        space = s.scalars(select(Space)).first()
        if space is None:
            space = Space(encoder="minilm", dim=DIM)
            s.add(space)
            s.flush()
        modality = register_modality(s, space, "audio", dim=D_IN)
        ids = space.id, modality.id
    w, b = head_weights(seed)
    record_head(db, home, ids[1], LinearHead(w, b), hyperparams={}, data_sha256="0" * 64, n_pairs=0, metrics={})
    return Setup(ids[0], ids[1], w, b)


def audio_index(db: Database, home: Path, setup: Setup) -> Any:
    with db.session() as s:
        modality = s.get(Modality, setup.modality_id)
        assert modality is not None
        _ = modality.space
    return gallery_index(db, home, Device(), modality)


def index_path(db: Database, home: Path, setup: Setup) -> Path:
    """The file of the audio gallery's one live segment (one add, or a rebuild, made it)."""
    [path] = audio_index(db, home, setup).files()
    assert path.parent == DataHome(db, home).index_dir
    return path


def index_ids(db: Database, home: Path, setup: Setup) -> np.ndarray:
    """The live ids in the segment files on disk, sorted."""
    index = audio_index(db, home, setup)
    with db.session() as s:
        segments = index.segments(s)
        dead = index.tombstones(s, segments)
    ids = [np.setdiff1d(VectorStore.load(path, Device(), "any").ids(), dead.get(seg.id, []))
           for path, seg in zip(index.files(), segments)]
    return np.sort(np.concatenate(ids)) if ids else np.empty(0, np.int64)


def items(db: Database) -> list[Item]:
    with db.session() as s:
        return list(s.scalars(select(Item).order_by(Item.id)))


def counts(db: Database) -> tuple[int, int, list[str]]:
    """(items, item fields, registered modality names), as committed."""
    with db.session() as s:
        return (int(s.scalar(select(func.count(Item.id))) or 0),
                int(s.scalar(select(func.count()).select_from(ItemField)) or 0), sorted(s.scalars(select(Modality.name))))


def searcher(db: Database, home: Path, target: str = "audio", **options: Any) -> CrossModalSearch:
    with db.session() as s:
        space = s.scalars(select(Space)).one()
    return CrossModalSearch(db, home, Device(), space, target, **options)


def hit_ids(hits: list[list[Any]]) -> list[list[int]]:
    return [[h.id for h in row] for row in hits]


@pytest.fixture
def run(db_url: str, home: Path, capsys: pytest.CaptureFixture[str]) -> Run:
    def _run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(["--db", db_url, "--home", str(home), "--device", "cpu", *args])
        out = capsys.readouterr()
        return code, out.out, out.err

    return _run


Added = tuple[Setup, np.ndarray, list[dict[str, Any]]]


@pytest.fixture
def added(db: Database, home: Path, tmp_path: Path, run: Run) -> Added:
    """An audio gallery of N items added through the CLI (flat index)."""
    setup = audio_space(db, home)
    raw, metas = gallery_rows()
    feats, meta = write_gallery(tmp_path, raw, metas)
    code, _, err = run("gallery", "add", "--modality", "audio", "--features", str(feats), "--meta", str(meta))
    assert code == 0, err
    return setup, raw, metas


@pytest.fixture
def one_omp_thread() -> Iterator[None]:
    """HNSW graphs are built in parallel; one thread makes them (and so which filtered searches fall short)
    reproducible."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


# -- 1. add round trip -------------------------------------------------------------------------------
def test_add_round_trip_list_verify(db: Database, home: Path, tmp_path: Path, run: Run) -> None:
    setup = audio_space(db, home)
    raw, metas = gallery_rows()
    feats, meta = write_gallery(tmp_path, raw, metas)
    code, out, err = run("gallery", "add", "--modality", "audio", "--features", str(feats), "--meta", str(meta), "--json")
    assert code == 0, err
    report = json.loads(out)
    assert (report["modality"], report["added"], report["total"], report["via"], report["factory"]) == \
        ("audio", N, N, "head v1", "Flat")

    rows = items(db)
    ref = reference(raw, setup.w, setup.b)
    with db.session() as s:
        head_id = s.scalar(select(Head.id).where(Head.modality_id == setup.modality_id, Head.version == 1))
    assert [r.uri for r in rows] == [m["uri"] for m in metas]  # ids follow the input order
    for r, m, x, v in zip(rows, metas, raw, ref):
        assert (r.modality_id, r.label, r.head_id) == (setup.modality_id, m["label"], head_id)
        assert r.meta == {k: m[k] for k in ("split", "n", "ok", "extra")}
        assert np.frombuffer(r.raw, dtype="<f4").tolist() == x.tolist()
        np.testing.assert_allclose(np.frombuffer(r.vector, dtype="<f4"), v, atol=1e-5)
    ids = np.array([r.id for r in rows], dtype=np.int64)
    assert index_ids(db, home, setup).tolist() == ids.tolist()  # FAISS ids are the primary keys
    flat = faiss.read_index(str(index_path(db, home, setup)))
    for i in (0, N // 2, N - 1):  # the file holds each item's vector under its id
        np.testing.assert_allclose(flat.reconstruct(int(ids[i])), ref[i], atol=1e-5)

    code, out, _ = run("gallery", "list", "--json")
    assert code == 0 and json.loads(out) == [
        {"modality": "audio", "kind": "features", "input_dim": D_IN, "items": N, "labels": 3, "heads_used": [head_id]}]
    code, out, _ = run("gallery", "list")
    assert code == 0 and "audio" in out and str(N) in out
    code, out, _ = run("gallery", "verify", "--json")
    assert code == 0 and json.loads(out) == [{"modality": "audio", "ok": True, "items": N, "file": N, "problems": [],
                                              "segments": 1, "location": str(index_path(db, home, setup).parent)}]
    code, out, _ = run("gallery", "verify")
    assert code == 0 and out.startswith("ok  audio")

    more_raw, more_metas = gallery_rows(5, seed=99)  # a second add appends to the same index
    more_metas = [{**m, "uri": f"more/{i}.wav"} for i, m in enumerate(more_metas)]
    f2, m2 = write_gallery(tmp_path, more_raw, more_metas, "more")
    code, out, err = run("gallery", "add", "--modality", "audio", "--features", str(f2), "--meta", str(m2), "--json")
    assert code == 0 and json.loads(out)["total"] == N + 5, err
    assert index_ids(db, home, setup).tolist() == [r.id for r in items(db)]


def test_add_items_api_and_jsonl_features(db: Database, home: Path, tmp_path: Path, run: Run) -> None:
    """``add_items`` directly, and a features JSONL whose other keys are the items' uri, label and metadata."""
    setup = audio_space(db, home)
    raw, metas = gallery_rows(12)
    with db.session() as s:
        space = s.get(Space, setup.space_id)
    report = add_items(db, home, Device(), load_projection(db, space, "audio", Device(), home=home),
                       [NewItem(m["uri"], m["label"], {"split": m["split"]}) for m in metas], raw)
    assert (report.added, report.total, report.via) == (12, 12, "head v1")
    lines = [{"vector": x.tolist(), "uri": f"j/{i}", "label": "jsonl", "take": i} for i, x in enumerate(raw[:3])]
    path = tmp_path / "f.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    code, _, err = run("gallery", "add", "--modality", "audio", "--features", str(path))
    assert code == 0, err
    rows = items(db)
    assert [(r.uri, r.label, r.meta) for r in rows[12:]] == [(f"j/{i}", "jsonl", {"take": i}) for i in range(3)]
    np.testing.assert_allclose(np.stack([np.frombuffer(r.vector, dtype="<f4") for r in rows]),
                               reference(np.concatenate([raw, raw[:3]]), setup.w, setup.b), atol=1e-5)
    assert index_ids(db, home, setup).tolist() == [r.id for r in rows]
    hits = searcher(db, home).search(reference(raw[:1], setup.w, setup.b), k=3, flt=SearchFilter(where=(("take", "0"),)))
    assert [(h.uri, h.label) for h in hits[0]] == [("j/0", "jsonl")]


# -- 2. unfiltered search ----------------------------------------------------------------------------
def test_unfiltered_search_equals_reference(db: Database, home: Path, tmp_path: Path, run: Run, added: Added) -> None:
    setup, raw, metas = added
    ids = np.array([r.id for r in items(db)], dtype=np.int64)
    vectors = reference(raw, setup.w, setup.b)  # [N, DIM]
    queries = np.random.default_rng(3).standard_normal((6, DIM)).astype(np.float32)
    hits = searcher(db, home).search(queries, k=5)
    ref_scores, ref_ids = exact_top(queries, ids, vectors, 5)
    assert hit_ids(hits) == ref_ids.tolist()
    np.testing.assert_allclose([[h.score for h in row] for row in hits], ref_scores, atol=1e-5)
    by_id = {int(i): m for i, m in zip(ids, metas)}
    for h in hits[0]:  # hydrated with the item's uri, label and metadata
        m = by_id[h.id]
        assert (h.uri, h.label, h.text) == (m["uri"], m["label"], None)
        assert h.meta == {k: m[k] for k in ("split", "n", "ok", "extra")}
    assert len(searcher(db, home).search(queries[:1], k=N + 50)[0]) == N  # k beyond the gallery: all of it

    q_raw = np.random.default_rng(4).standard_normal((4, D_IN)).astype(np.float32)
    np.save(tmp_path / "q.npy", q_raw)
    code, out, err = run("search", "--features", str(tmp_path / "q.npy"), "--modality", "audio", "--target", "audio",
                         "-k", "5", "--json")
    assert code == 0, err
    got = json.loads(out)
    _, ref_ids = exact_top(reference(q_raw, setup.w, setup.b), ids, vectors, 5)
    assert [[h["id"] for h in r["hits"]] for r in got] == ref_ids.tolist()
    assert all(r["modality"] == "audio" and r["target"] == "audio" for r in got)
    first = got[0]["hits"][0]
    assert (first["uri"], first["label"]) == (by_id[first["id"]]["uri"], by_id[first["id"]]["label"])
    code, out, _ = run("search", "--features", str(tmp_path / "q.npy"), "--modality", "audio", "--target", "audio", "-k", "3")
    assert code == 0 and by_id[int(ref_ids[0, 0])]["uri"] in out
    assert_hydrated_in_one_query(db, home)


# -- 3. filtered search ------------------------------------------------------------------------------
FILTERS: list[tuple[SearchFilter, Callable[[int, dict[str, Any]], bool]]] = [
    (SearchFilter(label="dog"), lambda i, m: m["label"] == "dog"),
    (SearchFilter(where=(("split", "test"),)), lambda i, m: m["split"] == "test"),  # a string
    (SearchFilter(where=(("n", "3"),)), lambda i, m: m["n"] == 3),  # an integer
    (SearchFilter(where=(("ok", "true"),)), lambda i, m: m["ok"] is True),  # a boolean
    (SearchFilter(where=(("split", "test"), ("ok", "true"))), lambda i, m: m["split"] == "test" and m["ok"]),  # AND
    (SearchFilter(label="cat", where=(("n", "4"),)), lambda i, m: m["label"] == "cat" and m["n"] == 4),
    (SearchFilter(label="bird", where=(("split", "test"), ("n", "2"))),
     lambda i, m: m["label"] == "bird" and m["split"] == "test" and m["n"] == 2),  # fewer than k match
    (SearchFilter(where=(("uri", "clips/0042.wav"),)), lambda i, m: m["uri"] == "clips/0042.wav"),
    (SearchFilter(where=(("n", "true"),)), lambda i, m: False),  # no match: a number is not a boolean
    (SearchFilter(label="dog", where=(("n", "true"),)), lambda i, m: False),  # a known label, nothing else holds
]


@pytest.mark.parametrize("factory", ["Flat", "IVF4,Flat", "HNSW16"])  # IVF4: 240 items train 4 lists well
def test_filtered_search_exactly_k_and_reference(db: Database, home: Path, tmp_path: Path, run: Run,
                                                 one_omp_thread: None, factory: str) -> None:
    setup = audio_space(db, home)
    raw, metas = gallery_rows()
    feats, meta = write_gallery(tmp_path, raw, metas)
    code, out, err = run("gallery", "add", "--modality", "audio", "--features", str(feats), "--meta", str(meta),
                         "--factory", factory, "--json")
    assert code == 0 and json.loads(out)["factory"] == factory, err
    ids = np.array([r.id for r in items(db)], dtype=np.int64)
    assert index_ids(db, home, setup).tolist() == ids.tolist()
    vectors = reference(raw, setup.w, setup.b)  # [N, DIM]
    queries = reference(np.random.default_rng(5).standard_normal((16, D_IN)), setup.w, setup.b).astype(np.float32)
    # IVF at nprobe 1 (FAISS's own default; ours is 8, which probes all 4 lists here): the selector search
    # falls short with restrictive filters, and the exact fallback must make up for it
    search = searcher(db, home, nprobe=1) if factory.startswith("IVF") else searcher(db, home)
    k = 10
    fell_short = 0
    for flt, keep in FILTERS:
        mask = np.array([keep(i, m) for i, m in enumerate(metas)])
        m = int(mask.sum())
        want = min(k, m)
        hits = search.search(queries, k=k, flt=flt)
        assert [len(row) for row in hits] == [want] * len(queries), (flt, m)
        if not m:
            continue
        allowed = ids[mask]
        ref_scores, ref_ids = exact_top(queries, allowed, vectors[mask], k)
        got = np.array(hit_ids(hits))
        for row in hits:  # every hit matches the filter and carries its true cosine, best first
            scores = [h.score for h in row]
            assert set(h.id for h in row) <= set(allowed.tolist()) and len(set(h.id for h in row)) == want
            assert scores == sorted(scores, reverse=True)
        if factory == "Flat" or m <= k:  # exact index, or every match returned: the reference itself
            assert got.tolist() == ref_ids.tolist(), (flt, factory)
            np.testing.assert_allclose([[h.score for h in row] for row in hits], ref_scores, atol=1e-5)
            continue
        # approximate index: its own filtered answer, and the exact one for each query where it found fewer
        _, sub_ids = search.store.search_subset(queries, want, allowed)
        short = (sub_ids >= 0).sum(axis=1) < want
        fell_short += int(short.sum())
        expected = np.where(short[:, None], ref_ids, sub_ids)
        assert got.tolist() == expected.tolist(), (flt, factory)
        id_pos = {int(i): p for p, i in enumerate(ids)}
        for q, row in zip(queries, hits):
            np.testing.assert_allclose([h.score for h in row], [float(vectors[id_pos[h.id]] @ q) for h in row], atol=1e-5)
    for label, message in (("dgo", "unknown label 'dgo' in the audio gallery; did you mean 'dog'?"),
                           ("fish", "unknown label 'fish' in the audio gallery")):  # a mistake, not an empty answer
        with pytest.raises(NotFound, match=re.escape(message)):
            search.search(queries, k=k, flt=SearchFilter(label=label))
    if factory != "Flat":
        # a restrictive filter (about 11 of 240 match): the FAISS selector search alone returns fewer than k for
        # some queries, and the exact fallback answers exactly those
        flt, keep = SearchFilter(label="cat", where=(("n", "4"),)), FILTERS[5][1]
        mask = np.array([keep(i, m) for i, m in enumerate(metas)])
        want = min(k, int(mask.sum()))
        _, sub_ids = search.store.search_subset(queries, want, ids[mask])
        short = (sub_ids >= 0).sum(axis=1) < want
        assert fell_short and short.any(), factory
        got = np.array(hit_ids(search.search(queries, k=k, flt=flt)))
        assert got[short].tolist() == exact_top(queries[short], ids[mask], vectors[mask], k)[1].tolist()

    np.save(tmp_path / "q.npy", raw[:3])  # the CLI: --label and two --where terms
    code, out, err = run("search", "--features", str(tmp_path / "q.npy"), "--modality", "audio", "--target", "audio",
                         "-k", "5", "--label", "dog", "--where", "split=test", "--where", "ok=true", "--json")
    assert code == 0, err
    got_cli = [[h["id"] for h in r["hits"]] for r in json.loads(out)]
    api = search.search(reference(raw[:3], setup.w, setup.b), k=5,
                        flt=SearchFilter(label="dog", where=(("split", "test"), ("ok", "true"))))
    assert got_cli == hit_ids(api) and all(len(r) == 4 for r in got_cli)  # 4 dogs with split=test and ok
    for r in json.loads(out):
        assert all(h["label"] == "dog" and h["meta"]["split"] == "test" and h["meta"]["ok"] is True for h in r["hits"])


# -- 4. one hydration query per call -----------------------------------------------------------------
def assert_hydrated_in_one_query(db: Database, home: Path) -> None:
    """Statements issued by searches of the N-item gallery: FAISS issues none, hydration one per call."""
    search = searcher(db, home)
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        statements.append(" ".join(statement.split()).lower())

    queries = np.random.default_rng(6).standard_normal((8, DIM)).astype(np.float32)
    event.listen(db.engine, "before_cursor_execute", record)
    try:
        hits = search.search(queries, k=10)
        unfiltered = list(statements)
        statements.clear()
        search.search(queries[:2], k=3, flt=SearchFilter(label="dog"))
        filtered_small = list(statements)
        statements.clear()
        filtered = search.search(queries, k=10, flt=SearchFilter(label="dog", where=(("split", "train"),)))
        filtered_big = list(statements)
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    assert sum(len(row) for row in hits) == 80 and sum(len(row) for row in filtered) == 80
    # FAISS issues none; hydration one; then one primary-key read: did the vacuum pass the search's version?
    horizon = [s for s in unfiltered if s.startswith("select store_state.version, store_state.horizon")]
    item_selects = [s for s in unfiltered if s.startswith("select") and "items" in s]
    assert len(item_selects) == 1 and len(horizon) == 1 and len(unfiltered) == 2, unfiltered
    assert len(filtered_big) == len(filtered_small) <= 3, filtered_big  # the filter's ids, one hydration, the check


# -- 5. cross-modal: text queries, descriptions ------------------------------------------------------
@pytest.mark.slow
def test_text_query_against_audio_and_descriptions_by_category(db: Database, home: Path, tmp_path: Path, run: Run,
                                                               minilm: Encoder) -> None:
    corpus = write_json(tmp_path / "kb.json", {**ANIMALS, **VEHICLES})
    code, _, err = run("ingest", str(corpus), "--name", "kb", "--encoder", "minilm")
    assert code == 0, err
    setup = audio_space(db, home)
    raw, metas = gallery_rows(60)
    feats, meta = write_gallery(tmp_path, raw, metas)
    assert run("gallery", "add", "--modality", "audio", "--features", str(feats), "--meta", str(meta))[0] == 0
    ids = np.array([r.id for r in items(db)], dtype=np.int64)

    texts = ["a dog barking in the rain", "a quiet purr"]
    code, out, err = run("search", "--text", texts[0], "--text", texts[1], "--target", "audio", "-k", "5", "--json")
    assert code == 0, err
    got = json.loads(out)
    q = np.asarray(minilm.encode_text(texts), dtype=np.float64)  # [2, DIM] through the text encoder, no head
    ref_scores, ref_ids = exact_top(q, ids, reference(raw, setup.w, setup.b), 5)
    assert [r["query"] for r in got] == texts and all(r["modality"] == "text" for r in got)
    assert [[h["id"] for h in r["hits"]] for r in got] == ref_ids.tolist()
    np.testing.assert_allclose([[h["score"] for h in r["hits"]] for r in got], ref_scores, atol=1e-4)
    code, out, _ = run("search", "--text", texts[0], "--target", "audio", "-k", "3", "--label", "bird", "--json")
    assert code == 0 and [h["label"] for h in json.loads(out)[0]["hits"]] == ["bird"] * 3

    with db.session() as s:
        descs = s.execute(select(Description.id, Description.text, Category.name)
                          .join(Category, Description.category_id == Category.id).order_by(Description.id)).all()
    d_ids = np.array([d[0] for d in descs], dtype=np.int64)
    d_vecs = np.asarray(minilm.encode_text([d[1] for d in descs] + ["a fish in a pond"]), dtype=np.float64)
    d_vecs, fish = d_vecs[:-1], d_vecs[-1:]  # [15, DIM], [1, DIM]
    cats = np.array([d[2] for d in descs])
    for category, k, expect in (("tench", 3, 3), ("goldfish", 10, 3)):  # k of 4 exist; all 3 when 10 are asked
        code, out, err = run("search", "--text", "a fish in a pond", "--target", "descriptions", "-k", str(k),
                             "--label", category, "--json")
        assert code == 0, err
        hits = json.loads(out)[0]["hits"]
        assert len(hits) == expect and {h["label"] for h in hits} == {category}
        assert all(h["text"] and h["meta"]["corpus"] == "kb" for h in hits)
        mask = cats == category
        _, ref = exact_top(fish, d_ids[mask], d_vecs[mask], k)
        assert [h["id"] for h in hits] == ref[0].tolist()


def test_query_vectors_equal_the_exact_projection(db: Database, home: Path, minilm: Encoder) -> None:
    """The one function that turns a query into vectors of the space (the CLI's and the service's): features go
    through the active head (the float64 reference), texts are the text encoder's own rows; bad queries are
    typed errors."""
    setup = audio_space(db, home)
    with db.session() as s:
        space = s.scalars(select(Space)).one()
    loaded: dict[str, Projection] = {}

    def projection(name: str) -> Projection:
        if name not in loaded:
            loaded[name] = load_projection(db, space, name, Device(), home=home, text_encoder=minilm)
        return loaded[name]

    raw, _ = gallery_rows(7)
    modality, vectors = query_vectors(projection, features=raw, modality="audio")
    assert modality == "audio" and vectors.shape == (7, DIM) and vectors.dtype == np.float32
    np.testing.assert_allclose(vectors, reference(raw, setup.w, setup.b), atol=1e-6)
    texts = ["a dog barking in the rain", "a quiet purr"]
    modality, vectors = query_vectors(projection, texts=texts, modality="text")
    assert modality == "text"
    np.testing.assert_array_equal(vectors, minilm.encode_text(texts))  # the rows descriptions are stored with

    for kwargs, kind, message in [
        ({"texts": texts, "features": raw, "modality": "audio"}, InvalidInput, "exactly one kind of query"),
        ({}, InvalidInput, "exactly one kind of query"),
        ({"features": raw}, InvalidInput, "feature vectors need their modality"),
        ({"features": raw, "modality": "text"}, InvalidInput, "modality 'text' does not take feature vectors"),
        ({"texts": texts, "modality": "audio"}, InvalidInput, "modality 'audio' does not go with texts"),
        ({"features": raw[:, :5], "modality": "audio", "source": "q.npy"}, InvalidInput,
         f"q.npy: vectors have 5 dimensions, modality audio expects {D_IN}"),  # a dimension mismatch
        ({"features": raw, "modality": "sonar"}, NotFound, "unknown modality 'sonar'"),
    ]:
        with pytest.raises(kind, match=message):
            query_vectors(projection, **kwargs)


def test_typed_errors_of_search(db: Database, home: Path, added: Added) -> None:
    with pytest.raises(NotFound, match="unknown modality 'sonar'") as excinfo:
        searcher(db, home, "sonar")
    assert type(excinfo.value).http_status == 404
    with pytest.raises(InvalidInput, match=f"queries have 5 dimensions, the space minilm has {DIM}") as bad:
        searcher(db, home).search(np.ones((1, 5), dtype=np.float32))
    assert type(bad.value).http_status == 400 and type(bad.value).exit_code == 2
    with db.session() as s:
        modality = s.get(Modality, added[0].modality_id)
        assert modality is not None
        from unibind.indexer.modalities.versions import find_head

        with pytest.raises(NotFound, match="modality 'audio' has no head version 9 \\(versions: 1\\)"):
            find_head(s, modality, 9)


# -- 6. re-projection through a newly activated head --------------------------------------------------
def test_activating_a_head_reprojects_the_gallery(db: Database, home: Path, run: Run, added: Added) -> None:
    setup, raw, _ = added
    w2, b2 = head_weights(seed=2)
    v2 = record_head(db, home, setup.modality_id, LinearHead(w2, b2), hyperparams={}, data_sha256="1" * 64, n_pairs=0,
                     metrics={}, activate=False)
    assert v2.version == 2
    queries = np.random.default_rng(8).standard_normal((5, DIM)).astype(np.float32)
    ids = np.array([r.id for r in items(db)], dtype=np.int64)
    assert hit_ids(searcher(db, home).search(queries, k=5)) == \
        exact_top(queries, ids, reference(raw, setup.w, setup.b), 5)[1].tolist()  # v1 until activated

    code, out, err = run("heads", "activate", "--modality", "audio", "--version", "2", "--json")
    assert code == 0, err
    assert json.loads(out) == {"modality": "audio", "active_version": 2, "reprojected_items": N}
    new = reference(raw, w2, b2)
    rows = items(db)
    assert [r.id for r in rows] == ids.tolist() and {r.head_id for r in rows} == {v2.id}
    np.testing.assert_allclose(np.stack([np.frombuffer(r.vector, dtype="<f4") for r in rows]), new, atol=1e-5)
    assert index_ids(db, home, setup).tolist() == ids.tolist()
    hits = searcher(db, home).search(queries, k=5)
    ref_scores, ref_ids = exact_top(queries, ids, new, 5)
    assert hit_ids(hits) == ref_ids.tolist()
    np.testing.assert_allclose([[h.score for h in row] for row in hits], ref_scores, atol=1e-5)
    code, out, _ = run("heads", "list", "--modality", "audio", "--json")
    assert code == 0 and [(h["version"], h["active"]) for h in json.loads(out)] == [(1, False), (2, True)]
    with db.session() as s:
        assert s.scalar(select(func.count(Head.id)).where(Head.modality_id == setup.modality_id, Head.active.is_(True))) == 1
    assert run("gallery", "verify")[0] == 0


# -- 7. removal --------------------------------------------------------------------------------------
@pytest.mark.parametrize("factory", ["Flat", "HNSW16"])  # HNSW cannot remove ids: the rebuild path
def test_remove_by_label(db: Database, home: Path, tmp_path: Path, run: Run, factory: str) -> None:
    setup = audio_space(db, home)
    raw, metas = gallery_rows()
    feats, meta = write_gallery(tmp_path, raw, metas)
    assert run("gallery", "add", "--modality", "audio", "--features", str(feats), "--meta", str(meta),
               "--factory", factory)[0] == 0
    code, out, err = run("gallery", "remove", "--modality", "audio", "--label", "dog", "--json")
    assert code == 0 and json.loads(out) == {"removed": N // 3}, err
    rows = items(db)
    keep = np.array([m["label"] != "dog" for m in metas])
    assert [r.uri for r in rows] == [m["uri"] for m, k in zip(metas, keep) if k]
    assert index_ids(db, home, setup).tolist() == [r.id for r in rows]
    assert counts(db)[1] == len(rows) * 3  # fields go with their items
    code, out, _ = run("gallery", "verify", "--json")
    assert code == 0 and json.loads(out)[0]["ok"] is True
    queries = reference(raw[:4], setup.w, setup.b)  # the removed dogs' own vectors: their best matches are gone
    hits = searcher(db, home).search(queries, k=5)
    assert all(h.label != "dog" and len(row) == 5 for row in hits for h in row)
    if factory == "Flat":
        ids = np.array([r.id for r in rows], dtype=np.int64)
        assert hit_ids(hits) == exact_top(queries, ids, reference(raw[keep], setup.w, setup.b), 5)[1].tolist()
    code, out, err = run("gallery", "remove", "--modality", "audio", "--label", "dog")  # none left: say so
    assert code == 2 and out == "" and "unknown label 'dog' in the audio gallery" in err, err
    code, out, err = run("gallery", "remove", "--modality", "audio", "--label", "cta")
    assert code == 2 and "unknown label 'cta' in the audio gallery; did you mean 'cat'?" in err, err
    code, out, _ = run("gallery", "remove", "--modality", "audio", "--all", "--json")
    assert code == 0 and json.loads(out) == {"removed": len(rows)}
    assert items(db) == [] and index_ids(db, home, setup).size == 0
    assert run("gallery", "verify")[0] == 0
    assert searcher(db, home).search(queries, k=5) == [[]] * 4


# -- 8. stale index files ----------------------------------------------------------------------------
def test_stale_index_clear_error_and_rebuild(db: Database, home: Path, tmp_path: Path, run: Run, added: Added) -> None:
    setup, raw, _ = added
    path = index_path(db, home, setup)
    np.save(tmp_path / "q.npy", raw[:2])
    query = ("search", "--features", str(tmp_path / "q.npy"), "--modality", "audio", "--target", "audio", "-k", "3", "--json")
    code, out, _ = run(*query)
    assert code == 0
    good = json.loads(out)

    path.unlink()
    code, out, err = run(*query)
    assert code == 3 and out == "" and err.startswith("unibind: error:") and err.count("\n") == 1
    assert "unibind gallery rebuild" in err and "missing" in err
    code, out, _ = run("gallery", "verify")
    assert code == 1 and "STALE" in out
    code, out, err = run("gallery", "rebuild", "--json")
    assert code == 0 and json.loads(out)[0]["vectors"] == N, err
    code, out, _ = run(*query)
    assert code == 0 and json.loads(out) == good

    # overwritten by another valid index of the same size whose ids differ (a file from another database)
    path = index_path(db, home, setup)  # the rebuild wrote a new file
    other = VectorStore.create(DIM, Device(), "Flat")
    other.add(np.arange(10_000, 10_000 + N, dtype=np.int64), reference(raw, setup.w, setup.b).astype(np.float32))
    other.save(path)
    code, _, err = run(*query)
    assert code == 3 and "unibind gallery rebuild" in err and err.count("\n") == 1
    assert run("gallery", "rebuild")[0] == 0
    code, out, _ = run(*query)
    assert code == 0 and json.loads(out) == good

    # overwritten with garbage of another size
    path = index_path(db, home, setup)
    path.write_bytes(b"not a faiss index")
    code, _, err = run(*query)
    assert code == 3 and err.startswith("unibind: error:") and err.count("\n") == 1
    assert "unibind gallery rebuild" in err and "bytes" in err, err
    assert run("gallery", "verify")[0] == 1
    assert run("gallery", "rebuild")[0] == 0
    code, out, _ = run(*query)
    assert code == 0 and json.loads(out) == good
    assert run("gallery", "verify")[0] == 0


def test_corrupt_index_of_the_recorded_size_names_rebuild(db: Database, home: Path, tmp_path: Path, run: Run,
                                                          added: Added) -> None:
    setup, raw, _ = added
    path = index_path(db, home, setup)
    np.save(tmp_path / "q.npy", raw[:2])
    path.write_bytes(b"\0" * path.stat().st_size)
    code, _, err = run("search", "--features", str(tmp_path / "q.npy"), "--modality", "audio", "--target", "audio")
    assert code == 3 and err.startswith("unibind: error:") and err.count("\n") == 1  # 3: a conflict with the store
    assert "unibind gallery rebuild" in err, err


# -- 9. bad input: exit 2, one line naming the problem, nothing written --------------------------------
def test_bad_inputs_write_nothing(db: Database, home: Path, tmp_path: Path, run: Run, added: Added) -> None:
    setup, raw, metas = added
    before = counts(db)
    assert before[2] == ["audio"]
    feats, meta = write_gallery(tmp_path, raw[:4], metas[:4], "ok")
    np.save(tmp_path / "wide.npy", np.ones((4, D_IN + 3), dtype=np.float32))
    nan = raw[:4].copy()
    nan[2, 5] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    short_meta = tmp_path / "short.jsonl"
    short_meta.write_text("".join(json.dumps(m) + "\n" for m in metas[:3]), encoding="utf-8")
    np.save(tmp_path / "q.npy", raw[:1])
    image = tmp_path / "x.png"
    image.write_bytes(b"\x89PNG\r\n")

    add = ("gallery", "add", "--features")
    cases: list[tuple[tuple[str, ...], list[str]]] = [
        ((*add, str(tmp_path / "wide.npy"), "--meta", str(meta), "--modality", "audio"), ["wide.npy", "19", "16"]),
        ((*add, str(tmp_path / "nan.npy"), "--meta", str(meta), "--modality", "audio"), ["nan.npy", "row 2", "NaN"]),
        ((*add, str(feats), "--meta", str(short_meta), "--modality", "audio"), ["short.jsonl", "3 metadata lines", "4 rows"]),
        # a well-known modality with no head yet: nothing can reach the space, whatever the file holds
        ((*add, str(tmp_path / "nan.npy"), "--meta", str(meta), "--modality", "point"), ["'point'", "no active head"]),
        ((*add, str(feats), "--meta", str(short_meta), "--modality", "point"), ["unibind head train --modality point"]),
        ((*add, str(feats), "--meta", str(meta), "--modality", "foo"), ["'foo'", "unibind modality add foo --dim"]),
        ((*add, str(tmp_path / "missing.npy"), "--meta", str(meta), "--modality", "audio"), ["missing.npy", "not found"]),
        ((*add, str(feats), "--meta", str(tmp_path / "missing.jsonl"), "--modality", "audio"), ["missing.jsonl", "not found"]),
        (("gallery", "add", "--modality", "audio", "--files", str(image)), ["--files", "'audio'", "--features"]),
        (("gallery", "add", "--modality", "image", "--files", str(image), "--features", str(feats)), ["not both"]),
        ((*add, str(feats), "--meta", str(meta), "--modality", "Bad!"), ["'Bad!'", "not valid"]),
        (("search", "--features", str(tmp_path / "q.npy"), "--modality", "audio", "--target", "nosuch"),
         ["unknown modality 'nosuch'"]),
        (("search", "--features", str(tmp_path / "q.npy"), "--modality", "audio", "--target", "audio", "--where", "novalue"),
         ["--where 'novalue'", "key=value"]),
        (("search", "--features", str(tmp_path / "wide.npy"), "--modality", "audio", "--target", "audio"),
         ["wide.npy", "19", "16"]),
        (("search", "--features", str(tmp_path / "q.npy"), "--modality", "audio", "--target", "audio", "-k", "0"), ["k must be"]),
    ]
    for argv, expect in cases:
        code, out, err = run(*argv)
        assert code == 2, (argv, out, err)
        assert err.startswith("unibind: error:") and err.count("\n") == 1 and out == "", (argv, err)
        for part in expect:
            assert part in err, (argv, part, err)
        assert counts(db) == before, argv  # nothing written, no modality registered
    assert run("gallery", "verify")[0] == 0 and index_ids(db, home, setup).size == N


def test_features_of_a_headless_modality_write_nothing(db: Database, home: Path, tmp_path: Path,
                                                       run: Run, added: Added) -> None:
    _, raw, metas = added
    before = counts(db)
    feats, meta = write_gallery(tmp_path, raw[:4, :8], metas[:4], "point")
    code, _, err = run("gallery", "add", "--modality", "point", "--features", str(feats), "--meta", str(meta))
    assert code == 2 and "no active head" in err and "unibind head train --modality point" in err
    assert counts(db) == before  # 'point' is not registered by a failed add


# -- review fixes ---------------------------------------------------------------------------------------
def test_a_head_switched_without_reprojection_is_flagged_and_rebuild_reprojects(
        db: Database, home: Path, tmp_path: Path, run: Run, added: Added) -> None:
    """Activation and re-projection belong together; a gallery left projected through another head (here:
    a v2 recorded active behind the gallery's back) is stale until `gallery rebuild` re-projects it."""
    setup, raw, _ = added
    w2, b2 = head_weights(9)
    record_head(db, home, setup.modality_id, LinearHead(w2, b2), hyperparams={}, data_sha256="2" * 64, n_pairs=0,
                metrics={}, activate=True)
    np.save(tmp_path / "q.npy", raw[:2])
    query = ("search", "--features", str(tmp_path / "q.npy"), "--modality", "audio", "--target", "audio", "--json")
    code, _, err = run(*query)
    assert code == 3 and "projected through another head" in err and "unibind gallery rebuild" in err
    code, out, _ = run("gallery", "verify")
    assert code == 1 and "projected through another head" in out
    assert run("gallery", "rebuild")[0] == 0 and run("gallery", "verify")[0] == 0
    for item in items(db):  # every vector now through v2
        np.testing.assert_allclose(np.frombuffer(item.vector, dtype="<f4"),
                                   reference(np.frombuffer(item.raw, dtype="<f4")[None], w2, b2)[0], atol=1e-5)
    code, out, _ = run(*query)
    assert code == 0 and len(json.loads(out)[0]["hits"]) == 10


def test_nprobe_and_ef_search_options(db: Database, home: Path, tmp_path: Path, run: Run, added: Added) -> None:
    _, raw, _ = added
    np.save(tmp_path / "q.npy", raw[:1])
    base = ("search", "--features", str(tmp_path / "q.npy"), "--modality", "audio", "--target", "audio")
    code, _, err = run(*base, "--nprobe", "4")
    assert code == 2 and "--nprobe applies to IVF indexes" in err
    code, _, err = run(*base, "--ef-search", "32")
    assert code == 2 and "--ef-search applies to HNSW indexes" in err
    assert run("gallery", "rebuild", "--factory", "IVF4,Flat")[0] == 0
    search = searcher(db, home)
    assert faiss_nprobe(search) == 4  # our default 8, capped at the 4 lists
    assert faiss_nprobe(searcher(db, home, nprobe=2)) == 2
    code, out, err = run(*base, "--nprobe", "4", "--json")
    assert code == 0 and len(json.loads(out)[0]["hits"]) == 10, err


def faiss_nprobe(search: CrossModalSearch) -> int:
    [part] = search.store.parts  # the rebuild made one segment
    return int(faiss.extract_index_ivf(part.store.index).nprobe)


def test_features_jsonl_rows_are_checked_like_meta_lines(db: Database, home: Path, tmp_path: Path, run: Run,
                                                         added: Added) -> None:
    _, raw, _ = added
    before = counts(db)
    cases = [({"label": "x" * 501}, "limit is 500"), ({"label": {"a": 1}}, "label"), ({"uri": 5}, "uri"),
             ({"score": float("nan")}, "NaN")]
    for fields, needle in cases:
        path = tmp_path / "rows.jsonl"
        lines = [json.dumps({"vector": raw[i].tolist(), **({} if i else fields)}) for i in range(3)]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        code, _, err = run("gallery", "add", "--modality", "audio", "--features", str(path))
        assert code == 2 and "rows.jsonl: row 0" in err and needle in err, (fields, err)
        assert counts(db) == before


@pytest.mark.slow
def test_description_where_terms_compare_the_same_on_every_backend(db: Database, home: Path, tmp_path: Path,
                                                                   run: Run) -> None:
    rows = [{"category": "tench", "text": "an olive green fish of slow rivers", "ok": True, "n": 2, "src": "a"},
            {"category": "tench", "text": "a fish with tiny scales and red eyes", "ok": False, "n": 3, "src": "b"},
            {"category": "goldfish", "text": "a small orange fish kept in bowls", "ok": True, "n": 2, "src": "a"}]
    corpus = tmp_path / "kb.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    assert run("ingest", str(corpus), "--name", "kb", "--encoder", "minilm")[0] == 0
    for where, expect in ((["ok=true"], {0, 2}), (["n=2"], {0, 2}), (["ok=false"], {1}), (["src=a", "n=2"], {0, 2}),
                          (["ok=1"], set()), (["corpus=kb", "src=b"], {1}), (["missing=x"], set())):
        args = [a for w in where for a in ("--where", w)]
        code, out, err = run("search", "--text", "a fish", "--target", "descriptions", "-k", "5", *args, "--json")
        assert code == 0, err
        assert {rows.index(next(r for r in rows if r["text"] == h["text"])) for h in json.loads(out)[0]["hits"]} == expect, where
