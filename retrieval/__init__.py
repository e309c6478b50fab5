"""The query side: everything that reads the knowledge base to answer.

Subpackages, each importing only those below it (``tests/test_architecture.py`` checks this)::

    cli          the ``unibind`` command line
    service      the HTTP service (``unibind serve``)
    plots        PNG pictures: accuracy with intervals, confusions, a category's centre in 2-D
    evaluation   accuracy of recognition; the dev benchmark
    recognition  recognition as a retrieval call: engines and the recogniser
    search       cross-modal search
    centres      embedding-centre localisation

May import: ``unibind.indexer`` and ``unibind.schema``.
"""
