"""Recognition accuracy: top-1 / top-5 of labelled queries, per centre strategy."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from indexer.device import Device
from indexer.encoder import Encoder
from retrieval.centre_builder import CentreSpec
from retrieval.recognizer import DEFAULT_TOP_M, Recognizer
from schema import Database

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Query:
    text: str
    label: str
    line: int | None = None


@dataclass(frozen=True)
class EvalRow:
    strategy: str
    n: int
    top1: float
    top5: float
    categories: int


def read_queries(path: str | Path) -> list[Query]:
    """JSONL, one ``{"text": ..., "label": ...}`` per line; errors name the file and line."""
    label = str(path)
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"queries file not found: {label}")
    try:
        lines = p.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as e:
        raise ValueError(f"{label}: not valid UTF-8 (byte {e.start})") from e
    out: list[Query] = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{label}:{n}: invalid JSON ({e.msg})") from e
        if not isinstance(row, dict):
            raise ValueError(f"{label}:{n}: each line must be a JSON object with text and label")
        for field in ("text", "label"):
            if not isinstance(row.get(field), str) or not row[field].strip():
                raise ValueError(f"{label}:{n}: field {field!r} must be a non-empty string")
        out.append(Query(row["text"].strip(), row["label"].strip(), n))
    if not out:
        raise ValueError(f"{label}: no queries")
    return out


def accuracy(predictions: Sequence[Sequence[str]], labels: Sequence[str]) -> tuple[float, float]:
    """(top-1, top-5) accuracy of ranked predictions."""
    hits1 = sum(bool(p) and p[0] == y for p, y in zip(predictions, labels))
    hits5 = sum(y in p[:5] for p, y in zip(predictions, labels))
    n = max(len(labels), 1)
    return hits1 / n, hits5 / n


def evaluate(
    db: Database,
    device: Device,
    queries: Sequence[Query],
    strategies: Sequence[str],
    *,
    base: CentreSpec | None = None,
    encoder: str | None = None,
    engine: str | None = None,
    top_m: int = DEFAULT_TOP_M,
    encoder_obj: Encoder | None = None,
    query_vectors: np.ndarray | None = None,
    source: str = "queries",
) -> list[EvalRow]:
    """Accuracy of each strategy on the same queries (encoded once); categories score the mean of their
    ``top_m`` best centre members (1: the paper's max)."""
    base = base or CentreSpec()
    rows: list[EvalRow] = []
    vectors = query_vectors
    for strategy in strategies:
        kwargs = {"engine": engine} if engine else {}
        rec = Recognizer(db, device, encoder=encoder, spec=replace(base, strategy=strategy), encoder_obj=encoder_obj,
                         top_m=top_m, **kwargs)
        encoder_obj = rec.encoder
        known = set(rec.categories)
        unknown = [q for q in queries if q.label not in known]
        if unknown:
            q = unknown[0]
            where = f"{source}:{q.line}" if q.line else source
            raise ValueError(f"{where}: label {q.label!r} is not a category of the knowledge base ({len(unknown)} such queries)")
        if vectors is None:
            vectors = rec.encoder.encode_text([q.text for q in queries])
        results = rec.recognize_vectors(vectors, k=5)
        top1, top5 = accuracy([r.labels for r in results], [q.label for q in queries])
        rows.append(EvalRow(strategy, len(queries), top1, top5, len(known)))
        log.info("%s: top-1 %.4f, top-5 %.4f on %d queries", strategy, top1, top5, len(queries))
    return rows
