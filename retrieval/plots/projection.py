"""2-D projections of embedding vectors for the pictures: PCA by NumPy's SVD (no scikit-learn)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from unibind.schema.errors import InvalidInput

METHODS = ("pca",)


@dataclass(frozen=True)
class Projection:
    """``coords`` [n, 2] of the n input rows; ``explained`` the share of the variance each axis holds."""

    method: str
    coords: np.ndarray  # [n, 2] float64
    explained: tuple[float, float]


def pca(vectors: np.ndarray) -> Projection:
    """The rows of ``vectors`` [n, d] on their first two principal axes (the rows centred on their mean). Each axis'
    sign is fixed so that its largest-magnitude loading is positive, so the same input always draws the same
    picture. Fewer than two axes of variance (one point, identical points) leave zeros on the missing axes."""
    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise InvalidInput(f"PCA needs a non-empty [n, d] array, got shape {x.shape}")
    centred = x - x.mean(axis=0, keepdims=True)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)  # rows of vt: the principal axes, by singular value
    axes = np.zeros((2, x.shape[1]), dtype=np.float64)
    m = min(2, vt.shape[0])
    axes[:m] = vt[:m]
    for a in axes:
        pivot = int(np.argmax(np.abs(a)))
        if a[pivot] < 0:
            a *= -1
    variance = s**2
    total = float(variance.sum())
    explained = [float(v / total) if total > 0 else 0.0 for v in variance[:2]] + [0.0] * (2 - m)
    return Projection("pca", centred @ axes.T, (explained[0], explained[1]))


def project(vectors: np.ndarray, method: str = "pca") -> Projection:
    """``vectors`` in 2-D by ``method`` (one of ``METHODS``)."""
    if method not in METHODS:
        raise InvalidInput(f"unknown projection method {method!r}; methods: {', '.join(METHODS)}")
    return pca(vectors)
