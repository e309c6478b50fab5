"""The FastAPI app: ``create_app(config)`` assembles the middleware, the error handlers and the routers; the
blocking work runs in worker threads on the objects of :class:`ServiceState`, loaded once at start-up."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Security
from starlette.concurrency import run_in_threadpool

from unibind.retrieval.service import errors
from unibind.retrieval.service.config import ServiceConfig
from unibind.retrieval.service.jobs import JobManager
from unibind.retrieval.service.metrics import ServiceMetrics
from unibind.retrieval.service.middleware import BodyLimit, RequestTracking
from unibind.retrieval.service.queries import recognize_route, search_route
from unibind.retrieval.service.routes import browse, centres, corpora, health, jobs, metrics, page, recognition, search
from unibind.retrieval.service.security import api_key_guard
from unibind.retrieval.service.state import ServiceState
from unibind.retrieval.service.upload import FORM_OVERHEAD

DESCRIPTION = "UniBind recognition and cross-modal search over a FAISS + SQL knowledge base."


def create_app(config: ServiceConfig, *, state: ServiceState | None = None) -> FastAPI:
    """The service over ``config``'s database (``state``: an already loaded one, for tests)."""
    service_metrics, job_manager = ServiceMetrics(), JobManager(max_queued=config.max_queued_uploads)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loaded = state or await run_in_threadpool(ServiceState, config)
        await run_in_threadpool(job_manager.open, loaded.db)
        await run_in_threadpool(loaded.warm)
        app.state.service = loaded
        try:
            yield
        finally:
            await run_in_threadpool(job_manager.close)
            if state is None:
                loaded.close()

    app = FastAPI(title="unibind", version="1", description=DESCRIPTION, lifespan=lifespan)
    # the outermost first: every request gets its id and is counted; then a body over the limit is refused
    app.add_middleware(BodyLimit, limit=config.max_upload_bytes + FORM_OVERHEAD)
    app.add_middleware(RequestTracking, metrics=service_metrics)
    errors.install(app)

    recognize, find = recognize_route(config), search_route(config)
    protected = [Security(api_key_guard(config.api_key))] if config.api_key is not None else []
    app.include_router(health.router)
    routers = (recognition.router(recognize, config), search.router(find, config), corpora.router(config, job_manager),
               jobs.router(job_manager), centres.router(), browse.router(config), metrics.router(service_metrics))
    for router in routers:
        app.include_router(router, dependencies=protected, responses=errors.responses(401) if protected else None)
    page.install(app)
    _add_schemas(app, {**recognize.components(), **find.components()})
    return app


def _add_schemas(app: FastAPI, schemas: dict[str, Any]) -> None:
    """Add to the OpenAPI document the models of request bodies that routes read themselves (JSON or multipart)."""
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        document = generate()
        document.setdefault("components", {}).setdefault("schemas", {}).update(schemas)
        return document

    app.openapi = openapi  # type: ignore[method-assign]
