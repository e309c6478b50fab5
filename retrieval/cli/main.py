"""The ``unibind`` command line: the root parser, dispatch, and the one mapping of errors to exit codes."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from unibind.retrieval.cli.parser import DEPRECATIONS, CliParser

log = logging.getLogger("unibind")

# old command names that still work, with what to type instead (each use prints a deprecation notice)
DEPRECATED_COMMANDS = {
    "heads": "unibind head",
    "search-descriptions": "unibind search --text TEXT --target descriptions",
}


def build_parser() -> CliParser:
    from unibind.retrieval.cli import (
        centres,
        config,
        corpus,
        evaluate,
        gallery,
        head,
        index,
        ingest,
        kb,
        modality,
        plot,
        recognize,
        search,
        serve,
    )

    p = CliParser(prog="unibind", description="Index LLM-written category descriptions and recognise anything by "
                                              "retrieval.\nEvery setting is a flag, else a UNIBIND_* variable, else "
                                              "its default: `unibind config` shows which.",
                  epilog="run `unibind COMMAND --help` for a command's options and all its examples",
                  lists_examples=True)
    p.add_argument("--db", help="database URL (default: $UNIBIND_DATABASE_URL or sqlite:///$UNIBIND_HOME/unibind.db)")
    p.add_argument("--home", help="data folder for the SQLite store and FAISS files (default: $UNIBIND_HOME or "
                                  "./unibind-data)")
    p.add_argument("--vectors", help="where index vectors live: faiss (FAISS files in the data folder), "
                                     "milvus-lite:PATH or milvus://host:port (default: $UNIBIND_VECTORS or faiss)")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N (default: $UNIBIND_DEVICE or auto)")
    p.add_argument("--fp16", action="store_true", default=None,
                   help="store vectors as float16 in FAISS GPU indexes (default: $UNIBIND_FP16 or off)")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=CliParser)
    for group in (ingest, kb, corpus, index, search, centres, recognize, evaluate, plot, modality, head, gallery, serve, config):
        group.add_commands(sub)
    return p


LOG_PROGRESS_SECONDS = 30


def _setup_logging(verbose: int) -> None:
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    # libraries' own chatter (FAISS says which CPU build it loads) is not what -v asks for
    for noisy in ("alembic", "sentence_transformers", "transformers", "httpx", "huggingface_hub", "faiss"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def _fail(verbose: int, message: str, code: int) -> int:
    """One line on stderr for the user; the traceback only with -vv."""
    if verbose > 1:
        log.exception("failed")
    print(f"unibind: error: {message}", file=sys.stderr)
    return code


def exit_code(error: BaseException) -> int:
    """The exit status of a user-facing error: the error type's own ``exit_code`` (``unibind.schema.errors``: 2 for
    a mistake in the command or its input, 3 for a conflict with the store's state, 75 when busy, 69 when something
    is out of reach); 2 for a missing file; 1 for an untyped ValueError (an internal error, not the user's)."""
    from unibind.schema.errors import UnibindError

    if isinstance(error, UnibindError):
        return type(error).exit_code
    return 2 if isinstance(error, FileNotFoundError) else 1


def _warn_deprecated(args: argparse.Namespace) -> None:
    notes = list(getattr(args, DEPRECATIONS, None) or [])
    if args.command in DEPRECATED_COMMANDS:
        notes.insert(0, f"`unibind {args.command}` is deprecated: use `{DEPRECATED_COMMANDS[args.command]}`")
    for message in notes:
        log.warning("%s (the old spelling still works for now)", message)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit status (0, 1 for a failed check or an OS/database error, else the error
    type's ``exit_code``). ``--help`` returns 0; a mistake on the command line returns 2."""
    from unibind.schema.errors import InvalidInput

    try:
        args = build_parser().parse_args(argv)
    except InvalidInput as e:
        return _fail(0, str(e), exit_code(e))
    except SystemExit as e:  # --help, --version: argparse printed what was asked
        return e.code if isinstance(e.code, int) else 0
    _setup_logging(args.verbose)
    _warn_deprecated(args)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not sys.stderr.isatty():  # a log file, a pipe: a progress bar line every 30 s, not a redraw per step
        os.environ.setdefault("TQDM_MININTERVAL", str(LOG_PROGRESS_SECONDS))
    from sqlalchemy.exc import SQLAlchemyError

    from unibind.retrieval.cli.context import Context

    try:
        return int(args.func(Context(args), args))
    except (ValueError, FileNotFoundError) as e:  # typed errors (UnibindError is a ValueError) and plain mistakes
        return _fail(args.verbose, str(e), exit_code(e))
    except SQLAlchemyError as e:  # out of reach or locked is Busy/Unavailable (schema.database); this is the rest
        detail = str(getattr(e, "orig", None) or e).strip().splitlines()[0]
        return _fail(args.verbose, f"database error: {detail}", 1)
    except OSError as e:  # permissions, a full disk, ...
        return _fail(args.verbose, f"{e.strerror or e}{f': {e.filename}' if e.filename else ''}", 1)
    except KeyboardInterrupt:
        print("unibind: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
