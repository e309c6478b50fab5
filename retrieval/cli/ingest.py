"""``unibind ingest``: a corpus file (JSON, JSONL, CSV) or a builtin corpus into the knowledge base."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from unibind.retrieval.cli.context import Context
from unibind.retrieval.cli.output import emit_json
from unibind.retrieval.cli.parser import add_leaf, common, exclusive
from unibind.retrieval.cli.ray_options import add_ray_options, on_ray, ray_config
from unibind.schema.errors import InvalidInput
from unibind.schema.settings import DEFAULT_ENCODER, ENCODER_ENV

DEFAULT_CHUNK_SIZE = 4096  # descriptions per encode-and-write step (IngestConfig's default)
# under --ray: a Ray Data job starts its actors and loads a model in each (seconds), so a corpus goes in one job
RAY_CHUNK_SIZE = 1_000_000


def cmd_ingest(ctx: Context, args: argparse.Namespace) -> int:
    from unibind.indexer.readers.builtin import BUILTINS, load_builtin
    from unibind.indexer.readers.corpus import read_corpus
    from unibind.indexer.store.ingest import IngestConfig, ingest

    if args.builtin:
        data = load_builtin(args.builtin, classes=args.classes, variant=args.variant)
        name = args.name or args.builtin
        source = args.source or BUILTINS[args.builtin].source
    else:
        if args.classes is not None or args.variant != "all":
            raise InvalidInput("--classes and --variant apply to --builtin corpora only")
        data = read_corpus(args.file, format=args.format, key=args.key)
        name, source = args.name or Path(args.file).stem, args.source  # as an upload without a name is called
    ray = ray_config(args, batch_size=args.batch_size)
    chunk_size = args.chunk_size if args.chunk_size is not None else RAY_CHUNK_SIZE if ray is not None else DEFAULT_CHUNK_SIZE
    config = IngestConfig(
        name=name,
        encoder=ctx.default_encoder(),
        source=source,
        factory=args.factory,
        replace=args.replace,
        batch_size=args.batch_size,
        chunk_size=chunk_size,
    )
    encoder = None
    if ray is not None:  # only encoding runs on Ray; this process writes and publishes
        from unibind.indexer.encoders.factory import build_encoder

        encoder = on_ray(build_encoder(config.encoder, ctx.device), ray)
    report = ingest(ctx.db, data, config, home=ctx.home, device=ctx.device, encoder=encoder)
    if args.json:
        emit_json({k: str(v) if k == "index_path" else v for k, v in report.__dict__.items()})
    else:
        print(
            f"ingested corpus {report.name!r}: {report.n_descriptions} descriptions in {report.n_categories} categories "
            f"({report.n_duplicates} duplicates dropped) with {report.encoder} in {report.seconds:.1f}s"
        )
    return 0


def add_commands(sub: Any) -> None:
    sp = add_leaf(sub, "ingest", "ingest a corpus file (JSON, JSONL, CSV) or a builtin corpus", cmd_ingest, [
        'unibind ingest descriptions.json --name cupl-gpt3 --encoder minilm --source "GPT-3, CuPL prompts"',
        "unibind ingest prompts.json --key imagenet1k --name cupl --encoder minilm",
        "unibind ingest --builtin cupl-imagenet --classes 100 --encoder minilm",
        "unibind ingest descriptions.json --name cupl-gpt3 --encoder minilm --ray",
        "unibind ingest descriptions.json --name cupl-gpt3 --encoder minilm --ray-gpus 1 --ray-concurrency 4 --ray=auto",
    ])
    what = exclusive(sp, "give a corpus FILE or --builtin NAME, not both")
    what.add_argument("file", nargs="?", help="corpus file: .json {category: [texts]}, .jsonl, or .csv with "
                                              "category,text columns")
    what.add_argument("--builtin", choices=["cupl-imagenet"], help="a corpus shipped in a wheel (needs clip-benchmark)")
    sp.add_argument("--classes", type=int, help="builtin only: the first N classes")
    sp.add_argument("--variant", default="all", choices=["all", "descriptions", "templates"],
                    help="builtin only: all 150 strings per class, the 70 LLM descriptions, or the 80 templates")
    sp.add_argument("--name", help="corpus name (unique per space; default: the FILE's name without its extension, "
                                   "or the --builtin corpus's name)")
    sp.add_argument("--source", help="where the descriptions come from (which LLM, which prompt)")
    sp.add_argument("--format", choices=["json", "jsonl", "csv"], help="override the format the extension implies")
    sp.add_argument("--key", help="JSON: the entry of a nested file to read (e.g. imagenet1k)")
    sp.add_argument("--factory", help="FAISS factory string for the space's index, or with --vectors milvus… a "
                                      "Milvus index type (default: keep the current one; Flat / FLAT when new)")
    sp.add_argument("--replace", action="store_true", help="replace a corpus of the same name")
    sp.add_argument("--batch-size", type=int, default=256, help="encoder batch size (default 256)")
    sp.add_argument("--chunk-size", type=int, help=f"descriptions encoded and written per step (default "
                                                    f"{DEFAULT_CHUNK_SIZE}; with --ray {RAY_CHUNK_SIZE:,}: one Ray job)")
    add_ray_options(sp, "the descriptions")
    common(sp, f"encoder spec (default: ${ENCODER_ENV}, the only space's encoder, or {DEFAULT_ENCODER})")
