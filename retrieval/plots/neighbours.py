"""Which centres a centre plot draws beside a category's: the ``n`` nearest by the cosine of the centres' mean
vectors (each mean scaled to unit length), ties broken by name. NumPy only, so the CLI's parser can show the
defaults without loading the store's modules."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from unibind.schema.errors import InvalidInput

DEFAULT_NEIGHBOURS = 5
MAX_NEIGHBOURS = 12  # each gets its own colour; more would not read


def check_neighbours(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= MAX_NEIGHBOURS:
        raise InvalidInput(f"neighbours must be an integer from 0 to {MAX_NEIGHBOURS}, got {n!r}")
    return n


def centre_means(n_categories: int, vectors: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """[C, d] float64: the unit-length mean of each category's members (``owner``: each member's category)."""
    means = np.zeros((n_categories, vectors.shape[1]), dtype=np.float64)
    np.add.at(means, owner, vectors.astype(np.float64))
    return means / np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)  # a zero mean stays zero


def nearest(names: Sequence[str], vectors: np.ndarray, owner: np.ndarray, category: str,
            n: int) -> list[tuple[str, float]]:
    """(name, cosine) of the ``n`` other categories whose centre means are closest to ``category``'s."""
    names = list(names)
    means = centre_means(len(names), vectors, owner)
    me = names.index(category)
    cosines = means @ means[me]
    ranked = sorted((i for i in range(len(names)) if i != me), key=lambda i: (-cosines[i], names[i]))
    return [(names[i], float(cosines[i])) for i in ranked[:n]]
