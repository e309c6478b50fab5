"""Run the app under uvicorn (loopback by default); ``unibind serve`` calls this with its configuration."""

from __future__ import annotations

import logging

from unibind.retrieval.service.config import API_KEY_ENV, ServiceConfig
from unibind.schema import Database

log = logging.getLogger(__name__)

LOOPBACK = ("127.0.0.1", "::1", "localhost")


def run_service(config: ServiceConfig, *, db: Database | None = None, verbose: bool = False) -> int:
    """Serve until interrupted; 0 when uvicorn stops. Which space is served is settled before the server starts,
    so a problem (several spaces, none named: a Conflict) is one line and its exit code."""
    import uvicorn

    from unibind.retrieval.service.app import create_app
    from unibind.retrieval.service.state import ServiceState

    if config.host not in LOOPBACK and config.api_key is None:
        log.warning("serving on %s without an API key: set $%s", config.host, API_KEY_ENV)
    state = ServiceState(config, db=db)
    try:
        uvicorn.run(create_app(config, state=state), host=config.host, port=config.port,
                    log_level="info" if verbose else "warning")
    finally:
        state.close()
    return 0
