"""Run the app under uvicorn (loopback by default); ``unibind serve`` calls this with its configuration."""

from __future__ import annotations

import logging
from collections.abc import Callable

from unibind.retrieval.service.config import API_KEY_ENV, ServiceConfig
from unibind.schema import Database

log = logging.getLogger(__name__)

LOOPBACK = ("127.0.0.1", "::1", "localhost")


def run_service(config: ServiceConfig, *, db: Database | None = None, verbose: bool = False,
                announce: Callable[[str], None] | None = None) -> int:
    """Serve until interrupted; 0 when uvicorn stops. Which space is served is settled before the server starts,
    so a problem (several spaces, none named: a Conflict) is one line and its exit code. ``announce`` gets one
    line saying what is served where, before the server starts; uvicorn then logs its address and one access
    line per request (``verbose``: the service's own info lines too)."""
    import uvicorn

    from unibind.retrieval.service.app import create_app
    from unibind.retrieval.service.state import ServiceState

    if config.host not in LOOPBACK and config.api_key is None:
        log.warning("serving on %s without an API key: set $%s", config.host, API_KEY_ENV)
    state = ServiceState(config, db=db)
    try:
        if announce is not None:
            announce(banner(config, state.served_spec()))
        uvicorn.run(create_app(config, state=state), host=config.host, port=config.port, log_level="info",
                    access_log=True)
    finally:
        state.close()
    return 0


def banner(config: ServiceConfig, space: str | None) -> str:
    """One line: the space served, the address of the page and the API docs, and whether a key is needed."""
    host = f"[{config.host}]" if ":" in config.host else config.host
    base = f"http://{host}:{config.port}"
    served = f"space {space}" if space else "an empty knowledge base (ingest or upload a corpus)"
    key = "the API key from $" + API_KEY_ENV if config.api_key is not None else "no API key"
    return f"serving {served} at {base}/ (the page; the API docs at {base}/docs), {key}; Ctrl-C stops"
