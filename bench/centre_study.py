"""How a category's centre members are chosen and combined, and whether to centre the space: the study behind
the default recognition rule, on the dev benchmark's split (never on a held-out test set).

    .venv/bin/python bench/centre_study.py [--cache unibind-data/centre-study] [--no-append]

Exact NumPy scoring of the builtin cupl-imagenet corpus (998 classes, MiniLM) with the dev benchmark's split
(retrieval/evaluation/dev_benchmark.py: 10 of each class's 70 LLM descriptions held out, seed 0, the class name
masked as "it"). Two query styles, so that a rule is not chosen for one kind of query:

- ``sentence``: each held-out description on its own (9,980 queries, one fact each);
- ``joined``: three held-out descriptions of a class joined by commas (2,994 queries, several facts each).

Members: ``informative-50`` (the K = 50 non-template descriptions closest to the base prompt, the old default)
or ``knowledge`` (every non-template description); templates are the 80 prompt strings of each class, which
both drop. Category score: ``max`` (the paper), or the mean of the ``top-m`` best members. Space: ``raw``
cosines, or ``centred``: members and queries minus the mean of the category means, renormalised. Every
accuracy has its seeded bootstrap 95 % interval, and ``vs old`` is the paired bootstrap interval of the
difference to the old default (informative-50, max, raw) on the same queries. Encodings are cached under
--cache (the first run encodes ~220,000 strings: about 16 minutes on 2 CPU cores).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.report import append_rows, command_line, machine, now, text_table  # noqa: E402

log = logging.getLogger("bench.centre_study")
SECTION = "centre rule study (bench/centre_study.py)"
COLUMNS = ("date", "machine", "split", "queries", "members", "score", "space", "top-1 % [95 % CI]", "vs old [95 % CI]",
           "command")
CHUNK = 500
HOLDOUT, SEED, JOIN = 10, 0, 3


def encoded(cache: Path, name: str, texts: list[str]) -> np.ndarray:
    path = cache / f"{name}.npy"
    if path.is_file():
        v = np.load(path)
        if len(v) == len(texts):
            return v
    from unibind.indexer.encoders.factory import build_encoder
    from unibind.indexer.runtime.device import select_device

    log.info("encoding %d %s strings (cached in %s)", len(texts), name, path)
    v = build_encoder("minilm", select_device("auto")).encode_text(texts, progress=True)
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, v)
    return v


def category_scores(q: np.ndarray, members: np.ndarray, vectors: np.ndarray, m: int) -> np.ndarray:
    """[n, C]: per category the mean of its m best member cosines (m = 1: the max); ``members`` [C, K] rows of
    ``vectors``, -1 past a category's last member."""
    valid = members >= 0
    counts = valid.sum(axis=1)
    z = vectors[np.where(valid, members, 0)]  # [C, K, d]
    out = np.empty((len(q), len(members)))
    for i in range(0, len(q), CHUNK):
        s = np.einsum("nd,ckd->nck", q[i : i + CHUNK].astype(np.float64), z.astype(np.float64), optimize=True)
        s = np.where(valid[None], s, -np.inf)
        top = -np.sort(-s, axis=2)[:, :, :m]  # [n, C, m] best first
        m_eff = np.minimum(m, counts)[None, :]
        top = np.where(np.arange(m)[None, None, :] < m_eff[..., None], top, 0.0)
        out[i : i + CHUNK] = top.sum(axis=2) / m_eff
    return out


def dev_texts() -> tuple[list[str], list[str], list[int], dict[str, list[tuple[str, int]]]]:
    """(class names, knowledge-base texts, their class, {query style: [(text, class)]}) of the dev benchmark's split
    (``make_split``): the kept LLM descriptions, and its masked held-out descriptions alone and joined in threes."""
    from unibind.retrieval.evaluation.dev_benchmark import make_split

    split = make_split(holdout=HOLDOUT, seed=SEED)
    names = list(split.descriptions)
    kb_texts = [t for name in names for t in split.descriptions[name]]
    kb_owner = [c for c, name in enumerate(names) for _ in split.descriptions[name]]
    held: dict[str, list[str]] = {name: [] for name in names}
    for q in split.queries:  # per class, in the order they were held out
        held[q.label].append(q.text)
    sentence = [(t, c) for c, name in enumerate(names) for t in held[name]]
    joined = [(", ".join(t.rstrip(".") for t in held[name][g : g + JOIN]), c)
              for c, name in enumerate(names) for g in range(0, HOLDOUT - JOIN + 1, JOIN)]
    return names, kb_texts, kb_owner, {"sentence": sentence, "joined": joined}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cache", type=Path, default=Path("unibind-data/centre-study"))
    p.add_argument("--no-append", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from unibind.retrieval.centres.prompts import BASE_PROMPT, fill
    from unibind.retrieval.evaluation.intervals import bootstrap_intervals

    names, kb_texts, kb_owner, styles = dev_texts()
    owner = np.asarray(kb_owner)
    kb = encoded(args.cache, "kb", kb_texts)
    prompts = encoded(args.cache, "prompts", [fill(BASE_PROMPT, n) for n in names])
    queries = {s: (encoded(args.cache, f"queries-{s}", [t for t, _ in qs]), np.array([c for _, c in qs])) for s, qs in styles.items()}

    groups = [np.flatnonzero(owner == c) for c in range(len(names))]
    to_prompt = np.einsum("nd,nd->n", kb, prompts[owner])

    def padded(rows: list[np.ndarray]) -> np.ndarray:
        out = np.full((len(rows), max(map(len, rows))), -1, dtype=np.int64)
        for c, r in enumerate(rows):
            out[c, : len(r)] = r
        return out

    selections = {"informative-50": padded([g[np.argsort(-to_prompt[g], kind="stable")[:50]] for g in groups]),
                  "knowledge": padded(groups)}
    mu = np.mean([kb[g].mean(axis=0) for g in groups], axis=0)  # the mean of the category means

    def centred(x: np.ndarray) -> np.ndarray:
        z = x.astype(np.float64) - mu
        return z / np.linalg.norm(z, axis=1, keepdims=True)

    rows, date, where, cmd = [], now(), machine(), command_line("bench/centre_study.py")
    for style, (q, y) in queries.items():
        old = None
        for members in selections:
            for space in ("raw", "centred"):
                qv, kv = (centred(q), centred(kb)) if space == "centred" else (q, kb)
                for m in (1, 2, 3, 5):
                    hits = (category_scores(qv, selections[members], kv, m).argmax(axis=1) == y).astype(np.float64)
                    old = hits if old is None else old
                    lo, hi = bootstrap_intervals(hits)[0]
                    dlo, dhi = bootstrap_intervals(hits - old)[0]
                    score = "max" if m == 1 else f"top-{m} mean"
                    rows.append((date, where, f"dev c998-h{HOLDOUT}-s{SEED} {style}", len(y), members, score, space,
                                 f"{100 * hits.mean():.2f} [{100 * lo:.2f}, {100 * hi:.2f}]",
                                 f"{100 * (hits - old).mean():+.2f} [{100 * dlo:+.2f}, {100 * dhi:+.2f}]", cmd))
                    log.info("%s %s %s %s: %s", style, members, space, score, rows[-1][7])
    print(text_table(COLUMNS[2:-1], [r[2:-1] for r in rows]))
    if not args.no_append:
        append_rows(SECTION, COLUMNS, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
