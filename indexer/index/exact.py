"""Exact k-nearest neighbours by inner product, in NumPy: the answer an approximate index is measured
against, and the fallback a filtered search uses when an approximate index found too few matching items.

Vectors are the space's unit rows, so the inner product is the cosine (FAISS's ``METRIC_INNER_PRODUCT``).
"""

from __future__ import annotations

import numpy as np


def exact_knn(queries: np.ndarray, ids: np.ndarray, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """[B, d] queries against [N, d] vectors whose ids are ``ids`` [N] → (scores [B, k'], ids [B, k']), best
    first, k' = min(k, N) (k >= 1: the caller checks it)."""
    k = min(k, len(ids))
    sims = queries @ vectors.T  # [B, N]
    if k < len(ids):
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]  # [B, k] the k best, unordered
    else:
        part = np.tile(np.arange(len(ids)), (len(queries), 1))
    top = np.take_along_axis(sims, part, axis=1)  # [B, k]
    order = np.argsort(-top, axis=1, kind="stable")
    cols = np.take_along_axis(part, order, axis=1)
    return np.take_along_axis(sims, cols, axis=1), ids[cols]
