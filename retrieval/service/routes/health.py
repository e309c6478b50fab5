"""``GET /healthz``: liveness, never behind the API key."""

from __future__ import annotations

from fastapi import APIRouter

from unibind.retrieval.service import payloads as p

router = APIRouter(tags=["service"])


@router.get("/healthz", response_model=p.Health)
async def healthz() -> p.Health:
    return p.Health()
