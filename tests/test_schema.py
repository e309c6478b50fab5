"""The store's schema: Alembic migrations on SQLite and PostgreSQL, `alembic check`, URL resolution."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from schema import Category, Corpus, CorpusStatus, Database, Description, Space, resolve_database_url
from schema.database import current_revision, head_revision
from schema.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def test_new_database_is_migrated_on_first_use(db: Database) -> None:
    assert current_revision(db.engine) == head_revision()
    assert {"spaces", "corpora", "categories", "descriptions", "index_files", "alembic_version"} <= set(db.table_names())


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
    from schema.database import migrate

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
    with pytest.raises(ValueError, match="not a valid SQLAlchemy URL"):
        resolve_database_url("not a url")
    with pytest.raises(ValueError, match="backend 'mysql' is not supported"):
        resolve_database_url("mysql://root@localhost/test")
    assert resolve_database_url("postgresql://u@h/db").startswith("postgresql+psycopg://")
    with pytest.raises(ValueError, match="cannot connect to the database"):
        Database("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2")
