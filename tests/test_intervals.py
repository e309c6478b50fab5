"""The bootstrap interval printed beside every accuracy: exact against a plain NumPy loop, seeded, sane."""

from __future__ import annotations

import numpy as np
import pytest

from unibind.retrieval.evaluation.accuracy import accuracy, accuracy_with_intervals
from unibind.retrieval.evaluation.intervals import accuracy_interval, bootstrap_intervals


def reference(hits: np.ndarray, resamples: int, level: float, seed: int) -> np.ndarray:
    """One resample at a time: n queries drawn with replacement, the percentile interval of the means."""
    rng = np.random.default_rng(seed)
    n = len(hits)
    means = []
    for _ in range(resamples):
        idx = np.minimum(np.floor(rng.random(n) * n).astype(np.int64), n - 1)
        means.append(hits[idx].mean(axis=0))
    alpha = 100 * (1 - level) / 2
    return np.percentile(np.array(means), [alpha, 100 - alpha], axis=0).T


@pytest.mark.parametrize("n, resamples, seed", [(1, 50, 0), (37, 1000, 0), (2_501, 1000, 7), (5_000, 999, 3)])
def test_bootstrap_matches_a_numpy_loop(n: int, resamples: int, seed: int) -> None:
    rng = np.random.default_rng(seed + 100)
    top1 = rng.random(n) < 0.45
    hits = np.stack([top1, top1 | (rng.random(n) < 0.4)], axis=1).astype(np.float64)  # top-5 contains top-1
    got = bootstrap_intervals(hits, resamples=resamples, seed=seed)
    np.testing.assert_allclose(got, reference(hits, resamples, 0.95, seed), rtol=0, atol=1e-12)
    assert got.shape == (2, 2)
    np.testing.assert_array_equal(bootstrap_intervals(hits, resamples=resamples, seed=seed), got)  # same seed, same interval
    means = hits.mean(axis=0)
    assert np.all(got[:, 0] <= means + 1e-12) and np.all(means <= got[:, 1] + 1e-12)  # contains the point estimate
    assert np.all((0 <= got) & (got <= 1))


def test_bootstrap_seed_level_and_edges() -> None:
    hits = (np.random.default_rng(0).random(400) < 0.5).astype(np.float64)
    a, b = accuracy_interval(hits, seed=1), accuracy_interval(hits, seed=2)
    assert a != b and accuracy_interval(hits, seed=1) == a
    lo90, hi90 = accuracy_interval(hits, level=0.9)
    lo95, hi95 = accuracy_interval(hits)
    assert lo95 <= lo90 < hi90 <= hi95
    assert accuracy_interval(np.ones(25)) == (1.0, 1.0)  # all correct: [100, 100]
    assert accuracy_interval(np.zeros(25)) == (0.0, 0.0)
    np.testing.assert_allclose(bootstrap_intervals(np.ones((9, 2))), [[1.0, 1.0], [1.0, 1.0]])
    for bad in ({"hits": np.zeros(0)}, {"hits": np.ones(3), "resamples": 0}, {"hits": np.ones(3), "level": 1.0}):
        with pytest.raises(ValueError):
            bootstrap_intervals(**bad)  # type: ignore[arg-type]


def test_accuracy_with_intervals() -> None:
    preds, labels = [["a", "b"], ["b", "a"], ["c"], []], ["a", "a", "a", "a"]
    top1, top5, ci1, ci5 = accuracy_with_intervals(preds, labels)
    assert (top1, top5) == accuracy(preds, labels) == (0.25, 0.5)
    assert ci1 == accuracy_interval(np.array([1.0, 0, 0, 0])) and ci1[0] <= 0.25 <= ci1[1]
    assert ci5[0] <= 0.5 <= ci5[1]
