"""Classification metrics of ranked class predictions: top-1, top-5 and mean per-class recall, each with a seeded
bootstrap 95 % interval, and each classifier's paired difference to a baseline with its interval.

The resamples are the queries drawn as in :mod:`.intervals` (the same seed, the same draws, so a top-1 interval here
equals ``bootstrap_intervals`` of the same hits); every classifier is scored on the same draws, which makes the
difference to the baseline paired. Mean per-class recall is the mean, over the classes with at least one sample, of
the share of a class's samples whose top-1 is right; in a resample, over the classes drawn at least once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from unibind.retrieval.evaluation.intervals import LEVEL, RESAMPLES, SEED

METRICS = ("acc1", "acc5", "mean_per_class_recall")
_BLOCK_CELLS = 2_000_000  # as intervals.py: resamples x queries drawn at once


@dataclass(frozen=True)
class Scored:
    """One classifier's metrics, their intervals and (for all but the baseline) the paired differences."""

    metrics: dict[str, float]
    intervals: dict[str, tuple[float, float]]
    difference: dict[str, float] | None = None
    difference_intervals: dict[str, tuple[float, float]] | None = None


def hits(predicted: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """[n, 2] 0/1: whether each query's label is its top-1, and among its top 5 (``predicted``: [n, k] class
    indices, best first; -1 pads)."""
    predicted = np.asarray(predicted)
    top5 = (predicted[:, :5] == labels[:, None]).any(axis=1)
    return np.stack([predicted[:, 0] == labels, top5], axis=1).astype(np.float64)


def mean_per_class_recall(top1: np.ndarray, labels: np.ndarray, n_classes: int) -> float:
    counts = np.bincount(labels, minlength=n_classes)
    right = np.bincount(labels, weights=top1, minlength=n_classes)
    present = counts > 0
    return float((right[present] / counts[present]).mean())


def _metrics(h: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    return np.array([h[:, 0].mean(), h[:, 1].mean(), mean_per_class_recall(h[:, 0], labels, n_classes)])


def score_classifiers(hits_by_name: Mapping[str, np.ndarray], labels: np.ndarray, n_classes: int, *,
                      baseline: str | None = None, resamples: int = RESAMPLES, level: float = LEVEL,
                      seed: int = SEED) -> dict[str, Scored]:
    """Metrics of each classifier's [n, 2] hits on the same ``labels`` ([n] class indices)."""
    names = list(hits_by_name)
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    if n == 0:
        raise ValueError("no samples to score")
    point = {name: _metrics(hits_by_name[name], labels, n_classes) for name in names}
    boot = {name: np.empty((resamples, len(METRICS))) for name in names}  # [R, 3] per classifier
    rng = np.random.default_rng(seed)
    block = max(1, _BLOCK_CELLS // n)
    for start in range(0, resamples, block):
        stop = min(start + block, resamples)
        b = stop - start
        idx = np.minimum((rng.random((b, n)) * n).astype(np.int64), n - 1)  # [b, n], as intervals.py draws
        drawn = labels.take(idx)  # [b, n]
        flat = (drawn + np.arange(b)[:, None] * n_classes).ravel()
        counts = np.bincount(flat, minlength=b * n_classes).reshape(b, n_classes)
        present = counts > 0
        for name in names:
            h = hits_by_name[name]
            top1 = h[:, 0].take(idx)  # [b, n]
            boot[name][start:stop, 0] = top1.mean(axis=1)
            boot[name][start:stop, 1] = h[:, 1].take(idx).mean(axis=1)
            right = np.bincount(flat, weights=top1.ravel(), minlength=b * n_classes).reshape(b, n_classes)
            recall = np.where(present, right / np.maximum(counts, 1), 0.0)
            boot[name][start:stop, 2] = recall.sum(axis=1) / present.sum(axis=1)
    alpha = (1 - level) / 2

    def interval(values: np.ndarray) -> dict[str, tuple[float, float]]:
        q = np.quantile(values, [alpha, 1 - alpha], axis=0).T  # [3, 2]
        return {m: (float(lo), float(hi)) for m, (lo, hi) in zip(METRICS, q)}

    out = {}
    for name in names:
        metrics = {m: float(v) for m, v in zip(METRICS, point[name])}
        if baseline is None or name == baseline or baseline not in point:
            out[name] = Scored(metrics, interval(boot[name]))
            continue
        diff = {m: float(v) for m, v in zip(METRICS, point[name] - point[baseline])}
        out[name] = Scored(metrics, interval(boot[name]), diff, interval(boot[name] - boot[baseline]))
    return out
