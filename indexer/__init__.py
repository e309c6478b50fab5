"""The build side: everything that writes the knowledge base and the files derived from it.

Subpackages, each importing only those below it (``tests/test_architecture.py`` checks this)::

    training    InfoNCE head training; a training run from a pairs file
    gallery     gallery items of any modality
    modalities  a space's modalities, their heads and versions, the projection into the space
    store       ingestion, the store's contents and repair, writer leases
    index       FAISS files whose ids are primary keys; the data folder
    encoders    frozen encoders, spec strings, the factory
    readers     corpus, feature and pairs files; the builtin corpora
    runtime     the device, FAISS, vector conventions

May import: ``unibind.schema``; never ``unibind.retrieval``.
"""
