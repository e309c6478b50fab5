"""The store's schema: Alembic migrations on SQLite and PostgreSQL, `alembic check`, URL resolution."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from unibind.schema import Category, Corpus, CorpusStatus, Database, Description, Space, resolve_database_url
from unibind.schema.database import current_revision, head_revision
from unibind.schema.errors import InvalidInput, Unavailable
from unibind.schema.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def test_new_database_is_migrated_on_first_use(db: Database) -> None:
    assert current_revision(db.engine) == head_revision()
    assert {"spaces", "corpora", "categories", "descriptions", "segments", "tombstones", "item_batches", "reader_leases",
            "alembic_version"} <= set(db.table_names())


def test_alembic_check_is_clean(db_url: str) -> None:
    """`alembic upgrade head` then `alembic check` through the real CLI and alembic.ini."""
    for args in (["upgrade", "head"], ["check"]):
        proc = subprocess.run(
            [sys.executable, "-m", "alembic", "-x", f"db={db_url}", *args],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
    assert "No new upgrade operations detected" in proc.stdout + proc.stderr


def test_downgrade_and_upgrade_again(db: Database) -> None:
    from unibind.schema.database import migrate

    migrate(db.engine, "base", downgrade=True)
    assert "descriptions" not in db.table_names()
    migrate(db.engine)
    assert "descriptions" in db.table_names()


def test_models_round_trip_and_cascade(db: Database) -> None:
    with db.transaction() as s:
        space = Space(encoder="minilm", dim=4)
        s.add(space)
        s.flush()
        corpus = Corpus(space_id=space.id, name="c", status=CorpusStatus.COMPLETE)
        cat = Category(name="tench")
        s.add_all([corpus, cat])
        s.flush()
        s.add(Description(corpus_id=corpus.id, category_id=cat.id, text="t", text_hash="h" * 40, meta={"a": 1}, vector=b"\0" * 16))
    with db.transaction() as s:
        d = s.scalars(select(Description)).one()
        assert (d.text, d.meta, d.corpus.status, d.category.name) == ("t", {"a": 1}, CorpusStatus.COMPLETE, "tench")
        s.delete(s.get(Corpus, d.corpus_id))
    with db.session() as s:
        assert s.scalars(select(Description)).all() == []  # ON DELETE CASCADE


def test_settings_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("UNIBIND_DATABASE_URL", raising=False)
    monkeypatch.setenv("UNIBIND_HOME", str(tmp_path / "h"))
    s = Settings.resolve()
    assert s.home == (tmp_path / "h").resolve()
    assert s.database_url == f"sqlite:///{(tmp_path / 'h' / 'unibind.db').resolve()}"
    monkeypatch.setenv("UNIBIND_DATABASE_URL", "postgresql+psycopg://u@h/db")
    assert Settings.resolve().database_url == "postgresql+psycopg://u@h/db"
    assert Settings.resolve(db="sqlite:///x.db").database_url == "sqlite:///x.db"
    monkeypatch.delenv("UNIBIND_HOME")
    assert Settings.resolve().home == (Path.cwd() / "unibind-data").resolve()


def test_bad_database_urls(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"the database URL \(--db or \$UNIBIND_DATABASE_URL\) is not a valid "):
        resolve_database_url("not a url")
    with pytest.raises(InvalidInput, match=r"'mysql://root:\*\*\*@localhost/test': backend 'mysql' is not supported"):
        resolve_database_url("mysql://root:pa55word@localhost/test")
    assert resolve_database_url("postgresql://u@h/db").startswith("postgresql+psycopg://")
    with pytest.raises(Unavailable, match="the database is out of reach: "):
        Database("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2")


INTEGER_KEYED = ("spaces", "corpora", "categories", "descriptions", "segments", "centres", "centre_members",
                 "modalities", "heads", "items", "item_batches", "reader_leases")


def _autoincrement_tables(db: Database) -> set[str]:
    from sqlalchemy import text

    with db.engine.connect() as c:
        rows = c.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'table'")).all()
    return {name for name, sql in rows if "AUTOINCREMENT" in (sql or "").upper()}


def test_sqlite_tables_never_reuse_ids_also_after_migrating(tmp_path: Path) -> None:
    """Every table with an integer key is AUTOINCREMENT on SQLite, on a new store and on one migrated from before
    (a later migration that rebuilds a table must keep it), and its rows survive the rebuild."""
    from sqlalchemy import text

    from unibind.schema.database import migrate

    new = Database(f"sqlite:///{tmp_path / 'new.db'}")
    assert set(INTEGER_KEYED) <= _autoincrement_tables(new)
    old = Database(f"sqlite:///{tmp_path / 'old.db'}", auto_migrate=False)
    migrate(old.engine, "0007")
    with old.engine.begin() as c:
        c.execute(text("INSERT INTO spaces (id, encoder, dim, created_at) VALUES (1, 'minilm', 4, '2026-01-01')"))
        c.execute(text("INSERT INTO corpora (id, space_id, name, status, n_descriptions, n_duplicates, n_categories, "
                       "created_at) VALUES (1, 1, 'a', 'complete', 2, 0, 1, '2026-01-01')"))
        c.execute(text("INSERT INTO categories (id, name) VALUES (1, 'tench')"))
        c.execute(text("INSERT INTO descriptions (id, corpus_id, category_id, text, text_hash, vector) VALUES "
                       "(1, 1, 1, 'x', 'h1', :v), (2, 1, 1, 'y', 'h2', :v)"), {"v": b"\0" * 16})
        c.execute(text("INSERT INTO index_files (id, space_id, kind, path, factory, n_vectors, ids_sha256, file_sha256, "
                       "file_size, corpus_ids, created_at) VALUES (1, 1, 'descriptions', '/x.faiss', 'Flat', 2, 'a', "
                       "'b', 1, '[1]', '2026-01-01')"))
    migrate(old.engine)
    assert set(INTEGER_KEYED) <= _autoincrement_tables(old)
    with old.engine.begin() as c:  # nothing cascaded away while parents were rebuilt
        assert c.execute(text("SELECT count(*) FROM descriptions")).scalar() == 2
        assert c.execute(text("SELECT count(*) FROM segments")).scalar() == 1  # the one file: its first segment
        c.execute(text("DELETE FROM descriptions WHERE id = 2"))
        c.execute(text("INSERT INTO descriptions (corpus_id, category_id, text, text_hash, vector) "
                       "VALUES (1, 1, 'z', 'h3', :v)"), {"v": b"\0" * 16})
        assert c.execute(text("SELECT max(id) FROM descriptions")).scalar() == 3  # not 2 again
    old.dispose()
    new.dispose()
