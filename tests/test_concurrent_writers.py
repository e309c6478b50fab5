"""Concurrent writers, as real processes, on SQLite and PostgreSQL: ingests side by side (one of them racing for
the same name, all of them for the same new space and categories), `index rebuild` beside a live ingest, two
processes recording head versions, two building the same centres. No raw database errors, one clear message."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from unibind.indexer.index.data_home import DataHome
from unibind.retrieval.cli.main import main
from unibind.schema import Centre, Corpus, CorpusStatus, Database, Description, Head
from tests.corpus_samples import write_json
from tests.test_gallery import audio_space

pytestmark = pytest.mark.slow


def corpus(tag: str, classes: int = 30, per_class: int = 20) -> dict[str, list[str]]:
    return {f"{tag} class {i}": [f"Sentence {j} about the {tag} thing number {i}, from angle {j}." for j in range(per_class)]
            for i in range(classes)}


def command(url: str, home: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "unibind.retrieval.cli", "--db", url, "--home", str(home), "--device", "cpu", *args]


def finish(procs: list[subprocess.Popen[str]], timeout: float = 600) -> list[tuple[int, str]]:
    return [(p.wait(timeout=timeout), (p.communicate()[1] or "")) for p in procs]


def test_ingests_side_by_side_and_one_name_raced(db_url: str, home: Path, tmp_path: Path) -> None:
    """Three ingests start together on an empty store: all three create the space and share categories; two of
    them want the name 'x'. The other corpus and one 'x' are published, the loser gets one clear line."""
    shared = {**corpus("shared", 10), **corpus("x", 20)}
    x, y = write_json(tmp_path / "x.json", shared), write_json(tmp_path / "y.json", {**corpus("shared", 10), **corpus("y", 20)})
    procs = [subprocess.Popen(command(db_url, home, "ingest", str(path), "--name", name, "--encoder", "minilm",
                                      "--chunk-size", "100"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for path, name in ((x, "x"), (y, "y"), (x, "x"))]
    results = finish(procs)
    assert results[1][0] == 0, results[1][1]
    codes = sorted(r[0] for r in (results[0], results[2]))
    assert codes == [0, 3], results  # 3: a conflict with the store's state
    loser = next(err for code, err in (results[0], results[2]) if code)
    assert loser.startswith("unibind: error: corpus 'x'") and loser.count("\n") == 1, loser
    assert "is being ingested by process" in loser or "already exists" in loser or "published" in loser
    db = Database(db_url)
    with db.session() as s:
        got = dict(s.execute(select(Corpus.name, Corpus.n_descriptions)).all())
        assert s.scalar(select(func.count(Description.id))) == sum(got.values())
    assert got == {"x": 600, "y": 600}
    assert main(["--db", db_url, "--home", str(home), "index", "verify"]) == 0
    db.dispose()


def test_index_rebuild_never_removes_a_live_ingest(db_url: str, home: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--db", db_url, "--home", str(home), "--device", "cpu"]
    assert main([*base, "ingest", str(write_json(tmp_path / "a.json", corpus("a", 3, 5))), "--name", "a",
                 "--encoder", "minilm"]) == 0
    proc = subprocess.Popen(command(db_url, home, "ingest", str(write_json(tmp_path / "b.json", corpus("b", 40, 30))),
                                    "--name", "b", "--chunk-size", "64"), stderr=subprocess.PIPE, text=True)
    db = Database(db_url)
    deadline = time.monotonic() + 600  # a hang guard: the loop waits on the event
    pending = select(func.count(Description.id)).join(Corpus).where(Corpus.status == CorpusStatus.INGESTING)
    while True:
        with db.session() as s:
            if (s.scalar(pending) or 0) >= 128:
                break
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.05)
    capsys.readouterr()
    assert main([*base, "index", "rebuild"]) == 0  # what the service's 409 tells users to run
    assert "removed interrupted" not in capsys.readouterr().out
    code, err = finish([proc])[0]
    assert code == 0, err
    with db.session() as s:
        assert s.scalars(select(Corpus.n_descriptions).where(Corpus.name == "b")).one() == 1200
    assert main([*base, "index", "verify"]) == 0
    db.dispose()


RECORD = textwrap.dedent("""
    import sys
    from pathlib import Path
    import numpy as np
    from unibind.indexer.modalities.head import LinearHead
    from unibind.indexer.modalities.versions import record_head
    from unibind.schema import Database

    url, home, modality, seed = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    db = Database(url)
    rng = np.random.default_rng(seed)
    for i in range(5):
        w = rng.standard_normal((384, 16)).astype(np.float32)
        record_head(db, home, modality, LinearHead(w, np.zeros(384, np.float32)), hyperparams={"i": i},
                    data_sha256="0" * 64, n_pairs=0, metrics={}, activate=i % 2 == 0)
""")


def test_two_processes_record_head_versions(db_url: str, db: Database, home: Path) -> None:
    setup = audio_space(db, home)  # version 1
    procs = [subprocess.Popen([sys.executable, "-c", RECORD, db_url, str(home), str(setup.modality_id), str(seed)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for seed in (1, 2)]
    for code, err in finish(procs):
        assert code == 0, err
    with db.session() as s:
        versions = sorted(s.scalars(select(Head.version)))
        active = s.scalar(select(func.count(Head.id)).where(Head.active.is_(True)))
        paths = list(s.scalars(select(Head.path)))
    assert versions == list(range(1, 12)) and active == 1
    data = DataHome(db, home)
    assert sorted(p.name for p in data.heads_dir.iterdir()) == sorted(data.resolve(p).name for p in paths)


def test_two_processes_build_the_same_centres(db_url: str, home: Path, tmp_path: Path) -> None:
    """A CLI `centres build` beside another (as a `recognize` beside a running service): both succeed, one
    centre per category."""
    assert main(["--db", db_url, "--home", str(home), "ingest", str(write_json(tmp_path / "c.json", corpus("c", 300, 3))),
                 "--name", "c", "--encoder", "minilm"]) == 0
    procs = [subprocess.Popen(command(db_url, home, "centres", "build"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    for code, err in finish(procs):
        assert code == 0, err
    db = Database(db_url)
    with db.session() as s:
        assert s.scalar(select(func.count(Centre.id))) == 300
    db.dispose()


# -- a publish only flips a record ---------------------------------------------------------------------------
class PausedWrites:
    """Segment files written by one thread wait at the start of the write until released: a write of a big
    segment (a 1M-vector file, a long Milvus upload) held open as long as the test needs, in the real code path.
    Other threads and processes write as usual."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from unibind.indexer.index.places import FilePlace

        self.entered, self.release = threading.Event(), threading.Event()
        self.thread: threading.Thread | None = None
        real = FilePlace.write

        def write(place: Any, *args: Any, **kwargs: Any) -> Any:
            if threading.current_thread() is self.thread:
                self.entered.set()
                assert self.release.wait(300), "the test never released the paused write"
            return real(place, *args, **kwargs)

        monkeypatch.setattr(FilePlace, "write", write)

    def run(self, target: Any) -> dict[str, Any]:
        result: dict[str, Any] = {}

        def body() -> None:
            try:
                result["value"] = target()
            except BaseException as e:  # noqa: BLE001 - handed to the test
                result["error"] = e

        self.thread = threading.Thread(target=body)
        self.thread.start()
        return result


def test_writers_never_wait_for_a_segment_being_written(db_url: str, db: Database, home: Path, tmp_path: Path,
                                                        minilm: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """While one ingest writes its (big) segment, other processes ingest, delete and add gallery items, and all of
    them succeed (on SQLite too: the catalog lock is not held while a segment is written). The paused ingest then
    publishes into whatever version is current: two ingests of different corpora both land, nothing is encoded
    twice, and the index holds exactly the store's rows."""
    from tests.test_ingest import CountingEncoder
    from unibind.indexer.readers.corpus import read_corpus
    from unibind.indexer.store.ingest import IngestConfig, ingest

    base = ["--db", db_url, "--home", str(home), "--device", "cpu"]
    assert main([*base, "ingest", str(write_json(tmp_path / "old.json", corpus("old", 5, 4))), "--name", "old",
                 "--encoder", "minilm"]) == 0
    paused = PausedWrites(monkeypatch)
    counting = CountingEncoder(minilm)
    big = read_corpus(write_json(tmp_path / "big.json", corpus("big", 20, 10)))
    outcome = paused.run(lambda: ingest(db, big, IngestConfig(name="big", encoder="minilm"), home=home,
                                        device=minilm.device, encoder=counting))
    assert paused.entered.wait(120), outcome
    # other processes (other hosts would do the same: no file lock is involved) write meanwhile
    small = write_json(tmp_path / "small.json", corpus("small", 4, 3))
    for args in (["ingest", str(small), "--name", "small", "--encoder", "minilm"], ["corpus", "delete", "old"]):
        proc = subprocess.run(command(db_url, home, *args), capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
    assert not outcome and paused.thread is not None and paused.thread.is_alive()
    paused.release.set()
    paused.thread.join(120)
    assert "error" not in outcome, outcome.get("error")
    assert sorted(counting.seen) == sorted(r.text for r in big.records)  # encoded once: the publish kept its work
    with db.session() as s:
        got = dict(s.execute(select(Corpus.name, Corpus.n_descriptions).where(Corpus.status == CorpusStatus.COMPLETE)).all())
    assert got == {"big": 200, "small": 12}
    assert main([*base, "index", "verify"]) == 0


def test_a_true_conflict_is_one_clear_message_and_keeps_the_store_whole(db_url: str, db: Database, home: Path,
                                                                        tmp_path: Path, minilm: Any,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Two ingests of the same name: the one that publishes second (without --replace) gets one clear line; the
    store holds the first one's corpus, whole, and nothing of the loser."""
    from unibind.indexer.readers.corpus import read_corpus
    from unibind.indexer.store.ingest import IngestConfig, ingest
    from unibind.schema import Segment

    paused = PausedWrites(monkeypatch)
    data = read_corpus(write_json(tmp_path / "x1.json", corpus("x", 6, 5)))
    outcome = paused.run(lambda: ingest(db, data, IngestConfig(name="x", encoder="minilm"), home=home,
                                        device=minilm.device, encoder=minilm))
    assert paused.entered.wait(120), outcome
    other = write_json(tmp_path / "x2.json", corpus("x", 3, 2))
    proc = subprocess.run(command(db_url, home, "ingest", str(other), "--name", "x", "--encoder", "minilm"),
                          capture_output=True, text=True, timeout=300)
    # the second one was refused at once: the first is still ingesting under that name
    assert proc.returncode == 3 and "is being ingested by process" in proc.stderr, proc.stderr
    paused.release.set()
    paused.thread.join(120)  # type: ignore[union-attr]
    assert "error" not in outcome, outcome.get("error")
    with db.session() as s:
        assert dict(s.execute(select(Corpus.name, Corpus.n_descriptions)).all()) == {"x": 30}
        assert s.scalar(select(func.count(Segment.id))) == 1
    assert main(["--db", db_url, "--home", str(home), "index", "verify"]) == 0
