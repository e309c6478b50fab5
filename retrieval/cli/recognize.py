"""``unibind recognize``: the top-k categories of a query, a retrieval call over the centres."""

from __future__ import annotations

import argparse
from typing import Any

from unibind.retrieval.cli.centres import add_centre_options, add_engine_option, add_top_m_option, centre_spec
from unibind.retrieval.cli.context import Context
from unibind.retrieval.cli.output import emit_json, format_table
from unibind.retrieval.cli.parser import add_leaf, add_top_option, common
from unibind.retrieval.cli.queries import add_query_options, read_query_vectors
from unibind.schema.errors import InvalidInput


def _labels(raw: str | None) -> list[str] | None:
    if raw is None:
        return None
    labels = [x.strip() for x in raw.split(",") if x.strip()]
    if not labels:
        raise InvalidInput("--labels needs at least one category name (comma-separated)")
    return labels


def cmd_recognize(ctx: Context, args: argparse.Namespace) -> int:
    from unibind.retrieval.recognition.recognizer import Recognizer

    space = ctx.space()
    names, vectors, _modality = read_query_vectors(ctx, space, args)  # bad queries fail before centres are built
    rec = Recognizer(ctx.db, ctx.device, encoder=space.encoder, spec=centre_spec(args), engine=args.engine,
                     top_m=args.top_m, centring=args.centring)
    results = rec.recognize_vectors(vectors, k=args.top, labels=_labels(args.labels))
    if args.json:
        emit_json([{"query": t, "labels": r.labels, "scores": r.scores} for t, r in zip(names, results)])
        return 0
    for name, r in zip(names, results):
        print(f"{name}")
        print(format_table(["#", "category", "score"], [[i + 1, lab, s] for i, (lab, s) in enumerate(zip(r.labels, r.scores))]))
        print()
    return 0


def add_commands(sub: Any) -> None:
    sp = add_leaf(sub, "recognize", "top-k categories of a query (a retrieval call over the centres)", cmd_recognize, [
        'unibind recognize --text "A freshwater fish with olive-green scales and red eyes" -k 5',
        'unibind recognize --text "a red truck" --labels "tench,goldfish,fire truck"',
        "unibind recognize --image cat.jpg --image dog.png -k 5",
        "unibind recognize --features clips.npy --modality audio --top-m 2 --engine dense",
    ])
    add_query_options(sp, image_help="an image file (repeat for a batch); through the image head, or zero-shot when "
                                     "the space's encoder has the image tower")
    sp.add_argument("--labels", help="restrict the answer to these categories (comma-separated)")
    add_top_option(sp, 5, "categories per query")
    add_engine_option(sp)
    add_top_m_option(sp)
    add_centre_options(sp)
    common(sp)
