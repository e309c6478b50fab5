"""The API key: a security dependency of the protected routers, declared so the OpenAPI schema has its schemes
(Swagger UI's "Authorize" sends it). A client sends the key as ``X-API-Key: <key>`` or as
``Authorization: Bearer <key>``; it is compared in constant time. Without a configured key the routers are
open and the schema declares no scheme."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from unibind.retrieval.service.errors import Unauthorized

API_KEY_HEADER = "X-API-Key"

api_key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, scheme_name="APIKey",
                              description="the service's key ($UNIBIND_API_KEY)")
bearer = HTTPBearer(auto_error=False, scheme_name="Bearer", description="the service's key as a bearer token")


def api_key_guard(expected: str) -> Callable[..., Awaitable[None]]:
    """The dependency that lets a request through only with the key ``expected`` (401 otherwise)."""
    wanted = expected.encode()

    async def require_api_key(key: Annotated[str | None, Security(api_key_header)] = None,
                              token: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)] = None) -> None:
        given = key if key is not None else token.credentials if token is not None else None
        if given is None or not hmac.compare_digest(given.encode(), wanted):
            raise Unauthorized("missing or wrong API key (X-API-Key or Authorization: Bearer)")

    return require_api_key
