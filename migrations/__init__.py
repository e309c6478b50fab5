"""The Alembic migrations of the metadata store: ``env.py`` (how Alembic reaches the database and the models)
and ``versions/`` (one revision per schema change, applied in order by ``unibind.schema.database.migrate`` when a
store is opened, or by hand with ``alembic upgrade head``).

May import: ``unibind.schema`` only (the models, the declarative base, the database helpers).
"""
