"""``unibind serve``: the HTTP API under uvicorn, configured by the same settings as every command."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from unibind.retrieval.cli.context import Context
from unibind.retrieval.cli.parser import add_leaf
from unibind.schema import settings as defaults


def cmd_serve(ctx: Context, args: argparse.Namespace) -> int:
    from unibind.retrieval.service.config import ServiceConfig
    from unibind.retrieval.service.runner import run_service

    config = ServiceConfig.from_settings(settings=ctx.settings)
    return run_service(config, db=ctx.db, verbose=bool(args.verbose),
                       announce=lambda line: print(f"unibind: {line}", file=sys.stderr, flush=True))


def add_commands(sub: Any) -> None:
    sp = add_leaf(sub, "serve", "run the HTTP API (FastAPI; the web page at /, OpenAPI at /docs)", cmd_serve, [
        "unibind serve",
        "UNIBIND_API_KEY=secret unibind serve --host 0.0.0.0 --port 8000 --max-k 50",
    ], description="Run the HTTP API (FastAPI; the web page at /, OpenAPI at /docs). Every option also reads its "
                   "UNIBIND_* variable (`unibind config` lists them); the API key is read from $UNIBIND_API_KEY only.")
    # defaults are None here: an option not given falls back to its environment variable, then the default
    sp.add_argument("--host", help=f"address to bind (default {defaults.DEFAULT_HOST}, loopback only; $UNIBIND_HOST)")
    sp.add_argument("--port", type=int, help=f"port (default {defaults.DEFAULT_PORT}; $UNIBIND_PORT)")
    sp.add_argument("--encoder", help="the space to serve (default: $UNIBIND_ENCODER; needed when several spaces exist)")
    sp.add_argument("--max-batch", type=int, help=f"queries per request (default {defaults.DEFAULT_MAX_BATCH})")
    sp.add_argument("--max-k", type=int, help=f"largest k (default {defaults.DEFAULT_MAX_K})")
    sp.add_argument("--max-labels", type=int,
                    help=f"most labels in one recognize request (default {defaults.DEFAULT_MAX_LABELS})")
    sp.add_argument("--max-upload-mb", type=float, help=f"largest upload in MiB (default {defaults.DEFAULT_MAX_UPLOAD_MB:g})")
    sp.add_argument("--max-image-pixels", type=int,
                    help=f"largest image, width x height (default {defaults.DEFAULT_MAX_IMAGE_PIXELS:,})")
    sp.add_argument("--max-queued-uploads", type=int,
                    help=f"corpus uploads queued or running at once; more are answered 429 with Retry-After "
                         f"(default {defaults.DEFAULT_MAX_QUEUED_UPLOADS})")
