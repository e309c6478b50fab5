"""``POST /v1/search``: cross-modal search — each query's top-k hits among the descriptions or a modality's
gallery, filtered by label and metadata."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from unibind.retrieval.search.cross_modal import SearchFilter
from unibind.retrieval.service import payloads as p
from unibind.retrieval.service.config import ServiceConfig
from unibind.retrieval.service.dependencies import served_state
from unibind.retrieval.service.errors import responses
from unibind.retrieval.service.queries import QueryRoute, query_vectors_of, where_terms


def router(route: QueryRoute, config: ServiceConfig) -> APIRouter:
    """The search route, its body described by ``route``."""
    api = APIRouter(tags=["query"])

    @api.post("/v1/search", response_model=list[p.SearchResult], openapi_extra=route.openapi(),
              responses=responses(400, 404, 409, 413, 415, 422))
    async def search(request: Request) -> list[p.SearchResult]:
        query = await route.parse(request, config)  # the body first: a body over the limit needs no state
        st = served_state(request)
        options = query.options
        target, k = options.target, options.k
        flt = SearchFilter(options.label, where_terms(options.where))

        def work() -> list[p.SearchResult]:
            with st.query() as snap:
                index = snap.search(target)
                vectors = query_vectors_of(snap, query, st.compute, config.max_image_pixels)
                with st.device_work():
                    hits = index.search(vectors, k=k, flt=flt)
            return [p.SearchResult(query=n, hits=[p.Hit(**h.__dict__) for h in row])
                    for n, row in zip(query.names, hits)]

        return await run_in_threadpool(work)

    return api
