"""Recognition as a retrieval call: the exact scoring step, the dense and FAISS engines, the exact engine over any vector backend (FAISS files, Milvus), and the recogniser that ties them to the centres.

May import: ``unibind.retrieval.centres``, ``unibind.indexer``, ``unibind.schema``.
"""
