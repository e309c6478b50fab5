"""Every error the service answers, mapped to its HTTP status in one place.

- User mistakes and states of the store are typed (``unibind.schema.errors``): invalid input 400, not found 404,
  conflict 409 (a stale index names its repair command), busy 503 with ``Retry-After``, unavailable 503.
  Plain ``ValueError`` (a bad value in older code paths) is a 400.
- A database that cannot be reached or is locked is a 503.
- Anything else — an ``OSError`` such as a missing file on the server included — is a 500 whose body carries
  only a request id (also in the ``X-Request-ID`` header of every response), never a traceback or a server
  path; the log has the traceback under that id.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from unibind.schema.errors import Busy, Conflict, InvalidInput, NotFound, Unavailable, UnibindError

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"
RETRY_AFTER_SECONDS = 5
STATUS: tuple[tuple[type[UnibindError], int], ...] = (
    (InvalidInput, 400), (NotFound, 404), (Conflict, 409), (Busy, 503), (Unavailable, 503),
)


class BodyTooLarge(Exception):
    """A request body over the service's limit (raised while it streams in, before it is parsed)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body is larger than the limit of {limit} bytes")
        self.limit = limit


def status_of(error: BaseException) -> int:
    for kind, status in STATUS:
        if isinstance(error, kind):
            return status
    if isinstance(error, ValueError):
        return 400
    return 500


def request_id(request: Request) -> str:
    """This request's id (made by the middleware; one is made here for errors raised before it ran)."""
    rid = getattr(request.state, "request_id", None)
    if rid is None:
        rid = request.state.request_id = uuid.uuid4().hex[:16]
    return str(rid)


def _json(status: int, detail: Any, request: Request, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status,
                        headers={REQUEST_ID_HEADER: request_id(request), **(headers or {})})


def install(app: FastAPI) -> None:
    """Register the handlers on ``app``."""

    @app.exception_handler(BodyTooLarge)
    async def _too_large(request: Request, e: BodyTooLarge) -> JSONResponse:
        return _json(413, str(e), request)

    @app.exception_handler(ValueError)  # UnibindError and its kinds included
    async def _user_error(request: Request, e: ValueError) -> JSONResponse:
        status = status_of(e)
        retry = {"Retry-After": str(RETRY_AFTER_SECONDS)} if isinstance(e, Busy) else None
        return _json(status, str(e), request, retry)

    @app.exception_handler(SQLAlchemyError)
    async def _db_error(request: Request, e: SQLAlchemyError) -> JSONResponse:
        rid = request_id(request)
        if isinstance(e, IntegrityError):  # a race the store's locks should have prevented: a bug, not the user's
            log.exception("integrity error (request %s)", rid)
            return _json(500, f"internal error (request id {rid})", request)
        log.error("database error (request %s): %s", rid, e)
        first = str(getattr(e, "orig", None) or e).strip().splitlines()[0]
        return _json(503, f"database error: {first}", request, {"Retry-After": str(RETRY_AFTER_SECONDS)})

    @app.exception_handler(Exception)
    async def _internal(request: Request, e: Exception) -> JSONResponse:
        rid = request_id(request)
        log.exception("internal error (request %s)", rid)
        return _json(500, f"internal error (request id {rid})", request)
