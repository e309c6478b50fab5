"""Frozen encoders: the interface, spec strings, the factory (one cache per process) and the open_clip, transformers CLIP and sentence-transformers backends; ``ray_encoder`` runs any of them on Ray Data actors (the optional ``ray`` extra, imported only when used).

May import: ``unibind.indexer.runtime``, ``unibind.schema`` (errors).
"""
