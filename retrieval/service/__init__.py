"""The HTTP service: recognition, cross-modal search and the knowledge base over FastAPI (``unibind serve``).

May import: ``unibind.retrieval.{evaluation,recognition,search,centres}``, ``unibind.indexer``,
``unibind.schema``; never the CLI.
"""
