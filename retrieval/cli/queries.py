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


def query_vectors(ctx: Context, space: Any, args: argparse.Namespace) -> tuple[list[str], np.ndarray, str]:
    """(query names, [B, d] vectors of the space, modality) from --text / --image / --features --modality."""
    from unibind.indexer.modalities.projection import Projection, load_projection
    from unibind.indexer.modalities.projection import query_vectors as space_vectors
    from unibind.indexer.readers.features import read_features

    def projection(name: str) -> Projection:
        return load_projection(ctx.db, space, name, ctx.device, home=ctx.home)

    if args.features:
        if not args.modality:
            raise InvalidInput("--features needs --modality NAME (which encoder made them)")
        if args.modality in ("text", "image"):
            raise InvalidInput(f"modality {args.modality!r} does not take feature vectors: give its queries with "
                               f"--{args.modality}")
        chosen = projection(args.modality)  # an unknown modality fails before the file is read
        fs = read_features(args.features, dim=chosen.input_dim, modality=args.modality)
        names = [f"{args.features}[{i}]" for i in range(len(fs))]
        modality, vectors = space_vectors(lambda _name: chosen, features=fs.vectors, modality=args.modality,
                                          source=args.features)
        return names, vectors, modality
    given = "--text" if args.text else "--image"
    if args.modality and args.modality != ("text" if args.text else "image"):
        raise InvalidInput(f"--modality {args.modality} does not go with {given}")
    modality, vectors = space_vectors(projection, texts=args.text, images=args.image)
    return list(args.text or args.image), vectors, modality
