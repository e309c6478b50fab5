"""The recognition dev benchmark: top-1 / top-5 of every centre strategy on both knowledge-base variants.

    .venv/bin/python bench/dev_recognition.py [--home DIR] [--classes N] [--holdout 10] [--seed 0]
                                              [--strategies informative,top,prompt,templates,all] [--no-append]

Queries are held-out CuPL LLM descriptions of the builtin corpus with the class name replaced by "it"
(retrieval/evaluation/dev_benchmark.py); they are never ingested. The two corpora of the split are ingested once
into the store under --home (default ./unibind-data/dev) and reused by later runs. Prints the table
and appends dated rows to BENCHMARKS.md (section "recognition dev benchmark (bench/dev_recognition.py)").
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.report import append_rows, command_line, machine, now, text_table  # noqa: E402

SECTION = "recognition dev benchmark (bench/dev_recognition.py)"
COLUMNS = ("date", "machine", "encoder", "split", "knowledge base", "strategy", "queries", "top-1 %", "top-5 %", "command")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--home", default="unibind-data/dev", help="store for the dev corpora (default unibind-data/dev)")
    p.add_argument("--encoder", default="minilm")
    p.add_argument("--classes", type=int, default=None, help="first N builtin classes (default all 998)")
    p.add_argument("--holdout", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--strategies", default="informative,top,prompt,templates,all")
    p.add_argument("--engine", default="faiss", choices=["faiss", "dense"])
    p.add_argument("--top-m", type=int, default=1, help="score a category by the mean of its m best members (1: max)")
    p.add_argument("--no-append", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("alembic", "faiss.loader", "sentence_transformers", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    from unibind.indexer.runtime.device import select_device
    from unibind.indexer.encoders.factory import build_encoder
    from unibind.retrieval.evaluation.dev_benchmark import make_split, run_dev_benchmark
    from unibind.schema import Database
    from unibind.schema.settings import Settings

    home = Path(args.home).resolve()
    db = Database(f"sqlite:///{home / 'unibind.db'}")
    device = select_device(Settings.resolve().device)  # $UNIBIND_DEVICE, else auto
    encoder = build_encoder(args.encoder, device)
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    t0 = time.perf_counter()
    rows = run_dev_benchmark(db, device, home, encoder, strategies, classes=args.classes, holdout=args.holdout,
                             seed=args.seed, engine=args.engine, top_m=args.top_m)
    tag = make_split(args.classes, args.holdout, args.seed).tag
    scoring = "" if args.top_m == 1 else f", mean of top {args.top_m}"
    table = [(kb, r.strategy + scoring, r.n, f"{100 * r.top1:.2f}", f"{100 * r.top5:.2f}") for kb, r in rows]
    print(f"dev benchmark {tag}, {encoder.spec}, {machine()}, {time.perf_counter() - t0:.0f} s")
    print(text_table(["knowledge base", "strategy", "queries", "top-1 %", "top-5 %"], table))
    if not args.no_append:
        cmd = command_line("bench/dev_recognition.py")
        append_rows(SECTION, COLUMNS, [(now(), machine(), encoder.spec, tag, *row, cmd) for row in table])
    return 0


if __name__ == "__main__":
    sys.exit(main())
