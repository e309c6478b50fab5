"""The service's middleware: each request gets an id and is counted (:class:`RequestTracking`, outermost), and a
body over the limit is refused before it is parsed (:class:`BodyLimit`)."""

from __future__ import annotations

import time
import uuid

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from unibind.retrieval.service.errors import REQUEST_ID_HEADER, BodyTooLarge, error_response
from unibind.retrieval.service.metrics import ServiceMetrics

UNMATCHED = "unmatched"


class BodyLimit:
    """A request body over ``limit`` bytes is refused before it is parsed — at once when its Content-Length says
    so (answered here, through the one mapping of errors: no handler runs this far out), else (chunked uploads)
    as soon as the bytes read pass the limit, while it streams (raised: the route's handlers answer it)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            response = error_response(Request(scope), BodyTooLarge(self.limit, int(declared)))
            await response(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        await self.app(scope, limited, send)


class RequestTracking:
    """Gives each request an id (``request.state.request_id``, echoed in the ``X-Request-ID`` header) and counts
    it in ``metrics`` by method, route template (bounded label values; "unmatched" when no route took the request,
    a body refused at the limit included) and status, with its latency."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request_id = uuid.uuid4().hex[:16]
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500

        async def tracked(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers") or [])
                if not any(k.lower() == REQUEST_ID_HEADER.lower().encode() for k, _ in headers):
                    headers.append((REQUEST_ID_HEADER.encode(), request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        finally:
            route = getattr(scope.get("route"), "path", UNMATCHED)  # the routing put the matched route there
            self.metrics.observe(scope["method"], route, status, time.perf_counter() - start)
