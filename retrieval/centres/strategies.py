"""Centre selection strategies: each a small function from a category's candidates to its members.

- ``knowledge``    the default: every description that is not a prompt template (ranked, K does not cut)
- ``informative``  ``top`` over the descriptions that are not prompt templates (see below)
- ``top``          the paper's rule: the K descriptions closest to the base prompt
- ``prompt``       the base prompt alone (the CLIP zero-shot baseline)
- ``templates``    the mean of CLIP's 80 prompt templates (CLIP's prompt ensemble)
- ``all``          every description of the category
- ``mean``         the mean of every description of the category, one vector (CuPL's classifier)

Why ``informative``: real knowledge bases mix LLM descriptions with filled-in prompt templates ("a
bad photo of a tench.", "a sculpture of a tench.", ...). Those are near-paraphrases of the base
prompt, so they are exactly what ``top`` ranks first: the centre becomes a prompt ensemble and
loses the knowledge the descriptions carry. A string that, with its category's name masked,
recurs in many categories carries no knowledge of any one of them; ``informative`` drops such
strings before ranking (falling back to ``top`` when a category has nothing else).

Why ``knowledge`` is the default: ranking against a prompt that says nothing but the name ranks highest
the sentences that say little else ("I found an image of a bald eagle on the internet."), so the top-K
cut drops knowledge first. On the dev benchmark (bench/centre_study.py, BENCHMARKS.md), keeping every
non-template description beat the top 50 for single-sentence and for multi-fact queries alike, once a
category scores the mean of its few best members (see retrieval/recognition/engine.py DEFAULT_TOP_M). An
exploratory run (not in BENCHMARKS.md) found smaller K worse still (K = 20, 30, 40), and ranking by
closeness to the category's own descriptions instead of the prompt did not close the gap.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from unibind.indexer.readers.text import normalise_text
from unibind.indexer.runtime.vectors import normalize
from unibind.retrieval.centres.prompts import CLIP_TEMPLATES, fill
from unibind.schema.errors import InvalidInput

log = logging.getLogger(__name__)

TEMPLATE_MIN_SHARE = 0.10  # a masked skeleton recurring in >= 10 % of categories (and >= 2) is a template


@dataclass(frozen=True)
class Candidates:
    """A category's descriptions to choose from."""

    category: str
    ids: np.ndarray  # [n] description ids
    texts: list[str]
    vectors: np.ndarray  # [n, d] unit rows


@dataclass(frozen=True)
class Selection:
    """The chosen members, best first; ``ids`` entries are None for synthetic vectors."""

    ids: list[int | None]
    texts: list[str]
    vectors: np.ndarray  # [m, d]
    scores: np.ndarray  # [m] cosine to the base prompt
    notice: str | None = None


@dataclass(frozen=True)
class Context:
    """What strategies may need beyond the candidates."""

    encode: Callable[[Sequence[str]], np.ndarray]  # texts → unit vectors of the space
    template_skeletons: frozenset[str] = field(default_factory=frozenset)


def skeleton(text: str, category: str) -> str:
    """The normalised text with the category's name masked as ``{}``."""
    return normalise_text(text).replace(normalise_text(category), "{}")


def find_template_skeletons(pairs: Iterable[tuple[str, str]], n_categories: int) -> frozenset[str]:
    """Skeletons (name masked) that recur across at least max(2, 10 % of) the categories."""
    seen: dict[str, set[str]] = defaultdict(set)
    for category, text in pairs:
        s = skeleton(text, category)
        if "{}" in s:
            seen[s].add(category)
    need = max(2, math.ceil(TEMPLATE_MIN_SHARE * n_categories))
    found = frozenset(s for s, cats in seen.items() if len(cats) >= need)
    log.info("%d template skeletons recur in >= %d of %d categories", len(found), need, n_categories)
    return found


def _ranked(c: Candidates, prompt: np.ndarray, keep: np.ndarray | None, k: int | None) -> Selection:
    idx = np.arange(len(c.ids)) if keep is None else np.flatnonzero(keep)
    scores = (c.vectors[idx].astype(np.float64) @ prompt.astype(np.float64))  # [n]
    order = idx[np.lexsort((c.ids[idx], -scores))]  # best first; ties by description id
    if k is not None:
        order = order[:k]
    notice = None
    if k is not None and len(idx) < k:
        notice = f"{c.category!r} has {len(idx)} descriptions to choose from, fewer than K={k}: all are kept"
    final = c.vectors[order].astype(np.float64) @ prompt.astype(np.float64)
    return Selection([int(i) for i in c.ids[order]], [c.texts[i] for i in order], c.vectors[order], final, notice)


def top(c: Candidates, prompt: np.ndarray, k: int, ctx: Context) -> Selection:
    return _ranked(c, prompt, None, k)


def _non_templates(c: Candidates, prompt: np.ndarray, k: int | None, ctx: Context, fallback: str) -> Selection:
    """The top ``k`` (None: all) of the descriptions whose skeleton is not a template; all of them ranked when
    every one is a template, with a notice ending in ``fallback``."""
    keep = np.array([skeleton(t, c.category) not in ctx.template_skeletons for t in c.texts], dtype=bool)
    if keep.any():
        return _ranked(c, prompt, keep, k)
    sel = _ranked(c, prompt, None, k)
    note = f"{c.category!r}: every description looks like a prompt template; {fallback}"
    return Selection(sel.ids, sel.texts, sel.vectors, sel.scores, note)


def informative(c: Candidates, prompt: np.ndarray, k: int, ctx: Context) -> Selection:
    return _non_templates(c, prompt, k, ctx, "ranking them all")


def knowledge(c: Candidates, prompt: np.ndarray, k: int, ctx: Context) -> Selection:
    return _non_templates(c, prompt, None, ctx, "keeping them all")


def all_descriptions(c: Candidates, prompt: np.ndarray, k: int, ctx: Context) -> Selection:
    return _ranked(c, prompt, None, None)


def prompt_only(c: Candidates, prompt: np.ndarray, k: int, ctx: Context) -> Selection:
    return Selection([None], ["(base prompt)"], prompt[None, :], np.array([1.0]))


def templates(c: Candidates, prompt: np.ndarray, k: int, ctx: Context) -> Selection:
    vectors = ctx.encode([fill(t, c.category) for t in CLIP_TEMPLATES])  # [80, d]
    mean = normalize(vectors.mean(axis=0))[0]
    score = float(mean.astype(np.float64) @ prompt.astype(np.float64))
    return Selection([None], [f"(mean of {len(CLIP_TEMPLATES)} CLIP prompt templates)"], mean[None, :], np.array([score]))


def mean_of_descriptions(c: Candidates, prompt: np.ndarray, k: int, ctx: Context) -> Selection:
    """One member: the normalised mean of all the category's descriptions (CuPL, Pratt et al. 2023, averages the
    text embeddings of its LLM-written prompts into one classifier weight)."""
    mean = normalize(c.vectors.astype(np.float64).mean(axis=0))[0].astype(np.float32)
    score = float(mean.astype(np.float64) @ prompt.astype(np.float64))
    return Selection([None], [f"(mean of {len(c.ids)} descriptions)"], mean[None, :], np.array([score]))


Strategy = Callable[[Candidates, np.ndarray, int, Context], Selection]

STRATEGIES: dict[str, Strategy] = {
    "knowledge": knowledge,
    "informative": informative,
    "top": top,
    "prompt": prompt_only,
    "templates": templates,
    "all": all_descriptions,
    "mean": mean_of_descriptions,
}
DEFAULT_STRATEGY = "knowledge"
DEFAULT_K = 50  # descriptions per centre (the paper's top-50)
# strategies whose members do not depend on the knowledge base: their centres are keyed by no corpora
KB_FREE = frozenset({"prompt", "templates"})
# strategies that drop prompt templates found across the whole knowledge base: their centres depend on every corpus
SKELETON_AWARE = frozenset({"knowledge", "informative"})


def get_strategy(name: str) -> Strategy:
    try:
        return STRATEGIES[name]
    except KeyError:
        raise InvalidInput(f"unknown centre strategy {name!r}; strategies: {', '.join(STRATEGIES)}") from None
