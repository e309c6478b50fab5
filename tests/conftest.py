"""Shared fixtures: real databases (SQLite in a temp folder, PostgreSQL in a fresh schema), the real
MiniLM encoder, and tiny real open_clip / transformers CLIP models saved to temp checkpoints."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a hub lookup with no network would retry for ~25 s
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

PG_URL = os.environ.get("UNIBIND_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() == "true"


def _pg_unavailable(reason: str) -> None:
    msg = f"PostgreSQL at {PG_URL} is not reachable: {reason}"
    if IN_CI:
        pytest.fail(msg + " (CI=true: the PostgreSQL tests must run)")
    pytest.skip(msg)


@contextmanager
def fresh_pg_schema() -> Iterator[str]:
    """A URL whose search_path is a fresh schema, dropped afterwards (skips, or under CI fails, when the
    server is unreachable)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as e:  # noqa: BLE001 - any connection failure means "unreachable"
        admin.dispose()
        _pg_unavailable(str(e).splitlines()[0])
    url = make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A URL whose search_path is a fresh schema, dropped afterwards."""
    with fresh_pg_schema() as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test that takes it runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'unibind.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def db(db_url: str) -> Iterator["Database"]:  # noqa: F821
    from unibind.schema import Database

    database = Database(db_url)
    yield database
    database.dispose()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture(scope="session")
def cpu() -> "Device":  # noqa: F821
    from unibind.indexer.runtime.device import Device

    return Device()


@pytest.fixture(scope="session")
def minilm(cpu):  # type: ignore[no-untyped-def]
    from unibind.indexer.encoders.factory import build_encoder

    return build_encoder("minilm", cpu)


# What enables each kind of skipped test: the last lines of a run say it, once per kind.
SKIP_KINDS = (
    (("GPU", "CUDA"), "GPU tests", "a machine with a CUDA GPU that torch and FAISS both see (then `pytest -m gpu`)"),
    (("Chromium", "playwright"), "browser tests", "`apt-get install chromium` (Debian's), then `make test`"),
    (("milvus", "Ray"), "Milvus and Ray tests", "`make extras` (`make test` runs it)"),
    (("PostgreSQL",), "PostgreSQL tests", "a PostgreSQL server at $UNIBIND_TEST_DATABASE_URL (default 127.0.0.1:5432)"),
)


@pytest.hookimpl(hookwrapper=True)
def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> Iterator[None]:
    """One line per kind of skipped test, with what runs them: after pytest's own summary, the last lines."""
    yield
    counts: dict[str, int] = {}
    other = 0
    for report in terminalreporter.stats.get("skipped", []):
        reason = str(report.longrepr[2]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
        for needles, kind, _ in SKIP_KINDS:
            if any(n.lower() in reason.lower() for n in needles):
                counts[kind] = counts.get(kind, 0) + 1
                break
        else:
            other += 1
    if not counts and not other:
        return
    terminalreporter.section("skipped, and what runs them")
    for _, kind, enable in SKIP_KINDS:
        if kind in counts:
            terminalreporter.write_line(f"{counts[kind]} {kind}: {enable}")
    if other:
        terminalreporter.write_line(f"{other} others: see the SKIPPED lines above")
