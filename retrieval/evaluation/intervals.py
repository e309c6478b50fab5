"""Bootstrap confidence intervals of accuracies: a seeded percentile bootstrap over the queries.

Each resample draws ``n`` queries with replacement (the same draws for every column, so top-1 and
top-5 are resampled together); the interval is the ``(1 - level) / 2`` and ``(1 + level) / 2``
quantiles (NumPy's default, linear) of the resampled means. The draws come from
``numpy.random.default_rng(seed)`` as ``floor(u * n)`` of uniform doubles, row by row, so a fixed seed
gives the same interval on every run and every machine, and a plain loop over the resamples
reproduces it exactly. Vectorised in blocks of resamples to bound memory.
"""

from __future__ import annotations

import numpy as np

RESAMPLES = 1000
LEVEL = 0.95
SEED = 0
_BLOCK_CELLS = 2_000_000  # resamples x queries drawn at once (16 MB of doubles)


def bootstrap_intervals(hits: np.ndarray, *, resamples: int = RESAMPLES, level: float = LEVEL,
                        seed: int = SEED) -> np.ndarray:
    """Percentile bootstrap intervals of the column means of ``hits`` ([n] or [n, m], 0/1 or any values).

    Returns [m, 2] (lower, upper) — [1, 2] for a 1-D ``hits``."""
    values = np.asarray(hits, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    if values.ndim != 2 or values.shape[0] == 0:
        raise ValueError(f"hits must be [n] or [n, m] with n >= 1, got shape {np.shape(hits)}")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, got {level}")
    n = values.shape[0]
    rng = np.random.default_rng(seed)
    means = np.empty((resamples, values.shape[1]))
    block = max(1, _BLOCK_CELLS // n)
    for start in range(0, resamples, block):
        stop = min(start + block, resamples)
        idx = np.minimum((rng.random((stop - start, n)) * n).astype(np.int64), n - 1)
        for j in range(values.shape[1]):
            means[start:stop, j] = values[:, j].take(idx).mean(axis=1)
    alpha = (1 - level) / 2
    return np.quantile(means, [alpha, 1 - alpha], axis=0).T


def accuracy_interval(hits: np.ndarray, **kwargs: float) -> tuple[float, float]:
    """The bootstrap interval of one accuracy (the mean of 0/1 ``hits``), as (lower, upper) fractions."""
    lo, hi = bootstrap_intervals(np.asarray(hits).reshape(-1), **kwargs)[0]  # type: ignore[arg-type]
    return float(lo), float(hi)
