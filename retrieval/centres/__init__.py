"""Embedding-centre localisation: selection strategies, the prompt templates, and building / loading the centres of a knowledge base.

May import: ``unibind.indexer``, ``unibind.schema``.
"""
