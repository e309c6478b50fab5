"""Measuring recognition: top-1 / top-5 accuracy per centre strategy, and the dev benchmark on the builtin corpus.

May import: ``unibind.retrieval.{centres,recognition}``, ``unibind.indexer``, ``unibind.schema``.
"""
