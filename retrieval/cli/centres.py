"""``unibind centres build|show``, and the centre options ``recognize`` and ``eval`` share."""

from __future__ import annotations

import argparse
from typing import Any

from unibind.retrieval.cli.context import Context
from unibind.retrieval.cli.output import emit_json, format_table
from unibind.retrieval.cli.parser import add_group, add_leaf, common, deprecated_option


def centre_spec(args: argparse.Namespace, strategy: str | None = None) -> Any:
    """The CentreSpec the centre options name."""
    from unibind.retrieval.centres.builder import CentreSpec
    from unibind.retrieval.centres.strategies import DEFAULT_STRATEGY

    corpora = tuple(c.strip() for c in args.corpus.split(",") if c.strip()) if args.corpus else None
    strategy = strategy or getattr(args, "strategy", None) or DEFAULT_STRATEGY
    return CentreSpec(template=args.template, k=args.centre_size, strategy=strategy, corpora=corpora)


def add_centre_options(sp: argparse.ArgumentParser, strategy: bool = True, compare_corpora: bool = False) -> None:
    """--strategy, --template, -K/--centre-size, --corpus: which centres (``compare_corpora``: --corpus may be
    repeated, one selection per repeat)."""
    from unibind.retrieval.centres.strategies import DEFAULT_K
    from unibind.retrieval.centres.prompts import BASE_PROMPT
    from unibind.retrieval.centres.strategies import DEFAULT_STRATEGY, STRATEGIES

    if strategy:
        sp.add_argument("--strategy", default=DEFAULT_STRATEGY, choices=list(STRATEGIES),
                        help=f"centre selection strategy (default {DEFAULT_STRATEGY})")
    sp.add_argument("--template", default=BASE_PROMPT, help=f"base prompt, {{}} = category (default {BASE_PROMPT!r})")
    sp.add_argument("-K", "--centre-size", dest="centre_size", type=int, default=DEFAULT_K, metavar="K",
                    help=f"descriptions per centre (default {DEFAULT_K})")
    if compare_corpora:
        sp.add_argument("--corpus", action="append", metavar="NAMES",
                        help="draw centres from these corpora only (comma-separated; default all); repeat to compare "
                             "selections in one table, e.g. --corpus gpt --corpus cupl-imagenet --corpus waffle")
    else:
        sp.add_argument("--corpus", help="draw centres from these corpora only (comma-separated; default all)")


def add_engine_option(sp: argparse.ArgumentParser) -> None:
    from unibind.retrieval.recognition.engine import AUTO_DENSE_BELOW, DEFAULT_ENGINE, ENGINE_CHOICES

    sp.add_argument("--engine", default=DEFAULT_ENGINE, choices=list(ENGINE_CHOICES),
                    help=f"default {DEFAULT_ENGINE}: dense below {AUTO_DENSE_BELOW} queries, faiss from there on")


def add_top_m_option(sp: argparse.ArgumentParser) -> None:
    from unibind.retrieval.recognition.engine import DEFAULT_CENTRING, DEFAULT_TOP_M

    sp.add_argument("--top-m", type=int, default=DEFAULT_TOP_M, metavar="M",
                    help=f"score a category by the mean of its M best centre members; 1 = the paper's max "
                         f"(default {DEFAULT_TOP_M})")
    sp.add_argument("--centring", action=argparse.BooleanOptionalAction, default=DEFAULT_CENTRING,
                    help="score in the space centred on the centre members' mean direction (default); "
                         "--no-centring: the paper's raw cosines")


def cmd_build(ctx: Context, args: argparse.Namespace) -> int:
    from unibind.indexer.encoders.factory import build_encoder
    from unibind.retrieval.centres.builder import CentreBuilder

    spec = centre_spec(args)
    space = ctx.space()
    report = CentreBuilder(ctx.db, space, build_encoder(space.encoder, ctx.device)).build(spec, progress=True)
    if args.json:
        emit_json(report.__dict__)
    else:
        print(f"centres ({spec.strategy}, K={spec.k}, {spec.template!r}): {report.categories} categories, "
              f"{report.built} built, {report.reused} reused")
        few = [n for n in report.notices if "fewer than K" in n]
        if few:
            print(f"{len(few)} categories have fewer than K descriptions: all of theirs are kept")
    return 0


def cmd_show(ctx: Context, args: argparse.Namespace) -> int:
    from unibind.retrieval.centres.builder import centre_members

    spec = centre_spec(args)
    centre, members = centre_members(ctx.db, ctx.space(), spec, args.category)  # not built: CentreNotBuilt (exit 3)
    if args.json:
        emit_json({"category": args.category, "strategy": spec.strategy, "k": spec.k, "template": spec.template,
                   "candidates": centre.n_candidates, "members": [m for m in members]})
    else:
        print(f"{args.category}: {len(members)} members of {centre.n_candidates} descriptions "
              f"({spec.strategy}, K={spec.k}, {spec.template!r})")
        print(format_table(["rank", "score", "description"], [[m["rank"], m["score"], m["text"]] for m in members],
                           max_width=110))
    return 0


def _centre_leaf_options(sp: argparse.ArgumentParser) -> None:
    add_centre_options(sp)
    deprecated_option(sp, "-k", "--centre-size", dest="centre_size", type=int)  # -k is the number of answers elsewhere
    common(sp)


def add_commands(sub: Any) -> None:
    group = add_group(sub, "centres", "build the embedding centres, or show one category's centre")
    sp = add_leaf(group, "build", "build the centres of every category (reuses those whose corpora did not change)",
                  cmd_build, ["unibind centres build",
                              'unibind centres build --strategy top --centre-size 50 --template "A photo of a {}."'])
    _centre_leaf_options(sp)
    sp = add_leaf(group, "show", "one category's centre: its members with rank and cosine to the base prompt",
                  cmd_show, ['unibind centres show "tench"', 'unibind centres show "tench" --strategy top -K 50 --json'])
    sp.add_argument("category", metavar="CATEGORY", help="the category")
    _centre_leaf_options(sp)
