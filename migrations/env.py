"""Alembic environment: runs on a connection handed over by unibind, or on a URL from the command line."""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context

from unibind.schema.base import Base
from unibind.schema.database import check_foreign_keys
from unibind.schema import models  # noqa: F401  (registers the tables on Base.metadata)

config = context.config
if config.config_file_name is not None and config.attributes.get("connection") is None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def _url() -> str:
    from unibind.schema.database import resolve_database_url
    from unibind.schema.settings import Settings

    db = context.get_x_argument(as_dictionary=True).get("db")
    return resolve_database_url(Settings.resolve(db=db).database_url)


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
        check_foreign_keys(connection)  # SQLite rebuilt tables with foreign keys off: nothing may dangle


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from unibind.schema.database import foreign_keys_off, make_engine

    engine = make_engine(_url())
    with engine.connect() as conn, foreign_keys_off(conn):
        _run(conn)
        conn.commit()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
