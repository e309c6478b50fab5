"""A store you can trust, on SQLite and PostgreSQL: nothing deletes what it did not create, ids are never
reused, the catalog version moves with every publish, a data folder can be moved, a failed commit leaves the old
index serving, and no dead rows or files stay behind."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, func, select

from unibind.indexer.store.contents import description_index
from unibind.indexer.index.data_home import DataHome
from unibind.indexer.runtime.device import Device
from unibind.indexer.encoders.base import Encoder
from unibind.indexer.gallery.items import NewItem, add_items, remove_items, reproject
from unibind.indexer.modalities.head import LinearHead
from unibind.indexer.modalities.versions import record_head
from unibind.indexer.store.ingest import IngestConfig, ingest
from unibind.indexer.readers.corpus import read_corpus
from unibind.indexer.modalities.projection import load_projection
from unibind.indexer.runtime.vectors import from_bytes
from unibind.retrieval.cli.main import main
from unibind.retrieval.centres.builder import CentreBuilder, CentreSpec
from unibind.retrieval.service.app import create_app
from unibind.retrieval.service.config import ServiceConfig
from unibind.retrieval.service.state import ServiceState
from unibind.schema import Centre, Corpus, CorpusStatus, Database, Description, Head, Item, Modality, Segment, Space
from unibind.schema.settings import Settings
from unibind.schema.store_state import catalog_version
from bench.kill import dead_rows
from tests.corpus_samples import ANIMALS, VEHICLES, write_json
from tests.test_gallery import D_IN, audio_space, gallery_rows, head_weights, write_gallery

OTHER = {  # a corpus of the same size as VEHICLES with other texts
    "fire truck": ["A red truck that carries ladders to burning buildings.", "Firefighters ride it to emergencies."],
    "bicycle": ["Two wheels and pedals move this light vehicle.", "A frame with a saddle, ridden on paths.",
                "A chain turns its back wheel as the rider pedals."],
}
BIG = {f"class {i}": [f"Description number {j} of the thing called class {i}, seen from angle {j}." for j in range(30)]
       for i in range(40)}


def cli(url: str, home: Path, *args: str) -> int:
    return main(["--db", url, "--home", str(home), "--device", "cpu", *args])


def cli_command(url: str, home: Path, *args: str) -> list[str]:
    """The same command as a separate process."""
    return [sys.executable, "-m", "unibind.retrieval.cli", "--db", url, "--home", str(home), "--device", "cpu", *args]


def _ingest(db: Database, home: Path, path: Path, name: str, encoder: Encoder, **kw: Any) -> Any:
    return ingest(db, read_corpus(path), IngestConfig(name=name, encoder="minilm", **kw), home=home,
                  device=encoder.device, encoder=encoder)


def version(db: Database) -> int:
    with db.session() as s:
        return catalog_version(s)


def count(db: Database, model: Any, *where: Any) -> int:
    with db.session() as s:
        return int(s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def ids_of(db: Database, corpus: str) -> list[int]:
    with db.session() as s:
        return sorted(s.scalars(select(Description.id).join(Corpus).where(Corpus.name == corpus)))


# -- 1. nothing deletes what it did not create ----------------------------------------------------------
def disk_full(monkeypatch: pytest.MonkeyPatch) -> None:
    """Segment files cannot be written from now on (as on a full disk): an ingest fails after it encoded."""
    from unibind.indexer.index.places import FilePlace

    def write(*args: Any, **kwargs: Any) -> Any:
        raise OSError(28, "No space left on device (simulated)")

    monkeypatch.setattr(FilePlace, "write", write)


def test_failed_ingest_keeps_the_space_and_everything_in_it(db_url: str, db: Database, home: Path,
                                                            tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The reported scenario: corpus, audio modality, head, gallery; delete the corpus; an ingest that fails when it
    writes its segment must not take the space (and with it the modality, head and gallery) along."""
    animals = write_json(tmp_path / "a.json", ANIMALS)
    assert cli(db_url, home, "ingest", str(animals), "--name", "animals", "--encoder", "minilm") == 0
    audio_space(db, home)
    raw, metas = gallery_rows(12)
    feats, meta = write_gallery(tmp_path, raw, metas)
    assert cli(db_url, home, "gallery", "add", "--modality", "audio", "--features", str(feats), "--meta", str(meta)) == 0
    assert cli(db_url, home, "corpus", "delete", "animals") == 0
    heads_before = count(db, Head)
    with monkeypatch.context() as m:
        disk_full(m)
        assert cli(db_url, home, "ingest", str(animals), "--name", "animals", "--encoder", "minilm") == 1
    assert count(db, Space) == 1 and count(db, Modality) == 1 and count(db, Head) == heads_before == 1
    assert count(db, Item) == 12 and count(db, Corpus) == 0 and count(db, Description) == 0
    assert cli(db_url, home, "gallery", "verify") == 0
    np.save(tmp_path / "q.npy", raw[:1])
    assert cli(db_url, home, "search", "--features", str(tmp_path / "q.npy"), "--modality", "audio",
               "--target", "audio", "-k", "3") == 0
    # the same ingest without the bad factory works in the kept space
    assert cli(db_url, home, "ingest", str(animals), "--name", "animals", "--encoder", "minilm") == 0
    assert count(db, Space) == 1 and cli(db_url, home, "index", "verify") == 0


def test_a_space_created_by_a_failed_ingest_goes_with_it(db: Database, home: Path, tmp_path: Path,
                                                         minilm: Encoder, monkeypatch: pytest.MonkeyPatch) -> None:
    disk_full(monkeypatch)
    with pytest.raises(OSError, match="No space left"):
        _ingest(db, home, write_json(tmp_path / "a.json", ANIMALS), "animals", minilm)
    assert count(db, Space) == 0 and count(db, Corpus) == 0 and count(db, Description) == 0
    assert count(db, Segment) == 0  # the segment it registered went with it


# -- 2. ids are never reused; the catalog version moves with every publish -------------------------------
def test_ids_are_never_reused(db: Database, home: Path, tmp_path: Path, minilm: Encoder) -> None:
    _ingest(db, home, write_json(tmp_path / "a.json", ANIMALS), "a", minilm)
    _ingest(db, home, write_json(tmp_path / "v.json", VEHICLES), "b", minilm)
    b_ids = ids_of(db, "b")
    with db.session() as s:
        b_corpus = s.scalars(select(Corpus.id).where(Corpus.name == "b")).one()
    assert cli(str(db.url.render_as_string(hide_password=False)), home, "corpus", "delete", "b") == 0
    _ingest(db, home, write_json(tmp_path / "o.json", OTHER), "c", minilm)
    assert min(ids_of(db, "c")) > max(b_ids)  # the newest rows were deleted; their ids stay unused
    with db.session() as s:
        assert s.scalars(select(Corpus.id).where(Corpus.name == "c")).one() > b_corpus

    setup = audio_space(db, home)
    with db.session() as s:
        space = s.get(Space, setup.space_id)
    projection = load_projection(db, space, "audio", Device(), home=home)
    raw = np.random.default_rng(0).standard_normal((5, D_IN)).astype(np.float32)
    add_items(db, home, Device(), projection, [NewItem(uri=f"x{i}") for i in range(5)], raw)
    with db.session() as s:
        first = sorted(s.scalars(select(Item.id)))
        modality = s.get(Modality, setup.modality_id)
        _ = modality.space
    remove_items(db, home, Device(), modality)
    add_items(db, home, Device(), projection, [NewItem(uri=f"y{i}") for i in range(5)], raw)
    with db.session() as s:
        assert min(s.scalars(select(Item.id))) > max(first)


def test_every_publish_bumps_the_catalog_version_and_a_failure_does_not(db: Database, home: Path, tmp_path: Path,
                                                                        minilm: Encoder) -> None:
    seen = [version(db)]

    def moved() -> bool:
        seen.append(version(db))
        return seen[-1] > seen[-2]

    animals, vehicles = write_json(tmp_path / "a.json", ANIMALS), write_json(tmp_path / "v.json", VEHICLES)
    _ingest(db, home, animals, "a", minilm)
    assert moved()
    _ingest(db, home, vehicles, "b", minilm)
    assert moved()
    _ingest(db, home, write_json(tmp_path / "o.json", OTHER), "b", minilm, replace=True)
    assert moved()
    with pytest.raises(ValueError, match="already exists"):
        _ingest(db, home, animals, "a", minilm)
    assert not moved()  # a refused ingest publishes nothing
    with db.session() as s:
        space = s.scalars(select(Space)).one()
        b = s.scalars(select(Corpus.id).where(Corpus.name == "b")).one()
    CentreBuilder(db, space, minilm).build(CentreSpec())
    assert moved()
    from unibind.indexer.store.removal import delete_corpus

    delete_corpus(db, b, home, Device())
    assert moved()
    setup = audio_space(db, home)  # registers the modality and records head v1 (active)
    assert moved()
    projection = load_projection(db, space, "audio", Device(), home=home)
    raw = np.random.default_rng(0).standard_normal((4, D_IN)).astype(np.float32)
    add_items(db, home, Device(), projection, [NewItem(uri=f"x{i}") for i in range(4)], raw)
    assert moved()
    w, b2 = head_weights(3)
    v2 = record_head(db, home, setup.modality_id, LinearHead(w, b2), hyperparams={}, data_sha256="0" * 64, n_pairs=0,
                     metrics={}, activate=False)
    reproject(db, home, Device(), setup.modality_id, activate=v2.id)  # head activation
    assert moved()
    with db.session() as s:
        modality = s.get(Modality, setup.modality_id)
        _ = modality.space
    remove_items(db, home, Device(), modality)
    assert moved()


# -- 3. the service answers from the new rows after another process changed the store --------------------
def _search(client: TestClient, text: str) -> list[dict[str, Any]]:
    r = client.post("/v1/search", json={"texts": [text], "k": 4, "target": "descriptions"})
    assert r.status_code == 200, r.text
    return r.json()[0]["hits"]


def test_service_answers_from_new_rows_after_another_process_deletes_and_ingests(
        db_url: str, db: Database, home: Path, tmp_path: Path, minilm: Encoder) -> None:
    """Delete the newest corpus and ingest a different one of the same size from other processes: the running
    service must answer with the new corpus's texts and vectors, never old vectors paired with new text."""
    assert cli(db_url, home, "ingest", str(write_json(tmp_path / "a.json", ANIMALS)), "--name", "a",
               "--encoder", "minilm") == 0
    assert cli(db_url, home, "ingest", str(write_json(tmp_path / "v.json", VEHICLES)), "--name", "b",
               "--encoder", "minilm") == 0
    state = ServiceState(ServiceConfig(Settings(database_url=db_url, home=home, device="cpu")), device=Device())
    state.preload_encoder(minilm)
    query = "a red truck with ladders"
    with TestClient(create_app(state.config, state=state)) as client:
        before = _search(client, query)
        assert {h["meta"]["corpus"] for h in before} >= {"b"}
        for args in (("corpus", "delete", "b"),
                     ("ingest", str(write_json(tmp_path / "o.json", OTHER)), "--name", "c", "--encoder", "minilm")):
            proc = subprocess.run(cli_command(db_url, home, *args), capture_output=True, text=True, timeout=300)
            assert proc.returncode == 0, proc.stderr
        after = _search(client, query)
    state.close()
    q = minilm.encode_text([query])[0].astype(np.float64)
    with db.session() as s:
        rows = {i: (t, from_bytes([v], 384)[0], c) for i, t, v, c in s.execute(
            select(Description.id, Description.text, Description.vector, Corpus.name).join(Corpus))}
    assert {h["meta"]["corpus"] for h in after} <= {"a", "c"} and "c" in {h["meta"]["corpus"] for h in after}
    for h in after:
        text, vector, corpus = rows[h["id"]]
        assert (h["text"], h["meta"]["corpus"]) == (text, corpus)
        assert h["score"] == pytest.approx(float(q @ vector), abs=1e-5)  # this row's vector, not an old one
    assert not {h["text"] for h in after} & set(sum(VEHICLES.values(), []))


# -- 4. a data folder is portable ------------------------------------------------------------------------
def test_a_copied_data_folder_works_where_it_lands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old_home = tmp_path / "old" / "unibind-data"
    old_url = f"sqlite:///{old_home / 'unibind.db'}"
    assert cli(old_url, old_home, "ingest", str(write_json(tmp_path / "a.json", ANIMALS)), "--name", "a",
               "--encoder", "minilm") == 0
    db = Database(old_url)
    audio_space(db, old_home)
    raw, metas = gallery_rows(20)
    feats, meta = write_gallery(tmp_path, raw, metas)
    assert cli(old_url, old_home, "gallery", "add", "--modality", "audio", "--features", str(feats), "--meta", str(meta)) == 0
    db.dispose()
    np.save(tmp_path / "q.npy", raw[:3])
    searches = (("search", "--features", str(tmp_path / "q.npy"), "--modality", "audio", "--target", "audio", "--json"),
                ("search-descriptions", "a small orange fish", "-k", "3", "--json"))
    capsys.readouterr()
    expected = []
    for args in searches:
        assert cli(old_url, old_home, *args) == 0
        expected.append(capsys.readouterr().out)

    new_home = tmp_path / "moved" / "elsewhere"
    shutil.copytree(old_home, new_home)  # new inodes and mtimes, another path
    shutil.rmtree(tmp_path / "old")
    new_url = f"sqlite:///{new_home / 'unibind.db'}"
    for check in (("index", "verify"), ("gallery", "verify")):
        assert cli(new_url, new_home, *check) == 0, capsys.readouterr()
    for args, want in zip(searches, expected):
        capsys.readouterr()
        assert cli(new_url, new_home, *args) == 0
        assert capsys.readouterr().out == want  # queries and the head work, without a rebuild
    with Database(new_url).session() as s:
        assert all(not Path(p).is_absolute() for p in s.scalars(select(Segment.path)))
        assert all(not Path(p).is_absolute() for p in s.scalars(select(Head.path)))


@pytest.mark.postgres
def test_one_postgres_store_by_two_spellings_of_its_url(pg_url: str, home: Path, tmp_path: Path) -> None:
    assert "127.0.0.1" in pg_url
    other = pg_url.replace("127.0.0.1", "localhost").replace("postgresql+psycopg://", "postgresql://")
    assert cli(pg_url, home, "ingest", str(write_json(tmp_path / "a.json", ANIMALS)), "--name", "a",
               "--encoder", "minilm") == 0
    assert cli(other, home, "index", "verify") == 0
    assert cli(other, home, "ingest", str(write_json(tmp_path / "v.json", VEHICLES)), "--name", "b",
               "--encoder", "minilm") == 0
    assert cli(pg_url, home, "index", "verify") == 0
    assert len(list((home / "indexes").iterdir())) == 1  # one folder, one set of locks, whatever the spelling


def test_folders_of_an_older_store_are_adopted(db: Database, home: Path, tmp_path: Path, minilm: Encoder) -> None:
    """A store made before it had an identity kept its files under a hash of its URL with absolute paths: the
    first use moves the folder and makes the paths relative."""
    _ingest(db, home, write_json(tmp_path / "a.json", ANIMALS), "a", minilm)
    data = DataHome(db, home)
    legacy = home / "indexes" / db.legacy_key
    data.index_dir.rename(legacy)
    with db.transaction() as s:
        rec = s.scalars(select(Segment)).one()
        rec.path = str(legacy / Path(rec.path).name)
    import unibind.indexer.index.data_home as data_home

    data_home._adopted.clear()  # a new process
    index = description_index(db, db_space(db), home, Device())
    assert index.verify().ok and [p.parent for p in index.files()] == [data.index_dir]
    with db.session() as s:
        assert not Path(s.scalars(select(Segment.path)).one()).is_absolute()


def db_space(db: Database) -> Space:
    with db.session() as s:
        return s.scalars(select(Space)).one()


# -- 5. index files are versioned ------------------------------------------------------------------------
def test_a_failed_commit_leaves_the_old_index_serving(db: Database, home: Path, tmp_path: Path, minilm: Encoder) -> None:
    _ingest(db, home, write_json(tmp_path / "a.json", ANIMALS), "a", minilm)
    index = description_index(db, db_space(db), home, Device())
    [path], ids = index.files(), np.sort(index.load().ids())
    armed = {"on": False}

    def spot(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "STORE_STATE.VERSION +" in statement.upper():  # the publishing transaction bumps the version
            armed["on"] = True

    def fail(conn: Any) -> None:
        if armed["on"]:
            armed["on"] = False
            raise OSError("simulated: the disk filled up at commit")

    event.listen(db.engine, "before_cursor_execute", spot)
    event.listen(db.engine, "commit", fail)
    try:
        with pytest.raises(OSError, match="simulated"):
            _ingest(db, home, write_json(tmp_path / "v.json", VEHICLES), "b", minilm)
    finally:
        event.remove(db.engine, "before_cursor_execute", spot)
        event.remove(db.engine, "commit", fail)
    index = description_index(db, db_space(db), home, Device())
    assert index.files() == [path] and np.array_equal(np.sort(index.load().ids()), ids)  # the old file serves
    assert index.verify().ok
    assert sorted(p.name for p in index.folder.glob("*.faiss")) == [path.name]  # the new one is gone
    assert count(db, Corpus) == 1 and count(db, Corpus, Corpus.status == CorpusStatus.INGESTING) == 0


# -- 6. no dead rows ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_no_dead_rows_after_ingests_replaces_deletes_and_kills(db_url: str, db: Database, home: Path,
                                                               tmp_path: Path) -> None:
    files = {n: write_json(tmp_path / f"{n}.json", t) for n, t in
             (("a", ANIMALS), ("v", VEHICLES), ("o", OTHER), ("big", BIG))}
    assert cli(db_url, home, "ingest", str(files["a"]), "--name", "a", "--encoder", "minilm") == 0
    assert cli(db_url, home, "centres", "build") == 0
    assert cli(db_url, home, "ingest", str(files["v"]), "--name", "b") == 0
    assert cli(db_url, home, "centres", "build") == 0
    assert cli(db_url, home, "ingest", str(files["o"]), "--name", "b", "--replace") == 0
    assert cli(db_url, home, "centres", "build") == 0
    audio_space(db, home)
    for seed in (4, 5):  # two more head versions
        w, b = head_weights(seed)
        record_head(db, home, 1, LinearHead(w, b), hyperparams={}, data_sha256="0" * 64, n_pairs=0, metrics={})
    # a killed ingest, once it has written rows
    proc = subprocess.Popen(cli_command(db_url, home, "ingest", str(files["big"]), "--name", "big", "--chunk-size", "64"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 600  # a hang guard: the loop waits on the event
        while count(db, Description, Description.corpus_id.in_(
                select(Corpus.id).where(Corpus.status == CorpusStatus.INGESTING))) < 128:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert dead_rows(db_url, home)["pending corpora"] == 1  # shown as interrupted until the next write
    assert cli(db_url, home, "corpus", "delete", "a") == 0  # the next write
    assert cli(db_url, home, "centres", "build") == 0
    assert cli(db_url, home, "ingest", str(files["a"]), "--name", "a") == 0
    assert dead_rows(db_url, home) == dict.fromkeys(dead_rows(db_url, home), 0)
    assert cli(db_url, home, "index", "verify") == 0
    with db.session() as s:  # every category's default centre is one row: built again after the last ingest
        assert count(db, Centre) == 0
    assert cli(db_url, home, "centres", "build") == 0
    with db.session() as s:
        n_categories = s.scalar(select(func.count(func.distinct(Description.category_id))))
    assert count(db, Centre) == n_categories
