"""The query options of ``recognize`` and ``search`` (``--text`` / ``--image`` / ``--features --modality``) and
the vectors they turn into."""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from unibind.retrieval.cli.context import Context
from unibind.retrieval.cli.parser import CliParser, exclusive
from unibind.schema.errors import InvalidInput

QUERY_HINT = "give exactly one kind of query: --text, --image or --features (with --modality)"


def add_query_options(sp: CliParser, image_help: str = "an image query (repeat for a batch)") -> None:
    """Exactly one of --text (repeatable), --image (repeatable), --features; and --modality."""
    kind = exclusive(sp, QUERY_HINT)
    kind.add_argument("--text", action="append", help="a text query (repeat for a batch)")
    kind.add_argument("--image", action="append", help=image_help)
    kind.add_argument("--features", metavar="FILE", help="feature vectors (.npy, .pt, .jsonl): every row is a query")
    sp.add_argument("--modality", help="the modality of --features (audio, point, ...)")


def read_query_vectors(ctx: Context, space: Any, args: argparse.Namespace) -> tuple[list[str], np.ndarray, str]:
    """(query names, [B, d] vectors of the space, modality) from --text / --image / --features --modality.

    The query rules are :func:`unibind.indexer.modalities.projection.query_vectors`'s; here only what the flags
    add: --features needs --modality (argparse cannot say so), and a --modality that contradicts --text / --image
    is named by its flags."""
    from unibind.indexer.modalities.projection import Projection, load_projection, query_vectors
    from unibind.indexer.readers.features import read_features

    def projection(name: str) -> Projection:
        return load_projection(ctx.db, space, name, ctx.device, home=ctx.home)

    if args.features:
        if not args.modality:
            raise InvalidInput("--features needs --modality NAME (which encoder made them)")
        fs = read_features(args.features, modality=args.modality)  # its dimension is checked against the modality's
        modality, vectors = query_vectors(projection, features=fs.vectors, modality=args.modality,
                                          source=args.features)
        return [f"{args.features}[{i}]" for i in range(len(fs))], vectors, modality
    given = "--text" if args.text else "--image"
    if args.modality and args.modality != given.removeprefix("--"):
        raise InvalidInput(f"--modality {args.modality} does not go with {given}")
    modality, vectors = query_vectors(projection, texts=args.text, images=args.image)
    return list(args.text or args.image), vectors, modality
