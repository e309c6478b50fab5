"""Derived files: FAISS indexes whose ids are primary keys; indexes made of immutable segments recorded in the
store (descriptions, galleries), searched at one catalog version and merged by compaction; the data folder they
live in; and the vector-backend interface with its two implementations (FAISS files, the default; Milvus, with
the optional ``unibind[milvus]`` extra).

May import: ``unibind.indexer.runtime``, ``unibind.schema``; ``pymilvus`` and ``milvus_lite`` only inside
``milvus_backend.py``, only when a Milvus backend is made.
"""
