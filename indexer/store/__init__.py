"""Writing the knowledge base's descriptions: ingestion, what the store holds and its repair (corpus
deletion, reaping abandoned writes, dropping unused spaces), and the leases of running writers.

May import: ``unibind.indexer.{index,encoders,readers,runtime}``, ``unibind.schema``.
"""
