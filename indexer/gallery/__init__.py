"""The gallery: items of any modality with their metadata and vectors (add, remove, re-project through a new head, summarise).

May import: ``unibind.indexer.{modalities,store,index,encoders,readers,runtime}``, ``unibind.schema``.
"""
