"""``unibind eval recognition|dev`` (and ``zero-shot``, in ``zero_shot``): recognition accuracy per centre strategy, each with its bootstrap 95 % interval;
the default rule is listed first and marked ``"default": true`` in ``--json``."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from unibind.retrieval.cli.centres import add_centre_options, add_engine_option, add_top_m_option, centre_spec
from unibind.retrieval.cli.context import Context
from unibind.retrieval.cli.output import emit_json, format_table
from unibind.retrieval.cli.parser import add_group, add_leaf, common
from unibind.schema.errors import InvalidInput

log = logging.getLogger(__name__)

ALL_STRATEGIES = "knowledge,informative,top,prompt,templates,all"
DEV_STORE = "dev-benchmark"  # the dev benchmark's own store, a folder of the data folder


def _strategies(raw: str) -> list[str]:
    from unibind.retrieval.centres.strategies import get_strategy

    strategies = [s.strip() for s in raw.split(",") if s.strip()]
    if not strategies:
        raise InvalidInput("--strategies needs at least one strategy name (comma-separated)")
    for s in strategies:
        get_strategy(s)
    return strategies


def _eval_vectors(ctx: Context, args: argparse.Namespace, queries: list[Any]) -> Any:
    """Query vectors of image or feature queries through the modality's projection (None for text)."""
    import numpy as np

    from unibind.indexer.modalities.projection import load_projection
    from unibind.indexer.readers.features import read_features

    if args.modality in (None, "text"):
        return None
    projection = load_projection(ctx.db, ctx.space(), args.modality, ctx.device, home=ctx.home)
    if args.modality == "image":
        return projection.images([q.input for q in queries], progress=True)
    fs = read_features(args.features, dim=projection.input_dim, modality=args.modality)
    return projection.features(fs.vectors[np.asarray([q.input for q in queries], dtype=np.int64)], args.features)


def _row(r: Any, top_m: int, centring: bool, **extra: Any) -> dict[str, Any]:
    """One strategy's result: ``default`` marks the rule recognition uses by default (its strategy and top-m);
    ``confusions`` lists its most confused (label, predicted top-1, count) pairs, largest count first (``--json``
    only; ``unibind plot confusions`` draws them)."""
    from unibind.retrieval.centres.strategies import DEFAULT_STRATEGY
    from unibind.retrieval.recognition.engine import DEFAULT_CENTRING, DEFAULT_TOP_M

    return {**extra, "strategy": r.strategy, "default": r.strategy == DEFAULT_STRATEGY and top_m == DEFAULT_TOP_M and centring == DEFAULT_CENTRING,
            "top_m": top_m, "centring": centring,
            "queries": r.n, "categories": r.categories, "top1": r.top1, "top1_ci": list(r.top1_ci),
            "top5": r.top5, "top5_ci": list(r.top5_ci),
            "confusions": [{"label": y, "predicted": p, "count": n} for y, p, n in r.confusions]}


def _default_first(table: list[dict[str, Any]], group: str | None = None) -> list[dict[str, Any]]:
    """The default rule's row first (within each ``group``, e.g. knowledge-base variant, kept in order)."""
    groups = list(dict.fromkeys(row.get(group) for row in table)) if group else [None]
    return sorted(table, key=lambda row: (groups.index(row.get(group)) if group else 0, not row["default"]))


def _print(table: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        emit_json(table)
        return
    keys = [k for k in table[0] if k not in ("default", "confusions", "top_m", "centring") and not k.endswith("_ci")]

    def cell(row: dict[str, Any], k: str) -> Any:
        if k == "strategy" and row["default"]:
            return f"{row[k]} (default)"
        if k in ("top1", "top5"):
            lo, hi = row[f"{k}_ci"]
            return f"{row[k] * 100:.2f} % [{lo * 100:.2f}, {hi * 100:.2f}]"
        return row[k]

    print(format_table(keys, [[cell(row, k) for k in keys] for row in table]))
    from unibind.retrieval.evaluation.intervals import LEVEL, RESAMPLES

    m, centred = table[0]["top_m"], table[0]["centring"]
    print(f"category score: {'the best member' if m == 1 else f'the mean of the {m} best members'}, "
          f"{'in the centred space' if centred else 'raw cosines'}")
    print(f"[lower, upper]: bootstrap {LEVEL * 100:.0f} % interval over the queries ({RESAMPLES:,} resamples, seeded)")


def cmd_recognition(ctx: Context, args: argparse.Namespace) -> int:
    from unibind.retrieval.evaluation.accuracy import evaluate, read_queries

    strategies = _strategies(args.strategies)
    kind = "text" if args.modality in (None, "text") else "image" if args.modality == "image" else "features"
    if kind == "features" and not args.features:
        raise InvalidInput(f"eval recognition --modality {args.modality} needs --features FILE (the rows \"row\" names)")
    if kind != "features" and args.features:
        raise InvalidInput("--features goes with --modality NAME of a feature modality")
    n_rows = None
    if kind == "features":
        from unibind.indexer.readers.features import read_features

        n_rows = len(read_features(args.features, modality=args.modality))
    queries = read_queries(args.queries, kind=kind, n_rows=n_rows)
    vectors = _eval_vectors(ctx, args, queries)
    selections = args.corpus or [None]  # one table row per (corpus selection, strategy)
    encoder_obj = None
    if vectors is None and len(selections) > 1:  # text queries: encoded once for every selection
        from unibind.indexer.encoders.factory import build_encoder

        encoder_obj = build_encoder(ctx.space().encoder, ctx.device)
        vectors = encoder_obj.encode_text([q.text for q in queries])
    table = []
    for selection in selections:
        spec = centre_spec(argparse.Namespace(**{**vars(args), "corpus": selection}))
        rows = evaluate(ctx.db, ctx.device, queries, strategies, base=spec, encoder=ctx.encoder, engine=args.engine,
                        top_m=args.top_m, centring=args.centring, source=args.queries, query_vectors=vectors,
                        encoder_obj=encoder_obj)
        extra = {"corpus": ",".join(spec.corpora)} if len(selections) > 1 and spec.corpora else \
            {"corpus": "all"} if len(selections) > 1 else {}
        table += [_row(r, args.top_m, args.centring, **extra) for r in rows]
    _print(_default_first(table, "corpus" if len(selections) > 1 else None), args.json)
    return 0


def cmd_dev(ctx: Context, args: argparse.Namespace) -> int:
    from unibind.indexer.encoders.factory import build_encoder
    from unibind.retrieval.evaluation.dev_benchmark import run_dev_benchmark
    from unibind.schema import Database

    strategies = _strategies(args.strategies)
    encoder = build_encoder(ctx.default_encoder(), ctx.device)
    # its own store beside the user's: the dev corpora never join the user's centres or answers, and a second
    # run reuses them
    home = Path(ctx.home) / DEV_STORE
    home.mkdir(parents=True, exist_ok=True)
    log.info("the dev benchmark's corpora live in their own store, %s", home)
    db = Database(f"sqlite:///{home / 'unibind.db'}")
    try:
        rows = run_dev_benchmark(db, ctx.device, home, encoder, strategies, classes=args.classes,
                                 holdout=args.holdout, seed=args.seed, k=args.centre_size, engine=args.engine,
                                 top_m=args.top_m, centring=args.centring)
    finally:
        db.dispose()
    _print(_default_first([_row(r, args.top_m, args.centring, kb=v) for v, r in rows], "kb"), args.json)
    return 0


def _shared(sp: argparse.ArgumentParser, compare_corpora: bool = False) -> None:
    sp.add_argument("--strategies", default=ALL_STRATEGIES, help=f"comma-separated (default {ALL_STRATEGIES})")
    add_engine_option(sp)
    add_top_m_option(sp)
    add_centre_options(sp, strategy=False, compare_corpora=compare_corpora)


def add_commands(sub: Any) -> None:
    group = add_group(sub, "eval", "recognition accuracy per strategy: on a queries file, or the dev benchmark")
    sp = add_leaf(group, "recognition", "top-1 / top-5 per strategy on a labelled queries file", cmd_recognition, [
        "unibind eval recognition --queries queries.jsonl",
        "unibind eval recognition --queries q.jsonl --modality image --strategies informative,top",
        "unibind eval recognition --queries q.jsonl --modality audio --features clips.npy",
        "unibind eval recognition --queries q.jsonl --corpus gpt-cupl --corpus cupl-imagenet --corpus waffle",
    ])
    sp.add_argument("--queries", required=True, metavar="FILE.jsonl",
                    help="JSONL with {\"text\"|\"image\"|\"row\": ..., \"label\": ...} per line")
    sp.add_argument("--modality", help="the queries' modality: text (default), image, or a feature modality")
    sp.add_argument("--features", help="feature modality: the file whose rows the queries name")
    _shared(sp, compare_corpora=True)
    common(sp)
    sp = add_leaf(group, "dev", "the dev benchmark: held-out LLM descriptions of the builtin corpus as queries",
                  cmd_dev, ["unibind eval dev --encoder minilm", "unibind eval dev --encoder minilm --classes 100 --json"],
                  description="The dev benchmark: held-out LLM descriptions of the builtin corpus as queries. Its "
                              f"corpora live in their own store, $UNIBIND_HOME/{DEV_STORE}, never in yours (delete "
                              "the folder to free the space).")
    sp.add_argument("--classes", type=int, help="the first N builtin classes (default all 998)")
    sp.add_argument("--holdout", type=int, default=10, help="held-out LLM descriptions per class (default 10)")
    sp.add_argument("--seed", type=int, default=0, help="seed of the hold-out draw (default 0)")
    _shared(sp)
    common(sp, "encoder spec (default: $UNIBIND_ENCODER, the only space's encoder, or open_clip ViT-B-32)")
    from unibind.retrieval.cli import zero_shot

    zero_shot.add_command(group)
