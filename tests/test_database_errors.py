"""A database out of reach or locked mid-command, typed in one place (``unibind.schema.database``): the library
raises Unavailable / Busy, the CLI exits 69 / 75 with one line, and the service answers 503 with Retry-After.
Real databases: an SQLite file another connection holds the write lock of, a path SQLite cannot open, and a
PostgreSQL port nothing listens on."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from unibind.retrieval.cli.main import main
from unibind.retrieval.service.app import create_app
from unibind.schema import Database
from unibind.schema import database as database_module
from unibind.schema.errors import Busy, Unavailable
from tests.corpus_samples import ANIMALS, write_json
from tests.test_service import cli, detail, make_state

REFUSED_PG = "postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2"


@pytest.fixture
def no_busy_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite gives up on a held write lock at once, not after BUSY_TIMEOUT_S (connections made from now on)."""
    monkeypatch.setattr(database_module, "BUSY_TIMEOUT_S", 0)


@pytest.fixture
def write_locked(tmp_path: Path, minilm: Any, no_busy_wait: None) -> Iterator[tuple[str, Path]]:
    """(url, home) of an SQLite store with one corpus whose write lock another connection holds meanwhile."""
    url, home = f"sqlite:///{tmp_path / 'unibind.db'}", tmp_path / "home"
    cli(url, home, "ingest", str(write_json(tmp_path / "a.json", ANIMALS)), "--name", "kb", "--encoder", "minilm")
    holder = sqlite3.connect(tmp_path / "unibind.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # the write lock, as a writer in another process holds it
    try:
        yield url, home
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_a_held_write_lock_is_busy(write_locked: tuple[str, Path]) -> None:
    url, _ = write_locked
    db = Database(url)
    try:
        with db.session() as session:  # readers still read (WAL)
            assert session.execute(text("SELECT count(*) FROM corpora")).scalar_one() == 1
        busy = r"^the store is busy: another process held SQLite's write lock for longer than 0 s; run the command"
        with pytest.raises(Busy, match=busy), db.transaction() as session:
            session.execute(text("UPDATE corpora SET source = 'x'"))
    finally:
        db.dispose()


def test_the_cli_exits_75_when_busy(write_locked: tuple[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    url, home = write_locked
    code = main(["--db", url, "--home", str(home), "--device", "cpu", "modality", "add", "lidar", "--dim", "4"])
    assert (code, capsys.readouterr().err) == (75, ("unibind: error: the store is busy: another process held SQLite's "
                                                    "write lock for longer than 0 s; run the command again\n"))


def test_the_service_answers_503_with_retry_after_when_busy(write_locked: tuple[str, Path], minilm: Any) -> None:
    url, home = write_locked
    state = make_state(url, home, minilm)
    try:
        with TestClient(create_app(state.config, state=state), raise_server_exceptions=False) as client:
            r = client.delete("/v1/corpora/kb")
            assert r.status_code == 503 and r.headers["Retry-After"] == "5", r.text
            assert detail(r).startswith("the store is busy: ")
            assert [c["name"] for c in client.get("/v1/corpora").json()] == ["kb"]  # nothing was deleted
    finally:
        state.close()


@pytest.mark.parametrize("where", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_database_out_of_reach_is_unavailable(where: str, tmp_path: Path) -> None:
    url = REFUSED_PG if where == "postgres" else f"sqlite:///{tmp_path / 'a-folder.db'}"
    (tmp_path / "a-folder.db").mkdir()  # SQLite cannot open a folder as its file
    with pytest.raises(Unavailable, match=r"^the database is out of reach: "):
        Database(url)
    db = Database(url, auto_migrate=False)  # the engine connects on first use: mid-command
    try:
        with pytest.raises(Unavailable, match=r"^the database is out of reach: "), db.session() as session:
            session.execute(text("SELECT 1"))
    finally:
        db.dispose()


def test_the_cli_exits_69_when_the_database_is_out_of_reach(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a-folder.db").mkdir()
    code = main(["--db", f"sqlite:///{tmp_path / 'a-folder.db'}", "--home", str(tmp_path), "corpus", "list"])
    assert (code, capsys.readouterr().err) == (69, ("unibind: error: the database is out of reach: unable to open "
                                                    "database file\n"))


def test_the_service_answers_503_when_the_database_goes_away(tmp_path: Path, minilm: Any) -> None:
    url, home = f"sqlite:///{tmp_path / 'unibind.db'}", tmp_path / "home"
    cli(url, home, "ingest", str(write_json(tmp_path / "a.json", ANIMALS)), "--name", "kb", "--encoder", "minilm")
    state = make_state(url, home, minilm)
    try:
        with TestClient(create_app(state.config, state=state), raise_server_exceptions=False) as client:
            assert client.get("/v1/corpora").status_code == 200
            state.db.dispose()
            (tmp_path / "unibind.db").rename(tmp_path / "moved.db")
            (tmp_path / "unibind.db").mkdir()  # what the URL names is now something SQLite cannot open
            r = client.get("/v1/corpora")
            assert r.status_code == 503 and r.headers["Retry-After"] == "5", r.text
            assert detail(r) == "the database is out of reach: unable to open database file"
            assert "internal error" not in r.text and str(tmp_path) not in r.text
    finally:
        state.close()


def test_a_bug_in_sql_stays_an_untyped_database_error(tmp_path: Path) -> None:
    """Bad SQL is the code's fault, not an unreachable database: SQLAlchemy's error, a 500 / exit 1."""
    db = Database(f"sqlite:///{tmp_path / 'unibind.db'}")
    try:
        with pytest.raises(OperationalError, match="no such table: nope"), db.session() as session:
            session.execute(text("SELECT * FROM nope"))
    finally:
        db.dispose()
