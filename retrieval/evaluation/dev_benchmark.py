"""The dev benchmark: recognise held-out LLM descriptions of the builtin corpus that never name their class.

For each class of the builtin cupl-imagenet corpus, ``holdout`` of its 70 LLM descriptions are drawn
(seeded) and kept out of the knowledge base; the class name's words in them are replaced by ``it``.
The rest is ingested as two corpora — the remaining LLM descriptions, and the 80 filled-in prompt
templates — so that the two knowledge-base variants are corpus selections of one space:
``descriptions`` (LLM descriptions only) and ``all`` (descriptions + templates, as the file ships).
"""

from __future__ import annotations

import json
import logging
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select

from unibind.indexer.readers.builtin import CUPL_LLM_PER_CLASS, cupl_classes
from unibind.indexer.readers.corpus import read_corpus_bytes
from unibind.indexer.runtime.device import Device
from unibind.indexer.encoders.base import Encoder
from unibind.indexer.store.ingest import IngestConfig, ingest
from unibind.retrieval.centres.builder import CentreSpec
from unibind.retrieval.evaluation.accuracy import EvalRow, Query, evaluate
from unibind.retrieval.recognition.recognizer import DEFAULT_CENTRING, DEFAULT_TOP_M
from unibind.schema import Corpus, CorpusStatus, Database, Space
from unibind.schema.errors import InvalidInput

log = logging.getLogger(__name__)

VARIANTS = ("descriptions", "all")
_WORD = re.compile(r"[A-Za-z0-9]+(?:'[A-Za-z]+)?")


def mask_class_name(text: str, name: str) -> str:
    """Replace the class name, then each of its words (3+ letters, with plural endings), by ``it``."""
    out = re.sub(rf"(?i)\b{re.escape(name)}(?:e?s)?\b", "it", text)
    for word in sorted({w for w in _WORD.findall(name) if len(w) >= 3}, key=len, reverse=True):
        out = re.sub(rf"(?i)\b{re.escape(word)}(?:e?s)?\b", "it", out)
    return out


@dataclass(frozen=True)
class DevSplit:
    descriptions: dict[str, list[str]]  # the LLM descriptions kept in the knowledge base
    templates: dict[str, list[str]]  # the 80 filled-in prompt templates per class
    queries: list[Query]  # held out, class name masked
    tag: str  # names the corpora: classes, holdout and seed


def make_split(classes: int | None = None, holdout: int = 10, seed: int = 0) -> DevSplit:
    table = cupl_classes()
    if classes is not None:
        if classes < 1:
            raise InvalidInput(f"--classes must be >= 1, got {classes}")
        table = dict(list(table.items())[:classes])
    if not 1 <= holdout < CUPL_LLM_PER_CLASS:
        raise InvalidInput(f"--holdout must be between 1 and {CUPL_LLM_PER_CLASS - 1}, got {holdout}")
    rng = random.Random(seed)
    descriptions, templates, queries = {}, {}, []
    for name, strings in table.items():
        llm = list(dict.fromkeys(s.strip() for s in strings[:CUPL_LLM_PER_CLASS] if s.strip()))
        held = set(rng.sample(range(len(llm)), holdout))
        descriptions[name] = [s for i, s in enumerate(llm) if i not in held]
        templates[name] = strings[CUPL_LLM_PER_CLASS:]
        queries += [Query(mask_class_name(llm[i], name), name) for i in sorted(held)]
    tag = f"c{len(table)}-h{holdout}-s{seed}"
    return DevSplit(descriptions, templates, queries, tag)


def _ensure_corpus(db: Database, device: Device, home, encoder: Encoder, name: str, table: dict[str, list[str]], source: str) -> None:  # type: ignore[no-untyped-def]
    with db.session() as session:
        exists = session.scalars(
            select(Corpus.id).join(Space).where(Space.encoder == encoder.spec, Corpus.name == name, Corpus.status == CorpusStatus.COMPLETE)
        ).first()
    if exists is not None:
        log.info("dev corpus %s already ingested", name)
        return
    data = read_corpus_bytes(json.dumps(table).encode(), label=f"dev:{name}", format="json")
    ingest(db, data, IngestConfig(name=name, encoder=encoder.spec, source=source), home=home, device=device, encoder=encoder)


def run_dev_benchmark(
    db: Database,
    device: Device,
    home,  # type: ignore[no-untyped-def]
    encoder: Encoder,
    strategies: Sequence[str],
    *,
    classes: int | None = None,
    holdout: int = 10,
    seed: int = 0,
    k: int = 50,
    engine: str | None = None,
    top_m: int = DEFAULT_TOP_M,
    centring: bool = DEFAULT_CENTRING,
) -> list[tuple[str, EvalRow]]:
    """Ingest the split's corpora (once) and evaluate every strategy on both knowledge-base variants."""
    split = make_split(classes, holdout, seed)
    desc_name, tmpl_name = f"dev-cupl-descriptions-{split.tag}", f"dev-cupl-templates-{split.tag}"
    _ensure_corpus(db, device, home, encoder, desc_name, split.descriptions, "builtin cupl-imagenet LLM descriptions minus held-out queries")
    _ensure_corpus(db, device, home, encoder, tmpl_name, split.templates, "builtin cupl-imagenet CLIP prompt templates")
    vectors = encoder.encode_text([q.text for q in split.queries])
    out = []
    for variant, corpora in (("descriptions", (desc_name,)), ("all", (desc_name, tmpl_name))):
        rows = evaluate(db, device, split.queries, strategies, base=CentreSpec(k=k, corpora=corpora), encoder=encoder.spec,
                        engine=engine, top_m=top_m, centring=centring, encoder_obj=encoder, query_vectors=vectors, source=f"dev {split.tag}")
        out += [(variant, r) for r in rows]
    return out
