"""CLI commands of the recognition side: centres, recognize, eval."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from unibind.retrieval.cli.output import emit_json, format_table

ALL_STRATEGIES = "informative,top,prompt,templates,all"


def _spec(args: argparse.Namespace, strategy: str | None = None):  # type: ignore[no-untyped-def]
    from unibind.retrieval.centres.builder import CentreSpec
    from unibind.retrieval.centres.strategies import DEFAULT_STRATEGY

    corpora = tuple(c.strip() for c in args.corpus.split(",") if c.strip()) if args.corpus else None
    strategy = strategy or getattr(args, "strategy", None) or DEFAULT_STRATEGY
    return CentreSpec(template=args.template, k=args.k_centre, strategy=strategy, corpora=corpora)


def _labels(raw: str | None) -> list[str] | None:
    if raw is None:
        return None
    labels = [x.strip() for x in raw.split(",") if x.strip()]
    if not labels:
        raise ValueError("--labels needs at least one category name (comma-separated)")
    return labels


def cmd_centres(ctx: Any, args: argparse.Namespace) -> int:
    from unibind.indexer.store.contents import find_space
    from unibind.indexer.encoders.factory import build_encoder
    from unibind.retrieval.centres.builder import CentreBuilder, centre_members

    spec = _spec(args)
    with ctx.db.session() as session:
        space = find_space(session, args.encoder)
    if args.action == "build":
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
    if not args.category:
        raise ValueError("centres show needs a CATEGORY")
    centre, members = centre_members(ctx.db, space, spec, args.category)
    if centre is None:
        if args.json:
            emit_json(None)
        else:
            print(f"no centre yet for {args.category!r} with {spec.strategy}, K={spec.k}: run `unibind centres build`")
        return 1
    if args.json:
        emit_json({"category": args.category, "strategy": spec.strategy, "k": spec.k, "template": spec.template,
                   "candidates": centre.n_candidates, "members": [m for m in members]})
    else:
        print(f"{args.category}: {len(members)} members of {centre.n_candidates} descriptions "
              f"({spec.strategy}, K={spec.k}, {spec.template!r})")
        print(format_table(["rank", "score", "description"], [[m["rank"], m["score"], m["text"]] for m in members], max_width=110))
    return 0


def cmd_recognize(ctx: Any, args: argparse.Namespace) -> int:
    from unibind.retrieval.cli.modalities import query_vectors
    from unibind.retrieval.recognition.recognizer import Recognizer

    if not (args.text or args.image or args.features):
        raise ValueError("give at least one --text or --image, or --features FILE --modality NAME")
    from unibind.indexer.store.contents import find_space

    with ctx.db.session() as session:
        space = find_space(session, args.encoder)
    names, vectors, _modality = query_vectors(ctx, space, args)  # bad queries fail before centres are built
    rec = Recognizer(ctx.db, ctx.device, encoder=space.encoder, spec=_spec(args), engine=args.engine, top_m=args.top_m)
    results = rec.recognize_vectors(vectors, k=args.k, labels=_labels(args.labels))
    if args.json:
        emit_json([{"query": t, "labels": r.labels, "scores": r.scores} for t, r in zip(names, results)])
        return 0
    for name, r in zip(names, results):
        print(f"{name}")
        print(format_table(["#", "category", "score"], [[i + 1, lab, s] for i, (lab, s) in enumerate(zip(r.labels, r.scores))]))
        print()
    return 0


def _eval_vectors(ctx: Any, args: argparse.Namespace, queries: list[Any]) -> Any:
    """Query vectors of image or feature queries through the modality's projection (None for text)."""
    import numpy as np

    from unibind.indexer.store.contents import find_space
    from unibind.indexer.readers.features import read_features
    from unibind.indexer.modalities.projection import load_projection

    if args.modality in (None, "text"):
        return None
    with ctx.db.session() as session:
        space = find_space(session, args.encoder)
    projection = load_projection(ctx.db, space, args.modality, ctx.device, home=ctx.home)
    if args.modality == "image":
        return projection.images([q.input for q in queries], progress=True)
    fs = read_features(args.features, dim=projection.input_dim, modality=args.modality)
    return projection.features(fs.vectors[np.asarray([q.input for q in queries], dtype=np.int64)], args.features)


def cmd_eval(ctx: Any, args: argparse.Namespace) -> int:
    from unibind.indexer.encoders.factory import build_encoder
    from unibind.retrieval.evaluation.accuracy import evaluate, read_queries

    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    if not strategies:
        raise ValueError("--strategies needs at least one strategy name (comma-separated)")
    from unibind.retrieval.centres.strategies import get_strategy

    for s in strategies:
        get_strategy(s)
    if args.what == "recognition":
        if not args.queries:
            raise ValueError("eval recognition needs --queries FILE.jsonl")
        kind = "text" if args.modality in (None, "text") else "image" if args.modality == "image" else "features"
        if kind == "features" and not args.features:
            raise ValueError(f"eval recognition --modality {args.modality} needs --features FILE (the rows \"row\" names)")
        if kind != "features" and args.features:
            raise ValueError("--features goes with --modality NAME of a feature modality")
        n_rows = None
        if kind == "features":
            from unibind.indexer.readers.features import read_features

            n_rows = len(read_features(args.features, modality=args.modality))
        queries = read_queries(args.queries, kind=kind, n_rows=n_rows)
        vectors = _eval_vectors(ctx, args, queries)
        rows = evaluate(ctx.db, ctx.device, queries, strategies, base=_spec(args), encoder=args.encoder,
                        engine=args.engine, top_m=args.top_m, source=args.queries, query_vectors=vectors)
        table = [{"strategy": r.strategy, "queries": r.n, "categories": r.categories, "top1": r.top1, "top5": r.top5} for r in rows]
    else:
        from unibind.retrieval.evaluation.dev_benchmark import run_dev_benchmark

        encoder_spec = ctx.default_encoder(args.encoder)
        encoder = build_encoder(encoder_spec, ctx.device)
        rows2 = run_dev_benchmark(ctx.db, ctx.device, ctx.home, encoder, strategies, classes=args.classes,
                                  holdout=args.holdout, seed=args.seed, k=args.k_centre, engine=args.engine,
                                  top_m=args.top_m)
        table = [{"kb": v, "strategy": r.strategy, "queries": r.n, "categories": r.categories, "top1": r.top1, "top5": r.top5}
                 for v, r in rows2]
    if args.json:
        emit_json(table)
    else:
        keys = list(table[0])
        print(format_table(keys, [[f"{row[k] * 100:.2f} %" if k.startswith("top") else row[k] for k in keys] for row in table]))
    return 0


def add_commands(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    from unibind.retrieval.centres.builder import DEFAULT_K
    from unibind.retrieval.centres.strategies import DEFAULT_STRATEGY, STRATEGIES
    from unibind.retrieval.centres.prompts import BASE_PROMPT
    from unibind.retrieval.recognition.recognizer import DEFAULT_ENGINE, DEFAULT_TOP_M

    def top_m_option(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--top-m", type=int, default=DEFAULT_TOP_M, metavar="M",
                        help=f"score a category by the mean of its M best centre members; 1 = the paper's max "
                             f"(default {DEFAULT_TOP_M})")

    def centre_options(sp: argparse.ArgumentParser, strategy: bool = True, k_flags: tuple[str, ...] = ("-K", "--centre-size")) -> None:
        if strategy:
            sp.add_argument("--strategy", default=DEFAULT_STRATEGY, choices=list(STRATEGIES),
                            help=f"centre selection strategy (default {DEFAULT_STRATEGY})")
        sp.add_argument("--template", default=BASE_PROMPT, help=f"base prompt, {{}} = category (default {BASE_PROMPT!r})")
        sp.add_argument(*k_flags, dest="k_centre", type=int, default=DEFAULT_K,
                        help=f"members per centre (default {DEFAULT_K})")
        sp.add_argument("--corpus", help="draw centres from these corpora only (comma-separated; default all)")

    sp = sub.add_parser("centres", help="build the embedding centres, or show one category's centre")
    sp.add_argument("action", choices=["build", "show"])
    sp.add_argument("category", nargs="?")
    centre_options(sp, k_flags=("-k", "-K", "--centre-size"))
    common(sp)
    sp.set_defaults(func=cmd_centres)

    sp = sub.add_parser("recognize", help="top-k categories of a query (a retrieval call over the centres)")
    sp.add_argument("--text", action="append", help="a text query (repeat for a batch)")
    sp.add_argument("--image", action="append", help="an image file (repeat for a batch); through the image head, "
                                                     "or zero-shot when the space's encoder has the image tower")
    sp.add_argument("--features", help="feature vectors (.npy, .pt, .jsonl): every row is a query")
    sp.add_argument("--modality", help="the modality of --features (audio, point, ...)")
    sp.add_argument("--labels", help="restrict the answer to these categories (comma-separated)")
    sp.add_argument("-k", type=int, default=5, help="categories per query (default 5)")
    sp.add_argument("--engine", default=DEFAULT_ENGINE, choices=["faiss", "dense"], help=f"default {DEFAULT_ENGINE}")
    top_m_option(sp)
    centre_options(sp)
    common(sp)
    sp.set_defaults(func=cmd_recognize)

    sp = sub.add_parser("eval", help="recognition accuracy per strategy: on a queries file, or the dev benchmark")
    sp.add_argument("what", choices=["recognition", "dev"])
    sp.add_argument("--queries", help="recognition: JSONL with {\"text\"|\"image\"|\"row\": ..., \"label\": ...} per line")
    sp.add_argument("--modality", help="recognition: the queries' modality: text (default), image, or a feature modality")
    sp.add_argument("--features", help="recognition, feature modality: the file whose rows the queries name")
    sp.add_argument("--strategies", default=ALL_STRATEGIES, help=f"comma-separated (default {ALL_STRATEGIES})")
    sp.add_argument("--engine", default=DEFAULT_ENGINE, choices=["faiss", "dense"])
    top_m_option(sp)
    sp.add_argument("--classes", type=int, help="dev: the first N builtin classes (default all 998)")
    sp.add_argument("--holdout", type=int, default=10, help="dev: held-out LLM descriptions per class (default 10)")
    sp.add_argument("--seed", type=int, default=0, help="dev: seed of the hold-out draw (default 0)")
    centre_options(sp, strategy=False)
    common(sp)
    sp.set_defaults(func=cmd_eval)
