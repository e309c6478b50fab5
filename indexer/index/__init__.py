"""Derived files: FAISS indexes whose ids are primary keys, their stamped on-disk versions recorded in the
store (descriptions, galleries), and the data folder they live in.

May import: ``unibind.indexer.runtime``, ``unibind.schema``.
"""
