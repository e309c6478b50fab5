"""``unibind plot accuracy|confusions|centre``: PNG pictures that show why. Accuracy per strategy with its bootstrap
95 % intervals and the most confused category pairs, both from the JSON of ``unibind eval ... --json`` (a file, or
``-`` for standard input); a category's centre in 2-D among its nearest neighbours' centres, from the store.

Every input is checked before anything is drawn; the PNG is written atomically, so a mistake writes nothing."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from unibind.retrieval.cli.centres import add_centre_options, centre_spec
from unibind.retrieval.cli.context import Context
from unibind.retrieval.cli.output import emit_json
from unibind.retrieval.cli.parser import add_group, add_leaf, add_top_option, common

log = logging.getLogger("unibind.cli")

DEFAULT_CONFUSIONS = 20


PLURAL = {"kb": "knowledge bases", "corpus": "corpora"}  # what an eval's rows are grouped by


def _written(args: argparse.Namespace, what: str, data: bytes) -> int:
    from unibind.retrieval.plots.files import write_png

    width, height = write_png(args.out, data)
    if args.json:
        emit_json({"out": str(args.out), "width": width, "height": height, "bytes": len(data), "shows": what})
    else:
        print(f"wrote {args.out} ({width}x{height}): {what}")
    return 0


def cmd_accuracy(ctx: Context, args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from unibind.retrieval.plots.eval_results import read_results
    from unibind.retrieval.plots.figures import accuracy_png
    from unibind.retrieval.plots.files import check_out

    check_out(args.out)
    _, rows = read_results(args.source)
    data = accuracy_png([asdict(r) for r in rows])
    kbs = {r.kb for r in rows} - {None}
    return _written(args, f"top-1 / top-5 of {len({r.strategy for r in rows})} strategies"
                          f"{f' on {len(kbs)} {PLURAL[rows[0].group]}' if kbs else ''} with 95 % intervals", data)


def cmd_confusions(ctx: Context, args: argparse.Namespace) -> int:
    from unibind.retrieval.plots.eval_results import pick_row, read_results
    from unibind.retrieval.plots.figures import confusions_png
    from unibind.retrieval.plots.files import check_out
    from unibind.schema.errors import InvalidInput

    check_out(args.out)
    if args.top < 1:
        raise InvalidInput(f"--top must be >= 1, got {args.top}")
    label, rows = read_results(args.source)
    row = pick_row(rows, label, strategy=args.strategy, kb=args.kb)
    if row.confusions is None:
        raise InvalidInput(f"{label}: the row of {row.name} has no field 'confusions' (written by an older unibind): "
                           f"run the eval again with --json")
    pairs = row.confusions[: args.top]
    wrong = round((1 - row.top1) * row.queries)
    title = (f"{row.name}{' (default)' if row.default else ''}: the {len(pairs)} most confused pairs, "
             f"true → predicted top-1\n{wrong} of {row.queries} queries have a wrong top-1 "
             f"(top-1 {row.top1 * 100:.1f} %)")
    return _written(args, f"the {len(pairs)} most confused pairs of {row.name}", confusions_png(pairs, title))


def cmd_centre(ctx: Context, args: argparse.Namespace) -> int:
    from unibind.indexer.encoders.factory import build_encoder
    from unibind.retrieval.plots.centre_view import centre_png, gather
    from unibind.retrieval.plots.neighbours import check_neighbours
    from unibind.retrieval.plots.files import check_out
    from unibind.retrieval.plots.projection import METHODS
    from unibind.schema.errors import InvalidInput

    check_out(args.out)
    check_neighbours(args.neighbours)
    if args.method not in METHODS:  # argparse checks the choices; a caller of cmd_centre may not
        raise InvalidInput(f"unknown projection method {args.method!r}; methods: {', '.join(METHODS)}")
    spec = centre_spec(args)
    space = ctx.space()
    encoder = build_encoder(space.encoder, ctx.device)
    # missing centres are built first, as `unibind recognize` builds them; an unknown category fails before that
    view = gather(ctx.db, space, spec, args.category, encoder, neighbours=args.neighbours, device=ctx.device)
    return _written(args, f"{args.category}'s centre ({spec.strategy}, K={spec.k}) and its {len(view.neighbours)} "
                          f"nearest centres in 2-D ({args.method})", centre_png(view, args.method))


def _source(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--from", dest="source", required=True, metavar="EVAL.json",
                    help="the JSON that `unibind eval recognition|dev|zero-shot --json` printed; - reads standard input")


def _out(sp: argparse.ArgumentParser, default: str) -> None:
    sp.add_argument("--out", default=default, metavar="FILE.png", help=f"the PNG to write (default {default})")


def add_commands(sub: Any) -> None:
    group = add_group(sub, "plot", "PNG pictures: accuracy with its intervals, the most confused pairs, a centre in 2-D")
    sp = add_leaf(group, "accuracy", "top-1 / top-5 per strategy with their bootstrap intervals, from eval JSON",
                  cmd_accuracy, [
                      "unibind plot accuracy --from eval.json",
                      "unibind plot accuracy --from - --out dev.png",
                  ])
    _source(sp)
    _out(sp, "accuracy.png")
    sp.add_argument("--json", action="store_true", help="machine-readable output")
    sp = add_leaf(group, "confusions", "the most confused (true → predicted top-1) category pairs of an eval",
                  cmd_confusions, [
                      "unibind plot confusions --from eval.json",
                      "unibind plot confusions --from dev.json --kb all --strategy top --top 10 --out top.png",
                  ])
    _source(sp)
    _out(sp, "confusions.png")
    add_top_option(sp, DEFAULT_CONFUSIONS, "pairs to show (the eval keeps the 50 largest)")
    sp.add_argument("--strategy", help="whose row (default: the default rule's, else the first)")
    sp.add_argument("--kb", help="dev benchmark JSON: the knowledge-base variant; eval recognition JSON of several "
                                 "--corpus: the corpus (default: the first)")
    sp.add_argument("--json", action="store_true", help="machine-readable output")
    sp = add_leaf(group, "centre", "a category's centre, its other descriptions, its base prompt and the nearest "
                                   "centres, in 2-D", cmd_centre, [
                      'unibind plot centre "tench"',
                      'unibind plot centre "tench" --strategy top --centre-size 20 --neighbours 3 --out tench.png',
                  ])
    from unibind.retrieval.plots.neighbours import DEFAULT_NEIGHBOURS, MAX_NEIGHBOURS  # light: NumPy only
    from unibind.retrieval.plots.projection import METHODS

    sp.add_argument("category", metavar="CATEGORY", help="the category")
    _out(sp, "centre.png")
    sp.add_argument("--neighbours", type=int, default=DEFAULT_NEIGHBOURS, metavar="N",
                    help=f"the nearest other centres to draw, 0 to {MAX_NEIGHBOURS} (default {DEFAULT_NEIGHBOURS}; "
                         f"nearest: cosine of the centre means)")
    sp.add_argument("--method", default=METHODS[0], choices=list(METHODS), help="the 2-D projection (default pca)")
    add_centre_options(sp)
    common(sp)
