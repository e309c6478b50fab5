"""Beyond the paper, measured on the dev benchmark: how a category's members' scores combine, and a
correction for hub categories that score high for every query.

    .venv/bin/python bench/scoring_variants.py [--home unibind-data/dev] [--no-append]

Needs the dev corpora (run bench/dev_recognition.py first with the same --home). Uses the stored
``informative`` centres (K=50) of both knowledge-base variants and the dev queries; exact NumPy scoring.
Variants: ``max`` (the paper's S = max over members), ``mean-top-m`` (mean of a category's m best
member scores), ``hub-beta`` (S - beta * r_C, r_C the mean S of 5,000 centre members of *other*
categories against C: how much C attracts everything, CSLS-style).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.report import append_rows, command_line, machine, now, text_table  # noqa: E402

SECTION = "recognition scoring variants (bench/scoring_variants.py)"
COLUMNS = ("date", "machine", "split", "knowledge base", "variant", "top-1 %", "top-5 %", "command")
CHUNK = 500


def category_scores(x: np.ndarray, members: np.ndarray, starts: np.ndarray, m: int | None) -> np.ndarray:
    """[N, C]: max (m None) or mean of the m best member scores per category; members sorted by category."""
    ends = np.r_[starts[1:], members.shape[0]]
    out = np.empty((len(x), len(starts)), dtype=np.float64)
    for i in range(0, len(x), CHUNK):
        s = x[i : i + CHUNK].astype(np.float64) @ members.T.astype(np.float64)  # [n, M]
        if m is None:
            out[i : i + CHUNK] = np.maximum.reduceat(s, starts, axis=1)
            continue
        for c, (a, b) in enumerate(zip(starts, ends)):
            out[i : i + CHUNK, c] = np.sort(s[:, a:b], axis=1)[:, -min(m, b - a) :].mean(axis=1)
    return out


def accuracy(scores: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    top = np.argsort(-scores, axis=1, kind="stable")[:, :5]
    return 100 * float((top[:, 0] == y).mean()), 100 * float((top == y[:, None]).any(axis=1).mean())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--home", default="unibind-data/dev")
    p.add_argument("--no-append", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from unibind.indexer.store.contents import find_space
    from unibind.indexer.runtime.device import select_device
    from unibind.indexer.encoders.factory import build_encoder
    from unibind.retrieval.centres.builder import CentreSpec, load_centres
    from unibind.retrieval.evaluation.dev_benchmark import make_split
    from unibind.schema import Database
    from unibind.schema.settings import Settings

    db = Database(f"sqlite:///{Path(args.home).resolve() / 'unibind.db'}")
    with db.session() as s:
        space = find_space(s, "minilm")
    split = make_split(None, 10, 0)
    q = build_encoder(space.encoder, select_device(Settings.resolve().device)).encode_text([x.text for x in split.queries])
    kbs = {"descriptions": (f"dev-cupl-descriptions-{split.tag}",),
           "all": (f"dev-cupl-descriptions-{split.tag}", f"dev-cupl-templates-{split.tag}")}
    rows = []
    for kb, corpora in kbs.items():
        names, vectors, owner = load_centres(db, space, CentreSpec(strategy="informative", corpora=corpora))
        order = np.argsort(owner, kind="stable")
        vectors, owner = vectors[order], owner[order]
        starts = np.r_[0, np.flatnonzero(np.diff(owner)) + 1]
        y = np.array([names.index(x.label) for x in split.queries])
        base = category_scores(q, vectors, starts, None)
        rows.append((kb, "max (paper)", *accuracy(base, y)))
        for m in (2, 3, 5):
            rows.append((kb, f"mean-top-{m}", *accuracy(category_scores(q, vectors, starts, m), y)))
        ref = np.random.default_rng(0).choice(len(vectors), 5000, replace=False)
        r = category_scores(vectors[ref], vectors, starts, None)
        r[owner[ref][:, None] == np.arange(len(names))[None, :]] = np.nan  # a member against its own category
        hub = np.nanmean(r, axis=0)  # [C]
        for beta in (0.25, 0.5, 1.0):
            rows.append((kb, f"hub-{beta}", *accuracy(base - beta * hub[None, :], y)))
    table = [(kb, v, f"{a:.2f}", f"{b:.2f}") for kb, v, a, b in rows]
    print(f"scoring variants, dev {split.tag}, {space.encoder}, {machine()}")
    print(text_table(["knowledge base", "variant", "top-1 %", "top-5 %"], table))
    if not args.no_append:
        append_rows(SECTION, COLUMNS, [(now(), machine(), split.tag, *row, command_line("bench/scoring_variants.py")) for row in table])
    return 0


if __name__ == "__main__":
    sys.exit(main())
