"""Generated knowledge bases side by side, through the real commands: the CuPL descriptions of the builtin corpus
vs. the WaffleCLIP random-words control (`unibind kb generate --llm waffle`), and both together, on the dev
benchmark's held-out descriptions (never on a held-out test set).

    .venv/bin/python bench/kb_compare.py [--classes 200] [--strategies knowledge,top] [--home DIR] [--no-append]

Steps (each a `unibind` command in one data folder, MiniLM):
1. the dev split of the first --classes builtin classes (retrieval/evaluation/dev_benchmark.py: 10 of each class's
   70 CuPL descriptions held out, seed 0, the class name masked as "it"); the other 60 are ingested as ``cupl-dev``;
2. ``unibind kb generate --categories-file classes.txt --llm waffle --ingest --name waffle`` (the defaults: CuPL's
   5 prompts x 10 samples, cleaning, top-ups to 50); its time and request counts are reported;
3. ``unibind eval recognition --queries held-out.jsonl --corpus cupl-dev --corpus waffle --corpus cupl-dev,waffle``.

Prints the table and appends one row per (corpus, strategy) to BENCHMARKS.md ("knowledge bases compared
(bench/kb_compare.py)") unless --no-append. A real LLM's corpus joins the table by generating it into the same
data folder (``--llm openai:... --ingest --name gen``) and adding ``--extra-corpus gen``.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.report import append_rows, command_line, machine, now, text_table  # noqa: E402

log = logging.getLogger("bench.kb_compare")
SECTION = "knowledge bases compared (bench/kb_compare.py)"
COLUMNS = ("date", "machine", "classes", "queries", "corpus", "descriptions", "strategy", "top-1 % [95 % CI]",
           "top-5 % [95 % CI]", "command")


def unibind(home: Path, *args: str) -> str:
    """Run one unibind command in-process; its stdout (a failure raises with its stderr)."""
    from unibind.retrieval.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["--home", str(home), *args])
    if code != 0:
        raise SystemExit(f"unibind {' '.join(args)} failed ({code}): {err.getvalue().strip()}")
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--classes", type=int, default=200, help="the first N builtin classes (default 200)")
    p.add_argument("--strategies", default="knowledge,top", help="centre strategies (default knowledge,top)")
    p.add_argument("--home", default="unibind-data/kb-compare", help="data folder (default unibind-data/kb-compare)")
    p.add_argument("--extra-corpus", action="append", default=[], help="another corpus of the folder to compare")
    p.add_argument("--no-append", action="store_true")
    args = p.parse_args(argv)

    from unibind.retrieval.evaluation.dev_benchmark import make_split

    home = Path(args.home)
    home.mkdir(parents=True, exist_ok=True)
    split = make_split(classes=args.classes)
    corpus, cats, queries = home / "cupl-dev.jsonl", home / "classes.txt", home / "held-out.jsonl"
    corpus.write_text("".join(json.dumps({"category": c, "text": t}) + "\n" for c, ts in split.descriptions.items()
                              for t in ts), encoding="utf-8")
    cats.write_text("".join(c + "\n" for c in split.descriptions), encoding="utf-8")
    queries.write_text("".join(json.dumps({"text": q.text, "label": q.label}) + "\n" for q in split.queries),
                       encoding="utf-8")
    existing = {r["name"] for r in json.loads(unibind(home, "corpus", "list", "--json"))} if (home / "unibind.db").exists() else set()
    if "cupl-dev" not in existing:
        unibind(home, "ingest", str(corpus), "--name", "cupl-dev", "--encoder", "minilm", "--source", "CuPL (builtin), dev split")
    t0 = time.perf_counter()
    gen = json.loads(unibind(home, "kb", "generate", "--categories-file", str(cats), "--llm", "waffle", "--encoder", "minilm",
                             "--ingest", "--name", "waffle", "--replace", "--json"))
    log.info("kb generate --llm waffle: %d descriptions, %d requests (%d cached) in %.1f s", gen["records"], gen["requests"],
             gen["cached"], time.perf_counter() - t0)
    selections = ["cupl-dev", "waffle", "cupl-dev,waffle", *args.extra_corpus]
    argv_eval = ["eval", "recognition", "--queries", str(queries), "--strategies", args.strategies, "--encoder", "minilm", "--json"]
    for s in selections:
        argv_eval += ["--corpus", s]
    table = json.loads(unibind(home, *argv_eval))
    sizes = {r["name"]: r["descriptions"] for r in json.loads(unibind(home, "corpus", "list", "--json"))}
    date, host, cmd = now(), machine(), f"`{command_line('bench/kb_compare.py')}`"
    rows = []
    for r in table:
        n = sum(sizes.get(c, 0) for c in r["corpus"].split(","))
        rows.append([r["corpus"], n, r["strategy"] + (" (default)" if r["default"] else ""),
                     f"{r['top1'] * 100:.2f} [{r['top1_ci'][0] * 100:.2f}, {r['top1_ci'][1] * 100:.2f}]",
                     f"{r['top5'] * 100:.2f} [{r['top5_ci'][0] * 100:.2f}, {r['top5_ci'][1] * 100:.2f}]"])
    print(f"\nknowledge bases compared, {date}, {host}: {args.classes} classes, {len(split.queries)} held-out queries, "
          f"MiniLM; waffle: {gen['records']} descriptions from {gen['requests']} requests ({gen['cached']} cached)")
    print(text_table(("corpus", "descriptions", "strategy", "top-1 % [95 % CI]", "top-5 % [95 % CI]"), rows))
    if not args.no_append:
        append_rows(SECTION, COLUMNS, [[date, host, args.classes, len(split.queries), *row, cmd] for row in rows])
    return 0


if __name__ == "__main__":
    sys.exit(main())
