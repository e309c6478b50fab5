"""Frozen encoders: the interface, spec strings, the factory (one cache per process) and the open_clip, transformers CLIP and sentence-transformers backends.

May import: ``unibind.indexer.runtime``, ``unibind.schema`` (errors).
"""
