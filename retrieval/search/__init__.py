"""Cross-modal search: query vectors of the space against a modality's gallery or the descriptions.

May import: ``unibind.indexer``, ``unibind.schema``.
"""
