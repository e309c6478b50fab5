"""The paper's comparison on a labelled dataset: zero-shot classifiers over the same encoded queries.

Each classifier is a table of centre members per class (``CentreTable``) scored by a recognition engine, built with
the centre strategies of ``retrieval/centres`` and, for the knowledge-base rules, from the store's own centres (the
Recognizer builds missing ones), restricted to the dataset's classes:

- ``prompt``     the base prompt alone ("A photo of a {c}."): the encoder's plain zero-shot classifier
- ``templates``  the mean of CLIP's 80 ImageNet templates: CLIP's prompt ensemble
- ``cupl``       the mean of the category's knowledge-base descriptions: CuPL's classifier (strategy ``mean``)
- ``paper``      UniBind's rule: the 50 descriptions closest to the base prompt, a class scoring its best member
- ``default``    unibind's default rule, as ``unibind recognize`` and ``eval recognition`` use it

A class with no descriptions in the chosen corpora (uncovered) is scored by its base prompt in every classifier,
unless coverage is required. The queries are encoded once, in batches, and cached by (encoder, dataset digest).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from unibind.indexer.encoders.base import Encoder
from unibind.indexer.runtime.device import Device
from unibind.retrieval.centres.builder import CentreSpec, centre_scope
from unibind.retrieval.centres.prompts import BASE_PROMPT, fill
from unibind.retrieval.centres.strategies import DEFAULT_K, Candidates, Context, get_strategy
from unibind.retrieval.evaluation.classification_metrics import Scored, hits, score_classifiers
from unibind.retrieval.evaluation.classifiers import CLASSIFIERS, Classifier
from unibind.retrieval.evaluation.datasets import BadSamples, LabelledDataset, match_categories
from unibind.retrieval.recognition.engine import CentreTable
from unibind.retrieval.recognition.engines import make_engine
from unibind.retrieval.recognition.recognizer import Recognizer
from unibind.schema import Database, Space
from unibind.schema.errors import InvalidInput

__all__ = ["CLASSIFIERS", "Classifier", "compare", "encode_dataset"]

log = logging.getLogger(__name__)

BASELINE = "prompt"
TOP_K = 5
SCORE_BATCH = 4096  # queries per recognition call
CACHE_FOLDER = "eval-cache"


# -- the queries -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EncodedDataset:
    vectors: np.ndarray  # [N, d] float32 unit rows of the space
    labels: np.ndarray  # [N] int64 class indices
    skipped: int  # bad samples skipped (--skip-bad)
    cached: bool  # read from the cache, nothing encoded


def cache_path(home: Path, encoder_key: str, dataset: LabelledDataset, skip_bad: bool) -> Path:
    key = hashlib.sha256(f"{encoder_key}\0{dataset.kind}\0{dataset.digest()}\0{skip_bad}".encode()).hexdigest()[:32]
    return Path(home) / CACHE_FOLDER / f"{key}.npz"


def encode_dataset(dataset: LabelledDataset, encode: Callable[[Any], np.ndarray], *, bad: BadSamples,
                   batch_size: int = 256, cache: Path | None = None) -> EncodedDataset:
    """Every sample's vector and label, a batch at a time (only the vectors are kept), or the cached ones."""
    if cache is not None and cache.is_file():
        with np.load(cache) as saved:
            log.info("query encodings from the cache %s", cache)
            return EncodedDataset(saved["vectors"], saved["labels"], int(saved["skipped"]), True)
    vectors: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    with tqdm(total=dataset.size, desc=f"encode {dataset.name}", unit="sample", leave=False) as bar:
        for batch in dataset.batches(batch_size, bad):
            if len(batch.labels):
                vectors.append(np.asarray(encode(batch.inputs), dtype=np.float32))
                labels.append(batch.labels)
            bar.update(len(batch.labels))
    if not labels:
        raise InvalidInput(f"{dataset.name}: no samples to evaluate" + (f" ({bad.count} skipped; the first: "
                                                                         f"{bad.first})" if bad.count else ""))
    out = EncodedDataset(np.concatenate(vectors), np.concatenate(labels), bad.count, False)
    if bad.count:
        log.warning("skipped %d bad samples; the first: %s", bad.count, bad.first)
    if cache is not None:
        from unibind.indexer.index.files import write_atomically

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, vectors=out.vectors, labels=out.labels, skipped=np.int64(out.skipped))

        write_atomically(cache, write)
    return out


# -- the classifiers -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Coverage:
    """Each dataset class's category of the knowledge base (None: uncovered)."""

    classes: list[str]
    categories: list[str | None]

    @property
    def uncovered(self) -> list[str]:
        return [c for c, cat in zip(self.classes, self.categories) if cat is None]

    def display(self, i: int) -> str:
        """The name a class is prompted with: its category's, else its own."""
        return self.categories[i] or self.classes[i]

    def names(self) -> list[str]:
        """Each class's name in the classifier tables: its display name, with `` [class i]`` after a repeated one
        (two classes of one name, or of one category, get the same members; ties go to the first)."""
        out, seen = [], set()
        for i in range(len(self.classes)):
            name = self.display(i)
            out.append(name if name not in seen else f"{name} [class {i}]")
            seen.add(name)
        return out


def coverage(db: Database, space: Space, classes: Sequence[str], corpora: tuple[str, ...] | None) -> Coverage:
    names = [name for name, _ in centre_scope(db, space, CentreSpec(corpora=corpora)).keys.values()]
    return Coverage(list(classes), match_categories(classes, names))


def _prompt_members(encoder: Encoder, names: Sequence[str], strategy: str, template: str) -> dict[str, np.ndarray]:
    """{name: [m, d]} of a knowledge-free strategy (``prompt``, ``templates``), from the strategy itself."""
    prompts = encoder.encode_text([fill(template, n) for n in names])  # [C, d]
    ctx = Context(encode=encoder.encode_text)
    empty = np.empty(0, dtype=np.int64)
    pick = get_strategy(strategy)
    return {n: pick(Candidates(n, empty, [], prompts[i:i + 1]), prompts[i], DEFAULT_K, ctx).vectors
            for i, n in enumerate(names)}


def classifier_table(db: Database, device: Device, space: Space, encoder: Encoder, cover: Coverage,
                     clf: Classifier, *, corpora: tuple[str, ...] | None, template: str = BASE_PROMPT) -> CentreTable:
    """The classifier's members for every dataset class, in the table order ``eval recognition`` would use for the
    covered ones (the store's names, sorted), uncovered classes after them with their base prompt; centred as
    the classifier says."""
    unique = cover.names()
    shown = [cover.display(i) for i in range(len(unique))]
    if clf.uses_kb:
        rec = Recognizer(db, device, encoder=space.encoder, encoder_obj=encoder, top_m=clf.top_m, centring=False,
                         spec=CentreSpec(template=template, k=clf.k, strategy=clf.strategy, corpora=corpora))
        covered = {cat for cat in cover.categories if cat is not None}
        found = {name: rec.table.vectors[rec.table.owner == c] for c, name in enumerate(rec.table.names)
                 if name in covered}
        uncovered = sorted({shown[i] for i, cat in enumerate(cover.categories) if cat is None})
        found.update(_prompt_members(encoder, uncovered, "prompt", template) if uncovered else {})
        first = [n for n in rec.table.names if n in covered]  # the store's order, as eval recognition's table
        rest = [i for i, n in enumerate(unique) if n not in covered]
        names = first + [unique[i] for i in rest]
        blocks = [found[n] for n in first] + [found[shown[i]] for i in rest]
    else:
        found = _prompt_members(encoder, sorted(set(shown)), clf.strategy, template)
        names, blocks = unique, [found[n] for n in shown]
    owner = np.concatenate([np.full(len(b), c, dtype=np.int64) for c, b in enumerate(blocks)])
    table = CentreTable(names, np.concatenate(blocks), owner)
    return table.centred() if clf.centring else table


def predict(table: CentreTable, device: Device, top_m: int, vectors: np.ndarray, class_of: dict[str, int],
            engine: str = "faiss") -> np.ndarray:
    """[N, k] class indices, best first (-1 pads when there are fewer than k classes)."""
    scorer = make_engine(engine, table, device, top_m)
    k = min(TOP_K, table.n_categories)
    out = np.full((len(vectors), TOP_K), -1, dtype=np.int64)
    for start in range(0, len(vectors), SCORE_BATCH):
        found = scorer.recognize(vectors[start : start + SCORE_BATCH], k=k)
        for row, r in enumerate(found, start):
            out[row, : len(r.labels)] = [class_of[n] for n in r.labels]
    return out


@dataclass(frozen=True)
class ZeroShotRow:
    classifier: Classifier
    scored: Scored


def compare(db: Database, device: Device, space: Space, encoder: Encoder, cover: Coverage, queries: EncodedDataset,
            classifiers: Sequence[str], *, corpora: tuple[str, ...] | None = None, engine: str = "faiss",
            template: str = BASE_PROMPT) -> list[ZeroShotRow]:
    """Every classifier's metrics on the same queries, with paired differences to the base prompt (scored for the
    differences even when it is not one of ``classifiers``)."""
    hits_by_name = {}
    for name in dict.fromkeys([BASELINE, *classifiers]):
        clf = CLASSIFIERS[name]
        table = classifier_table(db, device, space, encoder, cover, clf, corpora=corpora, template=template)
        class_of = {n: i for i, n in enumerate(cover.names())}
        predicted = predict(table, device, clf.top_m, queries.vectors, class_of, engine)
        hits_by_name[name] = hits(predicted, queries.labels)
        log.info("%s: top-1 %.4f", name, hits_by_name[name][:, 0].mean())
    scored = score_classifiers(hits_by_name, queries.labels, len(cover.classes), baseline=BASELINE)
    return [ZeroShotRow(CLASSIFIERS[name], scored[name]) for name in classifiers]
