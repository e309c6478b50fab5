"""``unibind serve``: run the app under uvicorn (loopback by default)."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable
from typing import Any

from retrieval.service.config import API_KEY_ENV, ServiceConfig

log = logging.getLogger(__name__)

LOOPBACK = ("127.0.0.1", "::1", "localhost")


def cmd_serve(ctx: Any, args: argparse.Namespace) -> int:
    import uvicorn

    from retrieval.service.app import create_app

    config = ServiceConfig(database_url=ctx.settings.database_url, home=ctx.home, device=args.device,
                           encoder=args.encoder, host=args.host, port=args.port,
                           api_key=os.environ.get(API_KEY_ENV) or None)
    if config.host not in LOOPBACK and config.api_key is None:
        log.warning("serving on %s without an API key: set $%s", config.host, API_KEY_ENV)
    uvicorn.run(create_app(config), host=config.host, port=config.port, log_level="info" if args.verbose else "warning")
    return 0


def add_command(sub: Any, _common: Callable[[argparse.ArgumentParser], None] | None = None) -> None:
    sp = sub.add_parser("serve", help="run the HTTP API (FastAPI; OpenAPI at /docs)")
    sp.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, loopback only)")
    sp.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    sp.add_argument("--encoder", help="the space to serve (needed when several spaces exist)")
    sp.set_defaults(func=cmd_serve)
