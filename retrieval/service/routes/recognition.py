"""``POST /v1/recognize``: the top-k categories of each query (texts, feature vectors or an uploaded image)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from unibind.retrieval.service import payloads as p
from unibind.retrieval.service.config import ServiceConfig
from unibind.retrieval.service.dependencies import served_state
from unibind.retrieval.service.errors import responses
from unibind.retrieval.service.queries import QueryRoute, label_list, query_vectors_of


def router(route: QueryRoute, config: ServiceConfig) -> APIRouter:
    """The recognition route, its body described by ``route``."""
    api = APIRouter(tags=["query"])

    @api.post("/v1/recognize", response_model=list[p.Recognition], openapi_extra=route.openapi(),
              responses=responses(400, 404, 409, 413, 415, 422))
    async def recognize(request: Request) -> list[p.Recognition]:
        query = await route.parse(request, config)  # the body first: a body over the limit needs no state
        st = served_state(request)
        k, raw = query.options.k, query.options.labels
        labels = label_list(raw) if isinstance(raw, str) else raw

        def work() -> list[p.Recognition]:
            with st.query() as snap:
                recognizer = snap.recognizer()
                vectors = query_vectors_of(snap, query, st.compute, config.max_image_pixels)
                with st.device_work():
                    results = recognizer.recognize_vectors(vectors, k=k, labels=labels)
            return [p.Recognition(query=n, labels=r.labels, scores=r.scores) for n, r in zip(query.names, results)]

        return await run_in_threadpool(work)

    return api
