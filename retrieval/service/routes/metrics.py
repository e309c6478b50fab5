"""``GET /metrics``: Prometheus text — request counts and latency by route and status, index sizes."""

from __future__ import annotations

from fastapi import APIRouter, Response
from starlette.concurrency import run_in_threadpool

from unibind.retrieval.service.dependencies import State
from unibind.retrieval.service.errors import responses
from unibind.retrieval.service.metrics import ServiceMetrics


def router(metrics: ServiceMetrics) -> APIRouter:
    """The route that renders ``metrics``."""
    api = APIRouter(tags=["service"])

    @api.get("/metrics", response_class=Response,
             responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                              "description": "Prometheus text"}, **responses()})
    async def metrics_text(st: State) -> Response:
        metrics.set_index_sizes(await run_in_threadpool(st.index_sizes))
        return Response(metrics.render(), media_type=metrics.content_type)

    return api
