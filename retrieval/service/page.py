"""The web page: ``GET /`` serves one HTML page and ``/ui/`` its script and style sheet (files beside this
module, shipped as package data). They hold no data: every query the page makes goes through the ``/v1``
routes, with the API key the user typed into the page, so the page itself is served without a key."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

WEB = Path(__file__).with_name("web")
PAGE_PREFIX = "/ui/"


def is_page_path(path: str) -> bool:
    """Whether ``path`` is the page or one of its static files (open without the API key)."""
    return path == "/" or path.startswith(PAGE_PREFIX)


def add_routes(app: FastAPI) -> None:
    """``GET /`` and the static files under ``/ui/`` on ``app``."""

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(WEB / "index.html", media_type="text/html", headers={"Cache-Control": "no-cache"})

    app.mount(PAGE_PREFIX.rstrip("/"), StaticFiles(directory=WEB), name="ui")
