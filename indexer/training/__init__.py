"""Binding a new modality: the InfoNCE training loop, and a training run from a pairs file (read, encode, train, record, activate, re-project the gallery).

May import: every other ``unibind.indexer`` subpackage and ``unibind.schema``.
"""
