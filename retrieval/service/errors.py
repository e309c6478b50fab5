"""Every error the service answers, mapped to its HTTP status in one place.

- User mistakes and states of the store are typed (``unibind.schema.errors``); each type carries its status as
  ``http_status``: invalid input 400, not found 404, conflict 409 (a stale index names its repair command),
  busy 503 with ``Retry-After``, unavailable 503. The service adds kinds of its own: no or a wrong API key
  (401), a body or file over a limit (413), a body that is not of a media type the route reads (415), a
  form field of the wrong type (422) and an upload past the uploads this process holds queued or running (429).
  Every 429 and 503 carries ``Retry-After``.
- No message names a path of the server: a typed error's message has each absolute path replaced by its base
  name (:func:`strip_paths`; a milvus-lite folder, a socket), so the CLI keeps its full text and a client gets
  only the name.
- A body that breaks its schema is a 422 listing what is wrong (FastAPI's format), unless the rule it breaks
  is a configured limit: then it is that limit's typed error, with its own status and one-line message.
- A database that cannot be reached is ``Unavailable`` and one locked too long ``Busy`` (``unibind.schema.database``
  types them), so both are a 503 by their type.
- Anything else — a plain ``ValueError`` (an untyped one is the code's fault, not the user's), a database
  error that is neither, an ``OSError`` such as a missing file on the server — is a 500 whose body carries
  only a request id (also in the ``X-Request-ID`` header of every response), never a traceback or a server
  path; the log has the traceback under that id.

:func:`error_response` is the one place a typed error becomes a response: the handlers and the body-limit
middleware (which answers before any handler runs) both use it.

Routes document the statuses they can answer with :func:`responses`, so the OpenAPI schema lists each one
with its body.
"""

from __future__ import annotations

import logging
import re
import uuid
from pathlib import PurePosixPath
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from unibind.retrieval.service.payloads import ErrorBody
from unibind.schema.errors import InvalidInput, UnibindError

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"
RETRY_AFTER_SECONDS = 5


class Unauthorized(UnibindError):
    """No API key, or the wrong one."""

    http_status: ClassVar[int] = 401


class TooLarge(InvalidInput):
    """A request body, an upload, an image or a batch over one of the service's limits."""

    http_status: ClassVar[int] = 413


class UnsupportedMediaType(InvalidInput):
    """A request body of a media type the route does not read."""

    http_status: ClassVar[int] = 415


class MalformedField(InvalidInput):
    """A form field whose value is not of its type (an integer, a boolean)."""

    http_status: ClassVar[int] = 422


class TooManyUploads(UnibindError):
    """An upload past the uploads this process holds queued or running (``--max-queued-uploads``)."""

    http_status: ClassVar[int] = 429


class BodyTooLarge(TooLarge):
    """A request body over the service's limit: its declared size, or (while it streams in) past the limit."""

    def __init__(self, limit: int, declared: int | None = None) -> None:
        size = f"of {declared} bytes " if declared is not None else ""
        super().__init__(f"request body {size}is larger than the limit of {limit} bytes")
        self.limit = limit


DESCRIPTIONS = {
    400: "a bad value: the message names the field and the rule",
    401: "no API key, or the wrong one",
    404: "an unknown corpus, category, modality, item or job",
    409: "the knowledge base's state does not allow it now (empty, another space, a corpus still being ingested, "
         "a centre not built yet, a stale index: the message names the command that repairs it)",
    413: "over a limit: the request body, an upload, an image's pixels or the queries in one request",
    415: "the body is not of a media type the route reads",
    422: "a malformed body or parameter: FastAPI's list of what is wrong, or one line for a form field",
    429: "too many uploads queued or running in this server: nothing was written; retry after Retry-After seconds",
    500: "an internal error: the body holds only a request id, the server log the rest",
    503: "the database is unreachable or busy, or a model cannot be loaded (with Retry-After when a retry helps)",
}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` of a route that can answer ``statuses`` (500 and 503 are always possible)."""
    return {status: {"model": ErrorBody, "description": DESCRIPTIONS[status]}
            for status in sorted({*statuses, 500, 503})}


# an absolute path (``/…``, ``~/…``, or after ``file://`` / ``milvus-lite:``) standing alone: not a URL's ``//host``
# or a path inside a word, a fraction or a media type, and not an encoder spec's checkpoint (``st:/models/x``,
# ``open_clip:NAME@/x.pt``): a spec is the space's name, which /v1/info shows and an upload's ``encoder`` repeats
_PATH = re.compile(r"(?:(?<=file://)|(?<=milvus-lite:)|(?<![\w.:@/~\\-]))~?/[^\s'\"`()\[\]{},;:]+")
_ROUTES = ("/v1/", "/healthz", "/metrics", "/docs", "/openapi.json")  # the service's own routes, not paths


def strip_paths(text: str) -> str:
    """``text`` with each absolute path of the server replaced by its base name (``'/srv/kb/milvus.db'`` →
    ``'milvus.db'``); the service's own routes (``POST /v1/corpora``) and URLs stay as they are."""

    def base(match: re.Match[str]) -> str:
        path = match.group()
        if path.startswith(_ROUTES) or path in {r.rstrip("/") for r in _ROUTES}:
            return path
        core = path.rstrip(".")  # a sentence's full stop is not part of the path
        return (PurePosixPath(core).name or core.strip("/~") or "/") + path[len(core):]

    return _PATH.sub(base, text)


def status_of(error: BaseException) -> int:
    """The HTTP status of an error the service answers: a typed error's own, else 500 (a plain ValueError and a
    pydantic ValidationError of a model the service built itself included: the code's fault, not the user's)."""
    return type(error).http_status if isinstance(error, UnibindError) else 500


def typed_in(error: ValidationError) -> UnibindError | None:
    """The first typed error a model's validator raised inside ``error`` (a configured limit broken), if any."""
    for detail in error.errors(include_url=False):
        cause = (detail.get("ctx") or {}).get("error")
        if isinstance(cause, UnibindError):
            return cause
    return None


def as_request_error(error: ValidationError, where: str = "body") -> Exception:
    """A validation error of the request's ``where`` as the service answers it: a typed error raised by a
    validator (a configured limit), else a 422 listing what is wrong."""
    return typed_in(error) or RequestValidationError([
        {**issue, "loc": (where, *issue["loc"])} for issue in error.errors(include_url=False, include_context=False)])


def request_id(request: Request) -> str:
    """This request's id (made by the middleware; one is made here for errors raised before it ran)."""
    rid = getattr(request.state, "request_id", None)
    if rid is None:
        rid = request.state.request_id = uuid.uuid4().hex[:16]
    return str(rid)


def _json(status: int, detail: Any, request: Request, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status,
                        headers={REQUEST_ID_HEADER: request_id(request), **(headers or {})})


def error_response(request: Request, error: UnibindError) -> JSONResponse:
    """The response to a typed error: its status, its one-line message with no path of the server in it,
    ``Retry-After`` on a 429 or a 503 and ``WWW-Authenticate`` on a 401."""
    status = status_of(error)
    headers = ({"Retry-After": str(RETRY_AFTER_SECONDS)} if status in (429, 503)
               else {"WWW-Authenticate": "Bearer"} if isinstance(error, Unauthorized) else None)
    return _json(status, strip_paths(str(error)), request, headers)


def allowed_methods(app: FastAPI, path: str) -> str:
    """The ``Allow`` header of ``path``: every method the schema documents for it (routes of one path may sit
    in different routers, and the router answers only with the first one's methods)."""
    methods: list[str] = []
    for template, operations in app.openapi().get("paths", {}).items():
        if re.fullmatch(re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)), path):
            methods += [m.upper() for m in operations]
    return ", ".join(methods)


def install(app: FastAPI) -> None:
    """Register the handlers on ``app``."""

    @app.exception_handler(HTTPException)  # FastAPI's own: 404 for no route, 405 for a method the path lacks
    async def _http(request: Request, e: HTTPException) -> JSONResponse:
        headers = dict(e.headers or {})
        if e.status_code == 405:
            headers["Allow"] = allowed_methods(app, request.url.path) or headers.get("Allow", "")
        return _json(e.status_code, e.detail, request, headers)

    @app.exception_handler(RequestValidationError)  # FastAPI's list of what is wrong, as FastAPI answers it, but
    async def _invalid(request: Request, e: RequestValidationError) -> JSONResponse:  # bytes that are not UTF-8 too
        issues = jsonable_encoder(e.errors(), custom_encoder={bytes: lambda b: b.decode("utf-8", "replace")})
        return _json(422, issues, request)

    @app.exception_handler(UnibindError)  # typed errors; a plain ValueError is the handler below's
    async def _typed(request: Request, e: UnibindError) -> JSONResponse:
        return error_response(request, e)

    @app.exception_handler(Exception)
    async def _internal(request: Request, e: Exception) -> JSONResponse:
        rid = request_id(request)
        log.exception("internal error (request %s)", rid)
        return _json(500, f"internal error (request id {rid})", request)
