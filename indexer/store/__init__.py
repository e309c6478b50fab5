"""Writing the knowledge base's descriptions: ingestion, what the store holds and its repair (corpus
deletion, reaping abandoned writes, dropping unused spaces), the vacuum of what no reader can see any more, and
the leases of long-lived readers.

May import: ``unibind.indexer.{index,encoders,readers,runtime}``, ``unibind.schema``.
"""
