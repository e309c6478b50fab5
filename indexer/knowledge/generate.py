"""``unibind kb generate``: category names in, a cleaned description corpus out.

For every category, every prompt of the prompt set is sent ``samples`` times (each request with its own seed
derived from the run's seed, the category, the prompt and the sample index), through the response cache, so a
re-run with the same parameters sends nothing and writes the same corpus. Responses are cleaned into sentences
(:mod:`unibind.indexer.knowledge.cleaning`); a category left with fewer than ``min_per_category`` sentences gets
more samples of every prompt (a top-up round), up to ``top_up_rounds`` times, and is reported as short if it is
still below. Each record keeps its provenance: model, prompt set, prompt, temperature, seed and sample index.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from unibind.indexer.knowledge.cache import ResponseCache, request_key
from unibind.indexer.knowledge.cleaning import CleaningConfig, CleaningReport, clean_category
from unibind.indexer.knowledge.prompts import PromptSet, render, request_seed
from unibind.indexer.knowledge.request import LLM, Request
from unibind.schema.errors import InvalidInput

log = logging.getLogger(__name__)

MIN_PER_CATEGORY = 50  # the default centre size K (retrieval/centres/strategies.py; the CLI passes it): every centre can fill
TOP_UP_ROUNDS = 3


@dataclass(frozen=True)
class GenerateConfig:
    """What to ask and how to keep it. ``samples``, ``temperature`` and ``max_tokens`` default to the prompt set's."""

    prompts: PromptSet
    samples: int
    temperature: float
    max_tokens: int
    seed: int = 0
    min_per_category: int = MIN_PER_CATEGORY
    top_up_rounds: int = TOP_UP_ROUNDS
    cleaning: CleaningConfig = field(default_factory=CleaningConfig)

    def __post_init__(self) -> None:
        checks = (
            ("samples", self.samples, isinstance(self.samples, int) and self.samples >= 1, "an integer >= 1"),
            ("temperature", self.temperature, 0.0 <= self.temperature <= 2.0, "in [0, 2]"),
            ("max_tokens", self.max_tokens, isinstance(self.max_tokens, int) and self.max_tokens >= 1, "an integer >= 1"),
            ("seed", self.seed, isinstance(self.seed, int) and self.seed >= 0, "an integer >= 0"),
            ("min_per_category", self.min_per_category, self.min_per_category >= 0, "an integer >= 0"),
            ("top_up_rounds", self.top_up_rounds, self.top_up_rounds >= 0, "an integer >= 0"),
        )
        for name, value, ok, rule in checks:
            if not ok:
                raise InvalidInput(f"{name.replace('_', '-')} must be {rule}, got {value!r}")

    @classmethod
    def from_prompts(cls, prompts: PromptSet, *, samples: int | None = None, temperature: float | None = None,
                     max_tokens: int | None = None, **kwargs: Any) -> GenerateConfig:
        return cls(prompts, prompts.samples if samples is None else samples,
                   prompts.temperature if temperature is None else temperature,
                   prompts.max_tokens if max_tokens is None else max_tokens, **kwargs)


@dataclass
class GenerateReport:
    llm: str
    prompts: str
    categories: int = 0
    requests: int = 0  # asked for, cached or sent
    cached: int = 0  # answered from the cache
    sent: int = 0  # sent to the LLM
    records: int = 0
    short: dict[str, int] = field(default_factory=dict)  # category -> sentences kept, for those below the minimum
    cleaning: CleaningReport = field(default_factory=CleaningReport)
    seconds: float = 0.0

    asked: bool = True  # False: no LLM was asked (the waffle control): its report shows no prompts or requests

    def as_dict(self) -> dict[str, Any]:
        asked = ({"prompts": self.prompts, "requests": self.requests, "cached": self.cached, "sent": self.sent}
                 if self.asked else {})
        return {"llm": self.llm, **asked, "categories": self.categories, "records": self.records,
                "short": self.short, "cleaning": self.cleaning.as_dict(), "seconds": round(self.seconds, 3)}


Planned = tuple[Request, dict[str, Any]]  # a request and the provenance its sentences keep


def plan(llm: LLM, category: str, config: GenerateConfig, samples: range) -> list[Planned]:
    """The requests of ``category``: the sample indices ``samples`` of every prompt (the first round is
    ``range(config.samples)``; top-ups continue from there)."""
    p = config.prompts
    out = []
    for template in p.templates:
        for sample in samples:
            request = Request(prompt=render(template, category), category=category, system=p.system,
                              temperature=config.temperature, max_tokens=config.max_tokens,
                              seed=request_seed(config.seed, category, template, sample), stop=p.stop)
            used = ({"prompt_set": p.name, "prompt": template, "temperature": config.temperature}
                    if llm.uses_prompts else {})  # the waffle control uses none of them: it records none
            out.append((request, {"model": llm.spec, **used, "seed": config.seed, "sample": sample}))
    return out


def ask(llm: LLM, cache: ResponseCache, requests: Sequence[Request], report: GenerateReport | None, desc: str,
        progress: bool | None = None, fresh: set[str] | None = None) -> list[str]:
    """The response text of every request, in order: from the cache, else asked (each cached as it arrives, so
    an interrupted run resumes where it stopped; identical requests are sent once). ``report`` (None: not
    counted) counts the requests, and which were cached before this run and which were sent; ``fresh`` collects
    the keys this run sent, so a request sent earlier in the run (a prefetch) counts as sent, not cached."""
    keys = [request_key(llm.identity, r) for r in requests]
    known = cache.get_many(keys)
    first = {k: i for i, k in reversed(list(enumerate(keys)))}  # the first request of each key
    copies = Counter(keys)
    missing = [k for k in first if k not in known]
    if report is not None:
        report.requests += len(keys)
        earlier = sum(1 for k in keys if k in known and fresh is not None and k in fresh)
        report.sent += earlier
        report.cached += sum(1 for k in keys if k in known) - earlier
    if missing:
        with tqdm(total=len(missing), desc=desc, unit="request", leave=False,
                  disable=None if progress is None else not progress) as bar:
            def done(j: int, text: str) -> None:
                k = missing[j]
                cache.put(k, llm.identity, requests[first[k]], text)
                known[k] = text
                if fresh is not None:
                    fresh.add(k)
                if report is not None:
                    report.sent += copies[k]
                bar.update(1)

            llm.run([requests[first[k]] for k in missing], done)
    return [known[k] for k in keys]


class Generator:
    """Runs a :class:`GenerateConfig` with one LLM and one cache; ``fit`` and ``embed`` come from the text encoder
    (cut to its context length; unit vectors for near-duplicate removal).

    The first round of every category in a window of :data:`PREFETCH` categories goes to the LLM in one call,
    so ``--concurrency`` requests stay in flight across category boundaries; top-ups are asked per category."""

    PREFETCH = 16

    def __init__(self, llm: LLM, cache: ResponseCache, config: GenerateConfig, *,
                 fit: Callable[[str], str] | None = None, embed: Callable[[list[str]], np.ndarray] | None = None,
                 progress: bool | None = None) -> None:
        self.llm, self.cache, self.config = llm, cache, config
        self.fit, self.embed, self.progress = fit, embed, progress
        self.fresh: set[str] = set()  # keys sent by this run

    def answers(self, planned: Sequence[Planned], report: GenerateReport | None, desc: str) -> list[str]:
        return ask(self.llm, self.cache, [r for r, _ in planned], report, desc, self.progress, self.fresh)

    def _clean(self, name: str, texts: list[str], planned: list[Planned],
               vectors: dict[str, np.ndarray]) -> tuple[list[tuple[str, dict[str, Any]]], CleaningReport]:
        """Clean a category's answers so far; ``vectors`` keeps the sentences' embeddings across its top-up rounds,
        so each sentence is encoded once."""
        def embed(sentences: list[str]) -> np.ndarray:
            new = [t for t in dict.fromkeys(sentences) if t not in vectors]
            if new:
                vectors.update(zip(new, self.embed(new)))  # type: ignore[misc]
            return np.stack([vectors[t] for t in sentences]) if sentences else np.empty((0, 0), np.float32)

        counts = CleaningReport()
        kept = clean_category(name, [(t, prov) for t, (_, prov) in zip(texts, planned)], form=self.config.prompts.form,
                              config=self.config.cleaning, fit=self.fit, embed=embed if self.embed else None,
                              report=counts)
        return kept, counts

    def category(self, name: str, report: GenerateReport) -> tuple[list[dict[str, Any]], CleaningReport]:
        """One category's records and its cleaning counts. Below ``min_per_category``, top-up rounds ask each
        prompt for about as many more samples as the deficit needs at the yield seen so far (at most
        ``samples``), up to ``top_up_rounds`` times, while a round still adds descriptions; none at temperature 0,
        where a model repeats itself (the waffle control, which has no temperature, is topped up)."""
        cfg = self.config
        planned = plan(self.llm, name, cfg, range(cfg.samples))
        texts = self.answers(planned, report, name[:30])
        vectors: dict[str, np.ndarray] = {}
        kept, counts = self._clean(name, texts, planned, vectors)
        next_sample, before = cfg.samples, -1
        rounds = cfg.top_up_rounds if cfg.temperature > 0 or self.llm.spec == "waffle" else 0
        for _ in range(rounds):
            if len(kept) >= cfg.min_per_category or len(kept) <= before:
                break
            before = len(kept)
            deficit, per_answer = cfg.min_per_category - len(kept), len(kept) / max(1, len(texts))
            per_prompt = cfg.samples if per_answer <= 0 else \
                min(cfg.samples, max(1, math.ceil(deficit / (per_answer * len(cfg.prompts.templates)))))
            log.info("%s: %d descriptions, below %d: asking each prompt for %d more", name, len(kept),
                     cfg.min_per_category, per_prompt)
            more = plan(self.llm, name, cfg, range(next_sample, next_sample + per_prompt))
            next_sample += per_prompt
            texts += self.answers(more, report, name[:30])
            planned += more
            kept, counts = self._clean(name, texts, planned, vectors)
        return [{"category": name, "text": text, **prov} for text, prov in kept], counts

    def run(self, categories: Sequence[str]) -> tuple[list[dict[str, Any]], GenerateReport]:
        t0 = time.perf_counter()
        report = GenerateReport(llm=self.llm.describe(), prompts=self.config.prompts.name, categories=len(categories),
                                asked=self.llm.uses_prompts)
        records: list[dict[str, Any]] = []
        with tqdm(total=len(categories), desc="kb generate", unit="category",
                  disable=None if self.progress is None else not self.progress) as bar:
            for w0 in range(0, len(categories), self.PREFETCH):
                window = categories[w0 : w0 + self.PREFETCH]
                first = [p for c in window for p in plan(self.llm, c, self.config, range(self.config.samples))]
                self.answers(first, None, f"categories {w0 + 1}-{w0 + len(window)}")
                for name in window:
                    rows, counts = self.category(name, report)
                    report.cleaning.add(counts)
                    if len(rows) < self.config.min_per_category:
                        report.short[name] = len(rows)
                    records += rows
                    bar.update(1)
        report.records = len(records)
        report.seconds = time.perf_counter() - t0
        if report.short:
            log.warning("%d categories have fewer than %d descriptions: %s", len(report.short),
                        self.config.min_per_category,
                        ", ".join(f"{c} ({n})" for c, n in list(report.short.items())[:10]))
        return records, report


def dry_run(llm: LLM, categories: Sequence[str], config: GenerateConfig, cache: ResponseCache | None) -> dict[str, Any]:
    """What a run would ask in its first round: the prompts (rendered for the first category) and request counts."""
    planned = [p for c in categories for p in plan(llm, c, config, range(config.samples))]
    cached = len(cache.get_many(request_key(llm.identity, r) for r, _ in planned)) if cache is not None else 0
    first = categories[0]
    return {"llm": llm.describe(), "prompt_set": config.prompts.name, "categories": len(categories),
            "prompts": [render(t, first) for t in config.prompts.templates], "samples": config.samples,
            "requests": len(planned), "cached": cached, "to_send": len(planned) - cached,
            "top_up": f"up to {config.top_up_rounds} more round(s) of at most {config.samples} samples per prompt for "
                      f"categories below {config.min_per_category} descriptions"}


def write_jsonl(records: Sequence[dict[str, Any]], path: str | Path) -> None:
    """Write the corpus atomically: a temporary file beside ``path``, then a rename (never a partial file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for row in records:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
