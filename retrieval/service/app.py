"""The FastAPI app: ``create_app(config)``. Routes are thin; the blocking work runs in worker threads on the
objects of :class:`ServiceState`, loaded once at start-up."""

from __future__ import annotations

import hmac
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from unibind.retrieval.service import browse, errors, page
from unibind.retrieval.service import payloads as p
from unibind.retrieval.service.config import ServiceConfig
from unibind.retrieval.service.jobs import JobManager, add_routes
from unibind.retrieval.service.metrics import ServiceMetrics
from unibind.retrieval.service.state import ServiceState, Snapshot, service_of
from unibind.retrieval.service.upload import FORM_OVERHEAD, decode_image, read_form_upload

log = logging.getLogger(__name__)

OPEN_PATHS = frozenset({"/healthz"})
MULTIPART = "multipart/form-data"


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes is refused before it is parsed — at once when its
    Content-Length says so, else (chunked uploads) as soon as the bytes read pass the limit, while it streams."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            response = JSONResponse({"detail": f"request body of {int(declared)} bytes is larger than the limit of "
                                               f"{self.limit} bytes"}, status_code=413)
            await response(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise errors.BodyTooLarge(self.limit)
            return message

        await self.app(scope, limited, send)


def _given_key(request: Request) -> str | None:
    key = request.headers.get("x-api-key")
    if key is None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        key = token.strip() if scheme.lower() == "bearer" else None
    return key


def _route_template(app: FastAPI, request: Request) -> str:
    """The matched route's path template (bounded label values), or "unmatched"."""
    for route in app.router.routes:
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            return getattr(route, "path", "unmatched")
    return "unmatched"


class _Query:
    """A parsed query: the validated JSON body, or an uploaded image with its form fields."""

    def __init__(self, body: p.Query | None, image: Any = None, image_name: str = "", form: dict[str, Any] | None = None):
        self.body, self.image, self.image_name, self.form = body, image, image_name, form or {}


def create_app(config: ServiceConfig, *, state: ServiceState | None = None) -> FastAPI:
    """The service over ``config``'s database (``state``: an already loaded one, for tests)."""
    metrics, jobs = ServiceMetrics(), JobManager()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loaded = state or await run_in_threadpool(ServiceState, config)
        await run_in_threadpool(jobs.open, loaded.db)
        await run_in_threadpool(loaded.warm)
        app.state.service = loaded
        try:
            yield
        finally:
            await run_in_threadpool(jobs.close)
            if state is None:
                loaded.close()

    app = FastAPI(title="unibind", version="1", lifespan=lifespan,
                  description="UniBind recognition and cross-modal search over a FAISS + SQL knowledge base.",
                  responses={400: {"model": p.ErrorBody}, 401: {"model": p.ErrorBody}})

    # -- middleware: metrics and the request id (outermost), the API key, then the body limit ---------------
    app.add_middleware(BodyLimit, limit=config.max_upload_bytes + FORM_OVERHEAD)

    @app.middleware("http")
    async def guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        start = time.perf_counter()
        route = _route_template(app, request)
        request.state.request_id = uuid.uuid4().hex[:16]
        status = 500
        try:
            path = request.url.path
            if config.api_key is not None and path not in OPEN_PATHS and not page.is_page_path(path):
                given = _given_key(request)
                if given is None or not hmac.compare_digest(given.encode(), config.api_key.encode()):
                    response: Response = JSONResponse({"detail": "missing or wrong API key (X-API-Key or Authorization: Bearer)"},
                                                      status_code=401, headers={"WWW-Authenticate": "Bearer"})
                    status = 401
                    return response
            response = await call_next(request)
            response.headers.setdefault(errors.REQUEST_ID_HEADER, request.state.request_id)
            status = response.status_code
            return response
        finally:
            metrics.observe(request.method, route, status, time.perf_counter() - start)

    errors.install(app)  # every error, mapped to its status in one place

    # -- request parsing -----------------------------------------------------------------------------------
    async def parse(request: Request, model: type[p.Query]) -> _Query:
        if request.headers.get("content-type", "").startswith(MULTIPART):
            data, name, form = await read_form_upload(request, "image", "an image file", config.max_upload_bytes, 64)
            name = name or "image"
            image = await run_in_threadpool(decode_image, data, name, config.max_image_pixels)
            fields = {k: v for k, v in form.multi_items() if not isinstance(v, UploadFile)}
            fields["where"] = [v for k, v in form.multi_items() if k == "where" and isinstance(v, str)]
            return _Query(None, image, name, fields)
        try:
            body = model.model_validate_json(await request.body())
        except ValidationError as e:
            raise RequestValidationError(e.errors(include_url=False, include_context=False)) from e
        if body.size > config.max_batch:
            raise HTTPException(413, f"{body.size} queries in one request; the limit is {config.max_batch}")
        return _Query(body)

    def form_int(q: _Query, key: str, default: int) -> int:
        raw = q.form.get(key)
        if raw in (None, ""):
            return default
        try:
            return int(raw)
        except ValueError:
            raise HTTPException(422, f"form field {key!r} must be an integer, got {raw!r}") from None

    def check_k(k: int) -> int:
        if k < 1 or k > config.max_k:
            raise HTTPException(400, f"k must be between 1 and {config.max_k}, got {k}")
        return k

    def vectors(snap: Snapshot, q: _Query) -> tuple[list[str], Any]:
        if q.body is None:
            return [q.image_name], snap.vectors(images=[q.image])
        b = q.body
        if b.texts is not None:
            return list(b.texts), snap.vectors(texts=b.texts)
        return [f"features[{i}]" for i in range(b.size)], snap.vectors(features=b.features, modality=b.modality)

    # -- routes --------------------------------------------------------------------------------------------
    @app.get("/healthz", response_model=p.Health, tags=["service"])
    async def healthz() -> p.Health:
        return p.Health()

    @app.get("/metrics", tags=["service"], response_class=Response,
             responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text"}})
    async def metrics_text(request: Request) -> Response:
        metrics.set_index_sizes(await run_in_threadpool(service_of(request).index_sizes))
        return Response(metrics.render(), media_type=metrics.content_type)

    @app.post("/v1/recognize", response_model=list[p.Recognition], tags=["query"],
              openapi_extra=p.json_or_image(p.RecognizeRequest, {"k": {"type": "integer"}, "labels": {
                  "type": "string", "description": "comma-separated category names"}}))
    async def recognize(request: Request) -> list[p.Recognition]:
        q = await parse(request, p.RecognizeRequest)
        if q.body is not None:
            assert isinstance(q.body, p.RecognizeRequest)
            k, labels = q.body.k, q.body.labels
        else:
            k = form_int(q, "k", 5)
            raw = q.form.get("labels")
            labels = [x.strip() for x in raw.split(",") if x.strip()] if raw is not None else None
            if labels is not None and not labels:
                raise HTTPException(422, "form field 'labels' needs at least one category name (comma-separated)")
        check_k(k)
        if labels is not None and len(labels) > config.max_labels:
            raise HTTPException(400, f"{len(labels)} labels; the limit is {config.max_labels}")
        st = service_of(request)

        def work() -> list[p.Recognition]:
            with st.query() as snap:
                rec = snap.recognizer()
                names, vecs = vectors(snap, q)
                with st.device_work():
                    results = rec.recognize_vectors(vecs, k=k, labels=labels)
            return [p.Recognition(query=n, labels=r.labels, scores=r.scores) for n, r in zip(names, results)]

        return await run_in_threadpool(work)

    @app.post("/v1/search", response_model=list[p.SearchResult], tags=["query"],
              openapi_extra=p.json_or_image(p.SearchRequest, {
                  "target": {"type": "string"}, "k": {"type": "integer"}, "label": {"type": "string"},
                  "where": {"type": "array", "items": {"type": "string"}, "description": "key=value, repeatable"}}))
    async def search(request: Request) -> list[p.SearchResult]:
        from unibind.retrieval.search.cross_modal import SearchFilter, parse_where

        q = await parse(request, p.SearchRequest)
        if q.body is not None:
            assert isinstance(q.body, p.SearchRequest)
            target, k, flt = q.body.target, q.body.k, SearchFilter(q.body.label, q.body.where_terms())
        else:
            target, k = q.form.get("target") or "descriptions", form_int(q, "k", 10)
            flt = SearchFilter(q.form.get("label") or None, parse_where(q.form["where"]))
        check_k(k)
        st = service_of(request)

        def work() -> list[p.SearchResult]:
            with st.query() as snap:
                index = snap.search(target)
                names, vecs = vectors(snap, q)
                with st.device_work():
                    hits = index.search(vecs, k=k, flt=flt)
            return [p.SearchResult(query=n, hits=[p.Hit(**h.__dict__) for h in row]) for n, row in zip(names, hits)]

        return await run_in_threadpool(work)

    @app.get("/v1/corpora", response_model=list[p.CorpusInfo], tags=["knowledge base"])
    async def corpora(request: Request) -> list[p.CorpusInfo]:
        from unibind.indexer.store.contents import corpus_state, list_corpora

        st = service_of(request)

        def work() -> list[p.CorpusInfo]:
            with st.db.session() as session:  # the served space's corpora; an ingest shows under its coming name
                space = st.served_space(session)
                return [p.CorpusInfo(name=c.target_name or c.name, space=c.space.encoder, status=corpus_state(c),
                                     descriptions=c.n_descriptions, categories=c.n_categories, duplicates=c.n_duplicates,
                                     source=c.source, origin=c.origin, created_at=c.created_at,
                                     completed_at=c.completed_at)
                        for c in list_corpora(session) if space is not None and c.space_id == space.id]

        return await run_in_threadpool(work)

    @app.delete("/v1/corpora/{name}", response_model=p.Deleted, tags=["knowledge base"],
                responses={404: {"model": p.ErrorBody}})
    async def delete(name: str, request: Request) -> p.Deleted:
        from unibind.indexer.store.contents import delete_corpus
        from unibind.schema import Corpus, CorpusStatus

        st = service_of(request)

        def work() -> p.Deleted:
            # the queries in flight finish first; new ones wait until the service has moved to the new catalog
            with st.catalog.exclusive():
                with st.db.session() as session:  # a complete corpus of the served space, nothing else
                    space = st.served_space(session)
                    corpus_id = None if space is None else session.scalar(select(Corpus.id).where(
                        Corpus.space_id == space.id, Corpus.name == name, Corpus.status == CorpusStatus.COMPLETE))
                if corpus_id is None:
                    raise HTTPException(404, f"no corpus named {name!r}")
                n = delete_corpus(st.db, corpus_id, config.home, st.device)
                try:
                    st.refresh()
                except Exception as e:  # noqa: BLE001 - the corpus is gone; the next query retries the build
                    log.warning("deleted corpus %r; the service could not load the new catalog yet: %s", name, e)
            return p.Deleted(deleted=name, descriptions=n)

        return await run_in_threadpool(work)

    @app.get("/v1/categories/{name}/centre", response_model=p.CentreView, tags=["knowledge base"],
             responses={404: {"model": p.ErrorBody}})
    async def centre(name: str, request: Request, strategy: str | None = Query(None), k: int | None = Query(None, ge=1),
                     template: str | None = Query(None)) -> p.CentreView:
        from unibind.retrieval.centres.builder import CentreSpec, centre_members

        base = CentreSpec()
        spec = CentreSpec(template=template or base.template, k=k or base.k, strategy=strategy or base.strategy)
        st = service_of(request)

        def work() -> p.CentreView:
            space = st.snapshot().space()
            try:
                found, members = centre_members(st.db, space, spec, name)
            except ValueError as e:
                if str(e).startswith("unknown category"):
                    raise HTTPException(404, str(e)) from e
                raise
            if found is None:
                raise HTTPException(404, f"no centre yet for {name!r} with {spec.strategy}, K={spec.k}, "
                                         f"{spec.template!r}: run `unibind centres build`")
            return p.CentreView(category=name, strategy=spec.strategy, k=spec.k, template=spec.template,
                                candidates=found.n_candidates, members=[p.CentreMember(**m) for m in members])

        return await run_in_threadpool(work)

    add_routes(app, config, jobs)
    browse.add_routes(app, config)
    page.add_routes(app)
    return app
