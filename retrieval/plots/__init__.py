"""Pictures that show why: PNG plots of recognition accuracy (with its bootstrap intervals), of the most confused
category pairs of an eval, and of one category's embedding centre in 2-D among its nearest neighbours' centres.

``figures`` draws PNG bytes from plain arrays and dicts (matplotlib, the Agg backend, imported lazily);
``projection`` projects vectors to 2-D (PCA by NumPy's SVD); ``eval_results`` reads and checks the JSON of
``unibind eval recognition|dev --json``; ``centre_view`` gathers the data of a centre plot from the store and ``neighbours`` picks its nearest centres;
``files`` writes a PNG atomically.

May import: ``unibind.retrieval.{evaluation,recognition,search,centres}``, ``unibind.indexer``, ``unibind.schema``.
"""
