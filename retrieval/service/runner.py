"""``unibind serve``: run the app under uvicorn (loopback by default)."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable
from typing import Any

from unibind.retrieval.service.config import API_KEY_ENV, ServiceConfig

log = logging.getLogger(__name__)

LOOPBACK = ("127.0.0.1", "::1", "localhost")


def cmd_serve(ctx: Any, args: argparse.Namespace) -> int:
    import uvicorn

    from unibind.retrieval.service.app import create_app
    from unibind.retrieval.service.state import ServiceState

    config = ServiceConfig(database_url=ctx.settings.database_url, home=ctx.home, device=args.device,
                           encoder=args.encoder, host=args.host, port=args.port,
                           api_key=os.environ.get(API_KEY_ENV) or None, max_batch=args.max_batch, max_k=args.max_k,
                           max_labels=args.max_labels, max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
                           max_image_pixels=args.max_image_pixels)
    if config.host not in LOOPBACK and config.api_key is None:
        log.warning("serving on %s without an API key: set $%s", config.host, API_KEY_ENV)
    state = ServiceState(config, db=ctx.db)  # which space it serves is settled here: a problem is one line, exit 2
    try:
        uvicorn.run(create_app(config, state=state), host=config.host, port=config.port,
                    log_level="info" if args.verbose else "warning")
    finally:
        state.close()
    return 0


def add_command(sub: Any, _common: Callable[[argparse.ArgumentParser], None] | None = None) -> None:
    sp = sub.add_parser("serve", help="run the HTTP API (FastAPI; OpenAPI at /docs)")
    sp.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, loopback only)")
    sp.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    sp.add_argument("--encoder", help="the space to serve (needed when several spaces exist)")
    defaults = ServiceConfig(database_url="-", home=".")
    sp.add_argument("--max-batch", type=int, default=defaults.max_batch, help=f"queries per request (default {defaults.max_batch})")
    sp.add_argument("--max-k", type=int, default=defaults.max_k, help=f"largest k (default {defaults.max_k})")
    sp.add_argument("--max-labels", type=int, default=defaults.max_labels,
                    help=f"most labels in one recognize request (default {defaults.max_labels})")
    sp.add_argument("--max-upload-mb", type=float, default=defaults.max_upload_bytes / 2**20,
                    help=f"largest upload in MiB (default {defaults.max_upload_bytes / 2**20:g})")
    sp.add_argument("--max-image-pixels", type=int, default=defaults.max_image_pixels,
                    help=f"largest image, width x height (default {defaults.max_image_pixels:,})")
    sp.set_defaults(func=cmd_serve)
