"""Recognition accuracy: top-1 / top-5 of labelled queries, per centre strategy, with bootstrap 95 % intervals."""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from unibind.indexer.runtime.device import Device
from unibind.indexer.encoders.base import Encoder
from unibind.retrieval.centres.builder import CentreSpec
from unibind.retrieval.evaluation.intervals import bootstrap_intervals
from unibind.retrieval.recognition.recognizer import DEFAULT_CENTRING, DEFAULT_TOP_M, Recognizer
from unibind.schema import Database
from unibind.schema.errors import InvalidInput

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Query:
    text: str  # the text query, or how a non-text query is shown (its image path, "row N")
    label: str
    line: int | None = None
    input: Path | int | None = None  # image queries: the file; feature queries: the row of the features file


@dataclass(frozen=True)
class EvalRow:
    strategy: str
    n: int
    top1: float
    top5: float
    categories: int
    top1_ci: tuple[float, float] | None = None  # bootstrap 95 % interval (fractions), see ``intervals``
    top5_ci: tuple[float, float] | None = None
    # the most confused (true label, predicted top-1 label, count) pairs, largest count first (see ``confusions``)
    confusions: tuple[tuple[str, str, int], ...] = ()


MAX_CONFUSIONS = 50  # the confused pairs an EvalRow keeps
QUERY_FIELD = {"text": "text", "image": "image", "features": "row"}


def read_queries(path: str | Path, *, kind: str = "text", n_rows: int | None = None) -> list[Query]:
    """JSONL, one ``{"text"|"image"|"row": ..., "label": ...}`` per line (by ``kind``: text, image or features);
    image paths are relative to the file's folder; rows index a features file of ``n_rows`` rows. Errors name
    the file and line."""
    label = str(path)
    p = Path(path)
    if kind not in QUERY_FIELD:
        raise InvalidInput(f"query kind {kind!r} is not one of {', '.join(QUERY_FIELD)}")
    if not p.is_file():
        raise FileNotFoundError(f"queries file not found: {label}")
    try:
        lines = p.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as e:
        raise InvalidInput(f"{label}: not valid UTF-8 (byte {e.start})") from e
    key = QUERY_FIELD[kind]
    out: list[Query] = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise InvalidInput(f"{label}:{n}: invalid JSON ({e.msg})") from e
        if not isinstance(row, dict):
            raise InvalidInput(f"{label}:{n}: each line must be a JSON object with {key} and label")
        others = [f for f in QUERY_FIELD.values() if f != key and f in row]
        if others:
            raise InvalidInput(f"{label}:{n}: field {others[0]!r} does not go with {kind} queries (expected {key!r})")
        if not isinstance(row.get("label"), str) or not row["label"].strip():
            raise InvalidInput(f"{label}:{n}: field 'label' must be a non-empty string")
        value = row.get(key)
        if kind == "features":
            if isinstance(value, bool) or not isinstance(value, int) or value < 0 or (n_rows is not None and value >= n_rows):
                bound = f" below {n_rows} (the features file's rows)" if n_rows is not None else ""
                raise InvalidInput(f"{label}:{n}: field 'row' must be an integer >= 0{bound}, got {value!r}")
            out.append(Query(f"row {value}", row["label"].strip(), n, value))
            continue
        if not isinstance(value, str) or not value.strip():
            raise InvalidInput(f"{label}:{n}: field {key!r} must be a non-empty string")
        if kind == "image":
            image = Path(value) if Path(value).is_absolute() else p.resolve().parent / value
            if not image.is_file():
                raise InvalidInput(f"{label}:{n}: image file not found: {image}")
            out.append(Query(value, row["label"].strip(), n, image))
        else:
            out.append(Query(value.strip(), row["label"].strip(), n))
    if not out:
        raise InvalidInput(f"{label}: no queries")
    return out


def hits(predictions: Sequence[Sequence[str]], labels: Sequence[str]) -> np.ndarray:
    """[n, 2] 0/1: whether each query's label is its top-1, and among its top 5."""
    return np.array([[bool(p) and p[0] == y, y in p[:5]] for p, y in zip(predictions, labels)], dtype=np.float64).reshape(-1, 2)


def accuracy(predictions: Sequence[Sequence[str]], labels: Sequence[str]) -> tuple[float, float]:
    """(top-1, top-5) accuracy of ranked predictions."""
    h = hits(predictions, labels)
    n = max(len(labels), 1)
    return int(h[:, 0].sum()) / n, int(h[:, 1].sum()) / n


def confusions(predictions: Sequence[Sequence[str]], labels: Sequence[str],
               limit: int = MAX_CONFUSIONS) -> tuple[tuple[str, str, int], ...]:
    """The ``limit`` most frequent (true label, predicted top-1 label, count) pairs among the queries whose top-1 is
    wrong: largest count first, ties by true label then predicted label (deterministic). A query with no
    prediction is not counted."""
    counts = Counter((y, p[0]) for p, y in zip(predictions, labels) if p and p[0] != y)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0][0], item[0][1]))
    return tuple((y, p, n) for (y, p), n in ranked[:limit])


def accuracy_with_intervals(predictions: Sequence[Sequence[str]], labels: Sequence[str]) -> tuple[float, float, tuple[float, float], tuple[float, float]]:
    """(top-1, top-5, top-1 interval, top-5 interval): the accuracies and their seeded bootstrap 95 % intervals."""
    top1, top5 = accuracy(predictions, labels)
    (lo1, hi1), (lo5, hi5) = bootstrap_intervals(hits(predictions, labels))
    return top1, top5, (float(lo1), float(hi1)), (float(lo5), float(hi5))


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
    centring: bool = DEFAULT_CENTRING,
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
                         top_m=top_m, centring=centring, **kwargs)
        encoder_obj = rec.encoder
        known = set(rec.categories)
        unknown = [q for q in queries if q.label not in known]
        if unknown:
            q = unknown[0]
            where = f"{source}:{q.line}" if q.line else source
            raise InvalidInput(f"{where}: label {q.label!r} is not a category of the knowledge base ({len(unknown)} such queries)")
        if vectors is None:
            vectors = rec.encoder.encode_text([q.text for q in queries])
        results = rec.recognize_vectors(vectors, k=5)
        predicted, labels = [r.labels for r in results], [q.label for q in queries]
        top1, top5, ci1, ci5 = accuracy_with_intervals(predicted, labels)
        rows.append(EvalRow(strategy, len(queries), top1, top5, len(known), ci1, ci5, confusions(predicted, labels)))
        log.info("%s: top-1 %.4f [%.4f, %.4f], top-5 %.4f [%.4f, %.4f] on %d queries", strategy, top1, *ci1, top5, *ci5,
                 len(queries))
    return rows
