"""``unibind search``: cross-modal search of a gallery or the descriptions; ``search-descriptions`` (deprecated)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from unibind.retrieval.cli.context import Context
from unibind.retrieval.cli.output import emit_json, format_table
from unibind.retrieval.cli.parser import add_leaf, add_top_option, common
from unibind.retrieval.cli.queries import add_query_options, read_query_vectors


def cmd_search(ctx: Context, args: argparse.Namespace) -> int:
    from unibind.retrieval.search.cross_modal import CrossModalSearch, SearchFilter, parse_where

    space = ctx.space()
    flt = SearchFilter(label=args.label, where=parse_where(args.where))
    search = CrossModalSearch(ctx.db, ctx.home, ctx.device, space, args.target, nprobe=args.nprobe,
                              ef_search=args.ef_search)
    names, vectors, modality = read_query_vectors(ctx, space, args)
    results = search.search(vectors, k=args.top, flt=flt)
    if args.json:
        emit_json([{"query": q, "modality": modality, "target": args.target, "hits": [h.__dict__ for h in hits]}
                   for q, hits in zip(names, results)])
        return 0
    for q, hits in zip(names, results):
        print(f"{q}  ({modality} → {args.target})")
        if not hits:
            print("  no results")
            continue
        what = "text" if args.target == "descriptions" else "uri"
        print(format_table(["#", "score", "label", what, "meta"],
                           [[i + 1, h.score, h.label, getattr(h, what), json.dumps(h.meta) if h.meta else ""]
                            for i, h in enumerate(hits)], max_width=80))
        print()
    return 0


def cmd_search_descriptions(ctx: Context, args: argparse.Namespace) -> int:
    from unibind.indexer.modalities.projection import load_projection, query_vectors
    from unibind.retrieval.search.cross_modal import DESCRIPTIONS, CrossModalSearch

    space = ctx.space()
    search = CrossModalSearch(ctx.db, ctx.home, ctx.device, space, DESCRIPTIONS)
    _, vectors = query_vectors(lambda name: load_projection(ctx.db, space, name, ctx.device, home=ctx.home),
                               texts=[args.text])
    rows = [{"id": h.id, "score": h.score, "text": h.text, "category": h.label, "corpus": (h.meta or {}).get("corpus")}
            for h in search.search(vectors, k=args.top)[0]]  # the output it always had
    if args.json:
        emit_json(rows)
    else:
        print(format_table(["#", "score", "category", "corpus", "description"],
                           [[i + 1, r["score"], r["category"], r["corpus"], r["text"]] for i, r in enumerate(rows)],
                           max_width=100))
    return 0


def add_commands(sub: Any) -> None:
    sp = add_leaf(sub, "search", "cross-modal search: a text, image or feature query against a gallery or the "
                                 "descriptions", cmd_search, [
        'unibind search --text "a dog barking" --target audio -k 10',
        "unibind search --image cat.jpg --target audio --label cat --where split=test --where year=2024",
        "unibind search --features clips.npy --modality audio --target image -k 5",
        'unibind search --text "a freshwater fish with olive-green scales" --target descriptions -k 10',
    ])
    add_query_options(sp)
    sp.add_argument("--target", required=True, help="a gallery modality (image, audio, ...) or 'descriptions'")
    add_top_option(sp, 10, "results per query")
    sp.add_argument("--label", help="only items with this label (descriptions: this category)")
    sp.add_argument("--where", action="append", metavar="KEY=VALUE",
                    help="only items whose metadata field KEY equals VALUE (repeat: all must hold)")
    sp.add_argument("--nprobe", type=int, help="IVF indexes: lists probed per query (default 8)")
    sp.add_argument("--ef-search", type=int, help="HNSW indexes: candidate list size (default FAISS's 16)")
    common(sp)

    # deprecated (unlisted): `unibind search --text TEXT --target descriptions` does the same
    sp = add_leaf(sub, "search-descriptions", None, cmd_search_descriptions,
                  ['unibind search-descriptions "a freshwater fish with olive-green scales" -k 10'],
                  description="deprecated: use `unibind search --text TEXT --target descriptions`")
    sp.add_argument("text")
    add_top_option(sp, 10, "how many")
    common(sp)
