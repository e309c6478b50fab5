"""``unibind kb generate|describe``: knowledge bases written by an LLM (category descriptions; per-sample
descriptions for head training)."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

from unibind.retrieval.cli.context import Context
from unibind.retrieval.cli.output import emit_json, format_table
from unibind.retrieval.cli.parser import add_group, add_leaf, common, exclusive
from unibind.schema.errors import InvalidInput, NotFound

log = logging.getLogger(__name__)


def _llm_spec(args: argparse.Namespace) -> Any:
    from unibind.indexer.knowledge.llm_spec import parse_llm_spec

    spec = parse_llm_spec(args.llm)
    if args.base_url and spec.kind != "openai":
        raise InvalidInput(f"--base-url goes with --llm openai:<model>, not {spec}")
    return spec


def _llm(args: argparse.Namespace, ctx: Context, *, load: bool = True) -> Any:
    """The backend; an ``openai:`` server is checked to answer at once (before anything slow is loaded)."""
    from unibind.indexer.knowledge.backends import make_llm

    spec = _llm_spec(args)
    if spec.kind == "openai":
        from unibind.indexer.knowledge.openai_backend import OpenAIConfig

        config = OpenAIConfig(base_url=ctx.settings.llm_base_url, api_key=ctx.settings.llm_api_key,
                              concurrency=args.concurrency, timeout=args.timeout, retries=args.retries)
        llm = make_llm(spec, openai=config)
        if load:
            llm.check_reachable()
        return llm
    return make_llm(spec, device=ctx.device if spec.kind == "hf" else None, load=load)


def _writable(path: str, option: str) -> None:
    """``path`` can be written (its folder exists or can be made, and it is not a folder): checked before any
    request is sent, so a typo does not cost a whole run."""
    p = Path(path)
    if p.is_dir():
        raise InvalidInput(f"{option} {path}: is a folder; give a file name")
    parent = p.parent if str(p.parent) else Path(".")
    existing = next((a for a in (parent, *parent.parents) if a.exists()), Path("."))
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        raise InvalidInput(f"{option} {path}: cannot write in {existing}")


def _cache(args: argparse.Namespace, ctx: Context) -> Any:
    from unibind.indexer.knowledge.cache import CACHE_FILE, ResponseCache

    return ResponseCache(args.cache or Path(ctx.home) / CACHE_FILE)


def _categories(args: argparse.Namespace, ctx: Context) -> list[str]:
    from unibind.indexer.knowledge.categories import parse_categories, read_categories_file

    if args.categories is not None:
        return parse_categories(args.categories)
    if args.categories_file is not None:
        return read_categories_file(args.categories_file)
    from sqlalchemy import select

    from unibind.schema.models import Category, Corpus, CorpusStatus, Description, Space

    name = args.from_corpus
    with ctx.db.session() as session:  # category names do not depend on the space: look in every space
        stmt = (select(Corpus.id, Space.encoder).join(Space, Corpus.space_id == Space.id)
                .where(Corpus.name == name, Corpus.status == CorpusStatus.COMPLETE))
        if ctx.encoder:
            stmt = stmt.where(Space.encoder == ctx.encoder)
        found = list(session.execute(stmt))
        if not found:
            names = sorted(set(session.scalars(select(Corpus.name).where(Corpus.status == CorpusStatus.COMPLETE))))
            raise NotFound(f"--from-corpus: no complete corpus named {name!r}"
                           f"{f' in space {ctx.encoder!r}' if ctx.encoder else ''} (corpora: {', '.join(names) or 'none'})")
        if len(found) > 1:
            raise InvalidInput(f"--from-corpus: corpus {name!r} exists in several spaces "
                               f"({', '.join(e for _, e in found)}): say which with --encoder")
        rows = session.execute(select(Category.name, Description.id).join(Description, Description.category_id == Category.id)
                               .where(Description.corpus_id == found[0][0]).order_by(Description.id))
        return list(dict.fromkeys(name for name, _ in rows))


def _encoder(ctx: Context, args: argparse.Namespace) -> Any:
    from unibind.indexer.encoders.factory import build_encoder

    return build_encoder(ctx.default_encoder(), ctx.device)


def cmd_generate(ctx: Context, args: argparse.Namespace) -> int:
    from unibind.indexer.knowledge.cleaning import CleaningConfig
    from unibind.indexer.knowledge.generate import GenerateConfig, Generator, dry_run, write_jsonl
    from unibind.indexer.knowledge.prompts import load_prompts

    if not args.dry_run and not args.out and not args.ingest:
        raise InvalidInput("say where the corpus goes: --out FILE.jsonl, --ingest --name NAME, or both (or --dry-run)")
    if args.ingest and not args.name:
        raise InvalidInput("--ingest needs --name NAME (the corpus name in the store)")
    if args.name and not args.ingest:
        raise InvalidInput("--name goes with --ingest")
    if args.out and Path(args.out).suffix.lower() not in (".jsonl", ".ndjson"):
        raise InvalidInput(f"--out {args.out}: the corpus is JSONL; name the file .jsonl")
    if args.out:
        _writable(args.out, "--out")
    if not 0 <= args.near_duplicate <= 1:
        raise InvalidInput(f"--near-duplicate must be a cosine in (0, 1], or 0 to keep near duplicates; got "
                           f"{args.near_duplicate}")
    spec = _llm_spec(args)
    if spec.kind == "waffle" and args.names == "never":
        raise InvalidInput("--names never cannot be met by --llm waffle: its descriptions always name the category")
    prompts = load_prompts(args.prompts)
    cleaning = CleaningConfig(names=args.names, near_duplicate=args.near_duplicate or None)
    config = GenerateConfig.from_prompts(prompts, samples=args.samples, temperature=args.temperature,
                                         max_tokens=args.max_tokens, seed=args.seed, min_per_category=args.min_per_category,
                                         top_up_rounds=args.top_up_rounds, cleaning=cleaning)
    if config.temperature == 0 and config.samples > 1 and spec.kind != "waffle":
        log.warning("--samples %d at temperature 0: a model that decodes greedily gives the same answer each time",
                    config.samples)
    categories = _categories(args, ctx)
    if args.ingest and not args.replace and not args.dry_run:
        _name_is_free(ctx, args.name)
    llm = _llm(args, ctx, load=not args.dry_run)
    try:
        with _cache(args, ctx) as cache:
            if args.dry_run:
                plan = dry_run(llm, categories, config, cache)
                if args.json:
                    emit_json(plan)
                else:
                    print(f"{plan['llm']}, prompt set {plan['prompt_set']!r}, {plan['categories']} categories x "
                          f"{len(plan['prompts'])} prompts x {plan['samples']} samples = {plan['requests']} requests "
                          f"({plan['cached']} cached, {plan['to_send']} to send); {plan['top_up']}")
                    print(f"prompts for {categories[0]!r}:")
                    for p in plan["prompts"]:
                        print(f"  {p}")
                return 0
            encoder = _encoder(ctx, args)
            embed = (lambda texts: encoder.encode_text(texts, progress=False)) if cleaning.near_duplicate else None
            records, report = Generator(llm, cache, config, fit=encoder.fit_text, embed=embed).run(categories)
    finally:
        llm.close()
    if not records:
        raise InvalidInput("the LLM's answers left no description after cleaning; nothing written "
                           f"(cleaning: {report.cleaning.as_dict()})")
    ingested = None
    if args.ingest:  # first: a corpus that cannot be ingested leaves no --out file either
        ingested = _ingest(ctx, args, records, llm.spec, prompts.name if llm.uses_prompts else None)
    if args.out:
        write_jsonl(records, args.out)
    out = {**report.as_dict(), "out": args.out, "ingested": ingested}
    if args.json:
        emit_json(out)
    else:
        c = report.cleaning.as_dict()
        how = (f"{report.requests} requests: {report.cached} cached, {report.sent} sent" if report.asked
               else "random words, no LLM asked")
        print(f"{report.records} descriptions for {report.categories} categories from {report.llm} ({how}) "
              f"in {report.seconds:.1f}s")
        print(format_table(list(c), [list(c.values())]))
        if report.short:
            print(f"{len(report.short)} categories below {config.min_per_category} descriptions: "
                  + ", ".join(f"{k} ({v})" for k, v in report.short.items()))
        if args.out:
            print(f"wrote {args.out}")
        if ingested:
            print(f"ingested corpus {ingested['name']!r}: {ingested['n_descriptions']} descriptions")
    return 0


def _name_is_free(ctx: Context, name: str) -> None:
    """--ingest without --replace: the corpus name must be free in the space, checked before any request."""
    from sqlalchemy import select

    from unibind.schema.errors import Conflict
    from unibind.schema.models import Corpus, Space

    encoder = ctx.default_encoder()
    with ctx.db.session() as session:
        taken = session.scalars(select(Corpus.id).join(Space, Corpus.space_id == Space.id)
                                .where(Space.encoder == encoder, Corpus.name == name)).first()
    if taken is not None:
        raise Conflict(f"corpus {name!r} already exists in space {encoder!r}: pass --replace to replace it, or "
                       "another --name")


def _ingest(ctx: Context, args: argparse.Namespace, records: list[dict[str, Any]], model: str,
            prompts: str | None) -> dict[str, Any]:
    """The generated records into the store through the ingest's own reader and writer (one publish)."""
    import json

    from unibind.indexer.readers.corpus import read_corpus_bytes
    from unibind.indexer.store.ingest import IngestConfig, ingest

    data = b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in records)
    corpus = read_corpus_bytes(data, label=args.out or f"kb generate {args.name}", format="jsonl")
    made = f"{model}, {prompts} prompts" if prompts else f"{model}, random words (no LLM)"
    config = IngestConfig(name=args.name, encoder=ctx.default_encoder(), source=args.source or made,
                          replace=args.replace)
    report = ingest(ctx.db, corpus, config, home=ctx.home, device=ctx.device)
    return {"name": report.name, "n_descriptions": report.n_descriptions, "n_categories": report.n_categories}


def cmd_describe(ctx: Context, args: argparse.Namespace) -> int:
    from unibind.indexer.knowledge.describe import DESCRIBE_PROMPT, captions_to_pairs, describe_images, list_images
    from unibind.indexer.knowledge.generate import write_jsonl

    if Path(args.out).suffix.lower() not in (".jsonl", ".ndjson"):
        raise InvalidInput(f"--out {args.out}: pairs are JSONL; name the file .jsonl")
    if args.captions:
        if args.llm:
            raise InvalidInput("--captions needs no --llm: the captions were written elsewhere")
        records = captions_to_pairs(args.captions, n_rows=args.rows)
        write_jsonl(records, args.out)
        summary: dict[str, Any] = {"pairs": len(records), "out": args.out, "source": args.captions}
    else:
        if not args.llm:
            raise InvalidInput("--images needs --llm openai:<vision model> (a model that reads images)")
        images = list_images(args.images)
        llm = _llm(args, ctx)
        try:
            with _cache(args, ctx) as cache:
                records, report = describe_images(llm, images, cache, Path(args.out), prompt=args.prompt or DESCRIBE_PROMPT,
                                                  samples=args.samples, temperature=args.temperature,
                                                  max_tokens=args.max_tokens, seed=args.seed,
                                                  labels_from_folders=args.labels_from_folders)
        finally:
            llm.close()
        write_jsonl(records, args.out)
        asked = {"requests": report.requests, "cached": report.cached, "sent": report.sent} if report.asked else {}
        summary = {"pairs": len(records), "images": len(images), "out": args.out, **asked, "llm": report.llm}
    if args.json:
        emit_json(summary)
    else:
        print(", ".join(f"{k}: {v}" for k, v in summary.items()))
    return 0


def _llm_options(sp: argparse.ArgumentParser, *, required: bool) -> None:
    sp.add_argument("--llm", required=required, metavar="SPEC",
                    help="openai:<model> (any OpenAI-compatible server), hf:<path-or-id> (a local transformers "
                         "model), or waffle (random words, the WaffleCLIP control)")
    sp.add_argument("--base-url", help="openai: the server's URL, e.g. http://127.0.0.1:8000/v1 (default: "
                                       "$UNIBIND_LLM_BASE_URL, $OPENAI_BASE_URL or OpenAI's); key from "
                                       "$UNIBIND_LLM_API_KEY or $OPENAI_API_KEY")
    sp.add_argument("--concurrency", type=int, default=4, help="openai: requests in flight (default 4)")
    sp.add_argument("--timeout", type=float, default=60.0, help="openai: seconds per request (default 60)")
    sp.add_argument("--retries", type=int, default=5, help="openai: retries of a request after HTTP 429/5xx or a "
                                                           "lost connection, with exponential backoff (default 5)")
    sp.add_argument("--seed", type=int, default=0, help="seed of the run; each request gets its own from it (default 0)")
    sp.add_argument("--cache", help="the response cache file (default: $UNIBIND_HOME/kb-cache.sqlite)")


def add_commands(sub: Any) -> None:
    from unibind.retrieval.centres.strategies import DEFAULT_K

    group = add_group(sub, "kb", "knowledge bases written by an LLM: category descriptions and per-sample descriptions")
    sp = add_leaf(group, "generate", "ask an LLM to describe categories; write a corpus (JSONL) or ingest it", cmd_generate, [
        "unibind kb generate --categories owl,fox --llm openai:gpt-4o-mini --out kb.jsonl",
        "unibind kb generate --categories-file classes.txt --llm openai:qwen2.5-7b --base-url http://127.0.0.1:8000/v1 "
        "--ingest --name qwen-cupl",
        "unibind kb generate --from-corpus cupl-imagenet --llm waffle --ingest --name waffle",
        "unibind kb generate --categories-file classes.txt --llm hf:./my-llm --prompts modality:audio --out audio.jsonl",
        "unibind kb generate --categories owl --llm openai:gpt-4o-mini --prompts my-questions.txt --dry-run",
    ])
    which = exclusive(sp, "give the categories one way: --categories, --categories-file or --from-corpus")
    which.add_argument("--categories", metavar="A,B,C", help="comma-separated category names")
    which.add_argument("--categories-file", metavar="FILE", help="a UTF-8 text file, one category per line")
    which.add_argument("--from-corpus", metavar="NAME", help="the categories of an ingested corpus")
    _llm_options(sp, required=True)
    sp.add_argument("--prompts", default="cupl", metavar="NAME|FILE",
                    help="cupl (default), dclip, modality:audio|point|depth|event|thermal|video, or a file of "
                         "templates, one per line, with {} for the category and {a} for its article")
    sp.add_argument("--samples", type=int, help="answers per prompt and category (default: the prompt set's; cupl 10)")
    sp.add_argument("--temperature", type=float, help="sampling temperature (default: the prompt set's; cupl 0.99)")
    sp.add_argument("--max-tokens", type=int, help="tokens per answer (default: the prompt set's; cupl 50)")
    sp.add_argument("--min-per-category", type=int, default=DEFAULT_K, metavar="K",
                    help=f"ask for more samples until every category has K descriptions (default {DEFAULT_K}, the "
                         "centre size)")
    sp.add_argument("--top-up-rounds", type=int, default=3, help="at most this many extra rounds (default 3)")
    sp.add_argument("--names", choices=["any", "must", "never"], default="any",
                    help="keep sentences whatever they name (any, default), only those naming the category (must), "
                         "or only those that never name it (never)")
    sp.add_argument("--near-duplicate", type=float, default=0.95, metavar="COSINE",
                    help="drop a sentence this close to an earlier one of its category (default 0.95; 0: keep them)")
    sp.add_argument("--out", metavar="FILE.jsonl", help="write the corpus here (category, text and provenance)")
    sp.add_argument("--ingest", action="store_true", help="ingest the corpus into the store (needs --name)")
    sp.add_argument("--name", help="--ingest: the corpus name")
    sp.add_argument("--source", help="--ingest: where the descriptions come from (default: the model and prompt set)")
    sp.add_argument("--replace", action="store_true", help="--ingest: replace a corpus of the same name")
    sp.add_argument("--dry-run", action="store_true", help="print the prompts and the request count; ask nothing")
    common(sp, "the text encoder that cuts descriptions to its context length, removes near duplicates and "
               "ingests (default: $UNIBIND_ENCODER, the only space's encoder, or open_clip ViT-B-32)")

    sp = add_leaf(group, "describe", "describe samples for head training: images through a vision LLM, or "
                                     "captions made elsewhere, into a pairs JSONL", cmd_describe, [
        "unibind kb describe --images photos/ --llm openai:gpt-4o-mini --labels-from-folders --out pairs.jsonl",
        "unibind kb describe --captions clip_captions.jsonl --rows 5000 --out audio-pairs.jsonl",
    ])
    what = exclusive(sp, "give --images or --captions, not both")
    what.add_argument("--images", nargs="+", metavar="DIR|FILE", help="image files or folders (searched recursively)")
    what.add_argument("--captions", metavar="FILE.jsonl",
                      help='{"row": N, "caption": "...", "label": "..."} per line, for a feature modality')
    sp.add_argument("--rows", type=int, help="--captions: the feature file's row count (rows must be below it)")
    sp.add_argument("--out", required=True, metavar="FILE.jsonl", help="the pairs file `unibind head train` reads")
    _llm_options(sp, required=False)
    sp.add_argument("--prompt", help="what to ask about each image (default: a one-or-two-sentence description)")
    sp.add_argument("--samples", type=int, default=1, help="descriptions per image (default 1)")
    sp.add_argument("--temperature", type=float, default=0.2, help="sampling temperature (default 0.2)")
    sp.add_argument("--max-tokens", type=int, default=120, help="tokens per answer (default 120)")
    sp.add_argument("--labels-from-folders", action="store_true", help="label each image with its folder's name")
    sp.add_argument("--json", action="store_true", help="machine-readable output")
