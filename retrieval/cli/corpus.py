"""``unibind corpus list|show|delete`` and ``unibind categories``: what the knowledge base holds."""

from __future__ import annotations

import argparse
from typing import Any

from unibind.retrieval.cli.context import Context
from unibind.retrieval.cli.output import emit_json, format_table
from unibind.retrieval.cli.parser import add_group, add_leaf, common


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


def cmd_list(ctx: Context, args: argparse.Namespace) -> int:
    from unibind.indexer.store.contents import find_space, list_corpora

    with ctx.db.session() as session:
        space = find_space(session, ctx.encoder) if ctx.encoder else None
        rows = [_corpus_row(c) for c in list_corpora(session) if space is None or c.space_id == space.id]
    if args.json:
        emit_json(rows)
    elif not rows:
        print("no corpora yet: unibind ingest FILE --name N --encoder SPEC")
    else:
        keys = ["name", "space", "status", "descriptions", "categories", "duplicates", "created_at"]
        print(format_table(keys, [[r[k] for k in keys] for r in rows]))
    return 0


def cmd_show(ctx: Context, args: argparse.Namespace) -> int:
    from unibind.indexer.store.contents import find_corpus, find_space, list_categories

    with ctx.db.session() as session:
        space = find_space(session, ctx.encoder) if ctx.encoder else None
        corpus = find_corpus(session, args.name, space)
        row = _corpus_row(corpus)
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


def cmd_delete(ctx: Context, args: argparse.Namespace) -> int:
    from unibind.indexer.store.contents import find_corpus, find_space
    from unibind.indexer.store.removal import delete_corpus

    with ctx.db.session() as session:
        space = find_space(session, ctx.encoder) if ctx.encoder else None
        corpus_id = find_corpus(session, args.name, space).id
    n = delete_corpus(ctx.db, corpus_id, ctx.home, ctx.device)
    if args.json:
        emit_json({"deleted": args.name, "descriptions": n})
    else:
        print(f"deleted corpus {args.name!r} ({n} descriptions)")
    return 0


def cmd_categories(ctx: Context, args: argparse.Namespace) -> int:
    from unibind.indexer.store.contents import find_corpus, find_space, list_categories

    with ctx.db.session() as session:
        space = find_space(session, ctx.encoder) if ctx.encoder else None
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


def add_commands(sub: Any) -> None:
    group = add_group(sub, "corpus", "list, show or delete corpora")
    sp = add_leaf(group, "list", "every corpus: name, space, status, counts", cmd_list,
                  ["unibind corpus list", "unibind corpus list --encoder minilm --json"])
    common(sp, "only the corpora of this encoder's space (default: $UNIBIND_ENCODER; all spaces)")
    sp = add_leaf(group, "show", "a corpus's details and per-category counts", cmd_show,
                  ["unibind corpus show cupl-gpt3", "unibind corpus show cupl-gpt3 --limit 100 --json"])
    sp.add_argument("name", metavar="NAME", help="the corpus")
    sp.add_argument("--limit", type=int, default=20, help="how many categories to list (default 20)")
    common(sp)
    sp = add_leaf(group, "delete", "delete a corpus, its descriptions and their vectors", cmd_delete,
                  ["unibind corpus delete cupl-gpt3"])
    sp.add_argument("name", metavar="NAME", help="the corpus")
    common(sp)

    sp = add_leaf(sub, "categories", "list categories with their description counts", cmd_categories,
                  ["unibind categories", "unibind categories --corpus cupl-imagenet --json"])
    sp.add_argument("--corpus", help="only this corpus")
    common(sp)
