"""The HTTP service: recognition, cross-modal search and the knowledge base over FastAPI (``unibind serve``).

``app`` holds the factory ``create_app(config)``; ``routes/`` one ``APIRouter`` module per resource group;
``middleware`` the request id, metrics and body limit; ``security`` the API key dependency; ``errors`` every
error's HTTP status, in one place; ``queries`` and ``payloads`` the request and response bodies (the OpenAPI
schema); ``state``, ``locks`` and ``jobs`` what the running service loads, shares and runs in the background.

May import: ``unibind.retrieval.{plots,evaluation,recognition,search,centres}``, ``unibind.indexer``,
``unibind.schema``; never the CLI.
"""
