"""The web page: ``GET /`` serves one HTML page and ``/ui/`` its script and style sheet (files in the service's
``web`` folder, shipped as package data). They hold no data: every query the page makes goes through the
``/v1`` routes, with the API key the user typed into the page, so the page itself is served without a key."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

WEB = Path(__file__).resolve().parent.parent / "web"
PAGE_PREFIX = "/ui"

router = APIRouter(include_in_schema=False)


@router.get("/")
async def page() -> FileResponse:
    return FileResponse(WEB / "index.html", media_type="text/html", headers={"Cache-Control": "no-cache"})


def install(app: FastAPI) -> None:
    """The page's route and its static files on ``app`` (open: they hold no data)."""
    app.include_router(router)
    app.mount(PAGE_PREFIX, StaticFiles(directory=WEB), name="ui")
