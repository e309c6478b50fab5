"""Vector conventions in one place: float32, L2-normalised, stored as little-endian bytes."""

from __future__ import annotations

import hashlib

import numpy as np

from unibind.schema.errors import InvalidInput

EPS = 1e-12


def normalize(x: np.ndarray) -> np.ndarray:
    """Return ``x`` as C-contiguous float32 with unit-L2 rows (1-D input is treated as one row).

    Raises InvalidInput on NaN/inf or an all-zero row: such a vector has no direction.
    """
    a = np.asarray(x, dtype=np.float32)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2:
        raise InvalidInput(f"vectors must be 1-D or 2-D, got shape {a.shape}")
    if not np.isfinite(a).all():
        bad = int(np.argwhere(~np.isfinite(a).all(axis=1))[0, 0])
        raise InvalidInput(f"vector {bad} contains NaN or inf")
    norms = np.linalg.norm(a, axis=1, keepdims=True)  # [N, 1]
    if a.shape[0] and (norms < EPS).any():
        bad = int(np.argwhere(norms[:, 0] < EPS)[0, 0])
        raise InvalidInput(f"vector {bad} has zero length and cannot be normalised")
    return np.ascontiguousarray(a / norms, dtype=np.float32)


def to_bytes(v: np.ndarray) -> bytes:
    return np.asarray(v, dtype="<f4").tobytes()


def from_bytes(blobs: list[bytes], dim: int) -> np.ndarray:
    """Stack stored vectors into a [N, dim] float32 array; checks every blob's length."""
    out = np.empty((len(blobs), dim), dtype=np.float32)
    for i, b in enumerate(blobs):
        if len(b) != 4 * dim:
            raise ValueError(f"stored vector {i} has {len(b)} bytes, expected {4 * dim} (dim {dim})")
        out[i] = np.frombuffer(b, dtype="<f4")
    return out


def ids_digest(ids: np.ndarray | list[int]) -> str:
    """A digest of a set of int64 ids (order does not matter)."""
    a = np.sort(np.asarray(ids, dtype="<i8"))
    return hashlib.sha256(a.tobytes()).hexdigest()
