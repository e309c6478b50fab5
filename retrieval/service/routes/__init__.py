"""The service's routes, one module per resource group, each an ``APIRouter`` (built by a ``router(...)``
factory when its schema depends on the configuration):

- ``health``: ``GET /healthz`` (open); ``metrics``: ``GET /metrics``;
- ``recognition``: ``POST /v1/recognize``; ``search``: ``POST /v1/search``;
- ``corpora``: ``GET``/``POST /v1/corpora``, ``DELETE /v1/corpora/{name}``; ``jobs``: ``GET /v1/jobs[/{id}]``;
- ``centres``: ``GET /v1/categories/{name}/centre`` and its picture ``GET /v1/categories/{name}/centre/plot.png``;
- ``browse``: ``GET /v1/info``, ``GET /v1/categories``, ``GET /v1/items/{id}/thumbnail``;
- ``page``: the web page ``GET /`` and its files under ``/ui/`` (open, not in the schema).

Routes are thin: they parse, call the library on the loaded state in a worker thread, and shape the answer.
They raise typed errors (``unibind.schema.errors``, ``service.errors``), never an HTTP status of their own.
May import: the rest of ``unibind.retrieval.service``, ``unibind.retrieval.{plots,recognition,search,centres}``,
``unibind.indexer``, ``unibind.schema``.
"""
