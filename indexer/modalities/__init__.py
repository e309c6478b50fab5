"""The modalities of a space and their heads: the modality registry, the linear head, head versions
(files and rows), and the projection of any input into the space (frozen encoder, then active head).

May import: ``unibind.indexer.{store,index,encoders,readers,runtime}``, ``unibind.schema``.
"""
