"""Knowledge bases written by LLMs: category descriptions (``unibind kb generate``) and per-sample descriptions
(``unibind kb describe``), with their LLM backends (an OpenAI-compatible server, a local transformers model, the
random-words control), prompt sets, cleaning and on-disk response cache.

May import: ``unibind.indexer.readers``, ``unibind.indexer.encoders`` (types only), ``unibind.indexer.runtime``,
``unibind.schema``.
"""
