"""The ``unibind`` command line: ingest, inspect and search the knowledge base."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from unibind.retrieval.cli.output import emit_json, format_table

if TYPE_CHECKING:
    from unibind.indexer.runtime.device import Device

log = logging.getLogger("unibind")

DEFAULT_ENCODER = "open_clip:ViT-B-32/laion2b_s34b_b79k"
ENCODER_ENV = "UNIBIND_ENCODER"


class Context:
    """What every command needs: settings, the database (migrated on first use) and the device."""

    def __init__(self, args: argparse.Namespace) -> None:
        from unibind.schema import Database
        from unibind.schema.settings import Settings

        self.settings = Settings.resolve(db=args.db, home=args.home)
        self.db = Database(self.settings.database_url)
        self.home = self.settings.home
        self._device_args = (args.device, args.fp16)

    @cached_property
    def device(self) -> Device:
        """Chosen on first use, so commands that only read the store never import torch."""
        from unibind.indexer.runtime.device import select_device

        return select_device(self._device_args[0], faiss_fp16=self._device_args[1])

    def default_encoder(self, given: str | None) -> str:
        """--encoder, else $UNIBIND_ENCODER, else the only existing space's encoder, else open_clip ViT-B-32."""
        if given or os.environ.get(ENCODER_ENV):
            return given or os.environ[ENCODER_ENV]
        from sqlalchemy import select

        from unibind.schema import Space

        with self.db.session() as session:
            encoders = list(session.scalars(select(Space.encoder)))
        return encoders[0] if len(encoders) == 1 else DEFAULT_ENCODER


# -- commands --------------------------------------------------------------------------------------
def cmd_ingest(ctx: Context, args: argparse.Namespace) -> int:
    from unibind.indexer.readers.builtin import BUILTINS, load_builtin
    from unibind.indexer.readers.corpus import read_corpus
    from unibind.indexer.store.ingest import IngestConfig, ingest

    if args.builtin and args.file:
        raise ValueError("give either FILE or --builtin, not both")
    if args.builtin:
        data = load_builtin(args.builtin, classes=args.classes, variant=args.variant)
        name = args.name or args.builtin
        source = args.source or BUILTINS[args.builtin].source
    elif args.file:
        if args.classes is not None or args.variant != "all":
            raise ValueError("--classes and --variant apply to --builtin corpora only")
        if not args.name:
            raise ValueError("--name is required when ingesting a file")
        data = read_corpus(args.file, format=args.format, key=args.key)
        name, source = args.name, args.source
    else:
        raise ValueError("give a corpus FILE or --builtin NAME")
    config = IngestConfig(
        name=name,
        encoder=ctx.default_encoder(args.encoder),
        source=source,
        factory=args.factory,
        replace=args.replace,
        batch_size=args.batch_size,
        chunk_size=args.chunk_size,
    )
    report = ingest(ctx.db, data, config, home=ctx.home, device=ctx.device)
    if args.json:
        emit_json({k: str(v) if k == "index_path" else v for k, v in report.__dict__.items()})
    else:
        print(
            f"ingested corpus {report.name!r}: {report.n_descriptions} descriptions in {report.n_categories} categories "
            f"({report.n_duplicates} duplicates dropped) with {report.encoder} in {report.seconds:.1f}s"
        )
    return 0


def _corpus_row(c: Any) -> dict[str, Any]:
    from unibind.indexer.store.contents import corpus_state

    state = corpus_state(c)
    return {
        "name": c.name if state == "complete" else f"{c.name} ({c.target_name})" if c.target_name else c.name,
        "space": c.space.encoder,
        "status": state,
        "descriptions": c.n_descriptions,
        "categories": c.n_categories,
        "duplicates": c.n_duplicates,
        "source": c.source,
        "origin": c.origin,
        "created_at": c.created_at,
        "completed_at": c.completed_at,
    }


def cmd_corpus(ctx: Context, args: argparse.Namespace) -> int:
    from unibind.indexer.store.contents import delete_corpus, find_corpus, find_space, list_categories, list_corpora

    with ctx.db.session() as session:
        space = find_space(session, args.encoder) if args.encoder else None
        if args.action == "list":
            rows = [_corpus_row(c) for c in list_corpora(session) if space is None or c.space_id == space.id]
            if args.json:
                emit_json(rows)
            elif not rows:
                print("no corpora yet: unibind ingest FILE --name N --encoder SPEC")
            else:
                keys = ["name", "space", "status", "descriptions", "categories", "duplicates", "created_at"]
                print(format_table(keys, [[r[k] for k in keys] for r in rows]))
            return 0
        if not args.name:
            raise ValueError(f"corpus {args.action} needs a corpus NAME")
        corpus = find_corpus(session, args.name, space)
        row = _corpus_row(corpus)
        if args.action == "show":
            cats = list_categories(session, corpus)
            if args.json:
                emit_json({**row, "category_counts": {c.name: c.n_descriptions for c in cats}})
            else:
                width = max(len(k) for k in row)
                print("\n".join(f"{k.ljust(width)}  {v if v is not None else '-'}" for k, v in row.items()))
                shown = cats[: args.limit]
                print(f"\ncategories ({len(cats)}, first {len(shown)}):")
                print(format_table(["category", "descriptions"], [[c.name, c.n_descriptions] for c in shown]))
            return 0
        corpus_id = corpus.id
    n = delete_corpus(ctx.db, corpus_id, ctx.home, ctx.device)
    if args.json:
        emit_json({"deleted": args.name, "descriptions": n})
    else:
        print(f"deleted corpus {args.name!r} ({n} descriptions)")
    return 0


def cmd_categories(ctx: Context, args: argparse.Namespace) -> int:
    from unibind.indexer.store.contents import find_corpus, find_space, list_categories

    with ctx.db.session() as session:
        space = find_space(session, args.encoder) if args.encoder else None
        corpus = find_corpus(session, args.corpus, space) if args.corpus else None
        cats = list_categories(session, corpus, space)
    if args.json:
        emit_json([c.__dict__ for c in cats])
    elif not cats:
        print("no categories yet")
    else:
        print(format_table(["category", "descriptions", "corpora"], [[c.name, c.n_descriptions, c.n_corpora] for c in cats]))
        print(f"\n{len(cats)} categories")
    return 0


def cmd_index(ctx: Context, args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from unibind.indexer.store.contents import description_index, find_space, prune_centres, reap_abandoned
    from unibind.indexer.index.data_home import DataHome
    from unibind.indexer.modalities.versions import collect_head_files
    from unibind.schema import Space

    with ctx.db.session() as session:
        spaces = [find_space(session, args.encoder)] if args.encoder else list(session.scalars(select(Space).order_by(Space.id)))
    if not spaces:
        raise ValueError("the knowledge base is empty: nothing to verify or rebuild")
    results, failed = [], False
    if args.action == "rebuild":  # dead rows first: ingests whose process died, then centres and files nothing names
        purged = reap_abandoned(ctx.db)
        heads_removed = collect_head_files(ctx.db, DataHome(ctx.db, ctx.home))
    for space in spaces:
        index = description_index(ctx.db, space, ctx.home, ctx.device)
        if args.action == "verify":
            check = index.verify()
            failed |= not check.ok
            results.append({"space": space.encoder, "path": str(check.path) if check.path else None, "ok": check.ok,
                            "store": check.n_store, "file": check.n_file, "problems": check.problems,
                            "unused_files": check.orphans})
        else:
            from unibind.schema.store_state import lock_catalog

            with ctx.db.transaction() as session:
                lock_catalog(session)  # unreachable centres serve no query: nothing visible changes
                centres = prune_centres(session, space.id)
            rec = index.rebuild(args.factory, progress=True)
            _collect_gallery_files(ctx, space)
            results.append({"space": space.encoder, "path": str(index.data.resolve(rec.path)), "vectors": rec.n_vectors,
                            "factory": rec.factory, "purged_incomplete": purged, "dead_centres": centres,
                            "unused_head_files": heads_removed})
            purged, heads_removed = [], []
    if args.json:
        emit_json(results)
    elif args.action == "verify":
        for r in results:
            state = "ok" if r["ok"] else "STALE"
            print(f"{state}  {r['space']}: {r['file']} vectors in {r['path']}, {r['store']} descriptions in the store")
            for p in r["problems"]:
                print(f"      - {p}")
            if r["unused_files"]:
                print(f"      {len(r['unused_files'])} unused index files (removed by the next write or index rebuild)")
        if failed:
            print("run `unibind index rebuild` to rebuild from the stored vectors", file=sys.stderr)
    else:
        for r in results:
            extra = f"; removed interrupted ingests {', '.join(r['purged_incomplete'])}" if r["purged_incomplete"] else ""
            extra += f"; removed {r['dead_centres']} dead centres" if r["dead_centres"] else ""
            extra += f"; removed {len(r['unused_head_files'])} unused head files" if r["unused_head_files"] else ""
            print(f"rebuilt {r['path']}: {r['vectors']} vectors ({r['factory']}){extra}")
    return 1 if failed else 0


def _collect_gallery_files(ctx: Context, space: Any) -> None:
    """Remove the gallery index files no record names (what killed gallery writes left)."""
    from unibind.indexer.gallery.items import gallery_index
    from unibind.indexer.modalities.registry import list_modalities

    with ctx.db.session() as session:
        modalities = list_modalities(session, space)
        for m in modalities:
            _ = m.space
    for m in modalities:
        with gallery_index(ctx.db, ctx.home, ctx.device, m).lock():
            pass  # leaving the writer's lock removes the files no record names


def cmd_search_descriptions(ctx: Context, args: argparse.Namespace) -> int:
    from unibind.retrieval.search.descriptions import DescriptionSearch

    search = DescriptionSearch(ctx.db, ctx.home, ctx.device, args.encoder)
    hits = search.search([args.text], k=args.k)[0]
    if args.json:
        emit_json([h.__dict__ for h in hits])
    else:
        print(format_table(["#", "score", "category", "corpus", "description"],
                           [[i + 1, h.score, h.category, h.corpus, h.text] for i, h in enumerate(hits)], max_width=100))
    return 0


# -- parser ----------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="unibind", description="Index LLM-written category descriptions and recognise anything by retrieval.")
    p.add_argument("--db", help="database URL (default: $UNIBIND_DATABASE_URL or sqlite:///$UNIBIND_HOME/unibind.db)")
    p.add_argument("--home", help="data folder for the SQLite store and FAISS files (default: $UNIBIND_HOME or ./unibind-data)")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N (default: $UNIBIND_DEVICE or auto)")
    p.add_argument("--fp16", action="store_true", help="store vectors as float16 in FAISS GPU indexes")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(sp: argparse.ArgumentParser, encoder_help: str = "the space's encoder spec (needed when several spaces exist)") -> None:
        sp.add_argument("--encoder", help=encoder_help)
        sp.add_argument("--json", action="store_true", help="machine-readable output")

    sp = sub.add_parser("ingest", help="ingest a corpus file (JSON, JSONL, CSV) or a builtin corpus")
    sp.add_argument("file", nargs="?", help="corpus file: .json {category: [texts]}, .jsonl, or .csv with category,text columns")
    sp.add_argument("--builtin", choices=["cupl-imagenet"], help="a corpus shipped in a wheel (needs clip-benchmark)")
    sp.add_argument("--classes", type=int, help="builtin only: the first N classes")
    sp.add_argument("--variant", default="all", choices=["all", "descriptions", "templates"],
                    help="builtin only: all 150 strings per class, the 70 LLM descriptions, or the 80 templates")
    sp.add_argument("--name", help="corpus name (unique per space; default for --builtin: its name)")
    sp.add_argument("--source", help="where the descriptions come from (which LLM, which prompt)")
    sp.add_argument("--format", choices=["json", "jsonl", "csv"], help="override the format the extension implies")
    sp.add_argument("--key", help="JSON: the entry of a nested file to read (e.g. imagenet1k)")
    sp.add_argument("--factory", help="FAISS factory string for the space's index (default: keep the current one; Flat when new)")
    sp.add_argument("--replace", action="store_true", help="replace a corpus of the same name")
    sp.add_argument("--batch-size", type=int, default=256, help="encoder batch size (default 256)")
    sp.add_argument("--chunk-size", type=int, default=4096, help="descriptions encoded and written per step (default 4096)")
    common(sp, f"encoder spec (default: ${ENCODER_ENV}, the only space's encoder, or {DEFAULT_ENCODER})")
    sp.set_defaults(func=cmd_ingest)

    sp = sub.add_parser("corpus", help="list, show or delete corpora")
    sp.add_argument("action", choices=["list", "show", "delete"])
    sp.add_argument("name", nargs="?")
    sp.add_argument("--limit", type=int, default=20, help="show: how many categories to list")
    common(sp)
    sp.set_defaults(func=cmd_corpus)

    sp = sub.add_parser("categories", help="list categories with their description counts")
    sp.add_argument("--corpus", help="only this corpus")
    common(sp)
    sp.set_defaults(func=cmd_categories)

    sp = sub.add_parser("index", help="verify the FAISS files against the store, or rebuild them from stored vectors")
    sp.add_argument("action", choices=["verify", "rebuild"])
    sp.add_argument("--factory", help="rebuild: a FAISS factory string (default: the current one)")
    common(sp)
    sp.set_defaults(func=cmd_index)

    sp = sub.add_parser("search-descriptions", help="nearest descriptions to a text, with category and corpus")
    sp.add_argument("text")
    sp.add_argument("-k", type=int, default=10, help="how many (default 10)")
    common(sp)
    sp.set_defaults(func=cmd_search_descriptions)

    from unibind.retrieval.cli.modalities import add_commands as add_space_commands
    from unibind.retrieval.cli.recognition import add_commands

    add_commands(sub, common)
    add_space_commands(sub, common)
    from unibind.retrieval.service.runner import add_command as add_serve_command

    add_serve_command(sub, common)
    return p


def _setup_logging(verbose: int) -> None:
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("alembic", "sentence_transformers", "transformers", "httpx", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def _fail(args: argparse.Namespace, message: str, code: int) -> int:
    """One line on stderr for the user; the traceback only with -vv."""
    if args.verbose > 1:
        log.exception("failed")
    print(f"unibind: error: {message}", file=sys.stderr)
    return code


def exit_code(error: BaseException) -> int:
    """The exit status of a user-facing error: 2 for a mistake in the command or its input (and anything not
    typed), 3 for a conflict with the store's state, 75 when busy (try again), 69 when something is out of reach."""
    from unibind.schema.errors import Busy, Conflict, Unavailable

    for kind, code in ((Conflict, 3), (Busy, 75), (Unavailable, 69)):
        if isinstance(error, kind):
            return code
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from sqlalchemy.exc import SQLAlchemyError

    from unibind.indexer.readers.corpus import CorpusError
    from unibind.schema.database import BUSY_TIMEOUT_S

    try:
        return int(args.func(Context(args), args))
    except (ValueError, FileNotFoundError, CorpusError) as e:
        return _fail(args, str(e), exit_code(e))
    except SQLAlchemyError as e:  # the server went away, ...
        detail = str(getattr(e, "orig", None) or e).strip().splitlines()[0]
        if "database is locked" in detail:  # SQLite: another writer held its write lock past the busy timeout
            return _fail(args, "the store is busy: another process held SQLite's write lock for longer than "
                               f"{BUSY_TIMEOUT_S} s; run the command again", 75)
        return _fail(args, f"database error: {detail}", 1)
    except OSError as e:  # permissions, a full disk, ...
        return _fail(args, f"{e.strerror or e}{f': {e.filename}' if e.filename else ''}", 1)
    except KeyboardInterrupt:
        print("unibind: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
