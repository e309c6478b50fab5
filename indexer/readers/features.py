"""Read precomputed feature vectors (``.npy`` / ``.pt`` / ``.jsonl``) for a feature modality.

Feature modalities (audio, point, video, ...) take vectors made by an external frozen encoder.
This module loads them as a [N, d] float32 array and validates them; it does not normalise
(that happens in :func:`unibind.indexer.runtime.vectors.normalize`, after the head). Every user mistake raises
:class:`FeatureError` (an ``InvalidInput``) or ``FileNotFoundError`` naming the file, the row or
line, and the rule broken.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
from dataclasses import dataclass
from math import prod
from pathlib import Path
from typing import Any

import numpy as np

from unibind.indexer.readers.jsonio import json_kind, read_jsonl
from unibind.schema.errors import InvalidInput

log = logging.getLogger(__name__)

SUFFIXES = (".npy", ".pt", ".pth", ".jsonl")
VECTOR_KEYS = ("vector", "features", "embedding")  # JSONL: the key that holds a line's vector
TENSOR_KEYS = ("features", "vectors", "embeddings")  # .pt dict: the key that holds the tensor
_CHUNK_ROWS = 65_536


class FeatureError(InvalidInput):
    """A features file breaks a rule; the message names the file, row or line, and the rule."""


@dataclass(frozen=True)
class FeatureSet:
    vectors: np.ndarray  # [N, d] float32, C-contiguous, finite
    source: str  # the file it came from
    rows: list[dict[str, Any]] | None = None  # JSONL only: the other fields of each line

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def __len__(self) -> int:
        return int(self.vectors.shape[0])


def parse_row_index(value: Any, n: int | None, *, where: str) -> int:
    """``value`` as a row index into a features file of ``n`` rows (no upper bound if None)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        shown = value if isinstance(value, (int, float)) and not isinstance(value, bool) \
            else json_kind(value)
        raise InvalidInput(f"{where}: row index must be a non-negative integer (got {shown})")
    if n is not None and value >= n:
        raise InvalidInput(f"{where}: row index {value} is out of range; the features file has "
                         f"{n} rows (0..{n - 1})")
    return value


def _load_npy(label: str) -> np.ndarray:
    """Check the .npy header (format, dtype), then memory-map the data read-only."""
    try:
        with open(label, "rb") as f:
            magic = f.read(6)
            if not magic:
                raise FeatureError(f"{label}: the file is empty; expected a .npy array")
            if magic != b"\x93NUMPY":
                kind = "an .npz archive" if magic[:2] == b"PK" else "not a .npy file"
                raise FeatureError(f"{label}: {kind} (no NumPy header); save one array with "
                                   f"np.save")
            f.seek(0)
            fmt = np.lib.format
            read_header = fmt.read_array_header_1_0 if fmt.read_magic(f) == (1, 0) \
                else fmt.read_array_header_2_0
            shape, _, dtype = read_header(f)  # (shape, fortran_order, dtype)
            have, need = os.fstat(f.fileno()).st_size - f.tell(), dtype.itemsize * prod(shape)
    except FeatureError:
        raise
    except OSError as e:
        raise FeatureError(f"{label}: cannot read the file: {e.strerror or e}") from e
    except Exception as e:  # a corrupt header can fail in many ways; all are the user's file
        raise FeatureError(f"{label}: cannot read as a .npy array: bad header: {e}") from e
    _check_dtype(label, dtype)
    if have < need:
        raise FeatureError(f"{label}: truncated: the header says shape {shape} of {dtype} "
                           f"({need} bytes of data) but the file holds {have}")
    try:
        return np.load(label, mmap_mode="r", allow_pickle=False)
    except Exception as e:  # e.g. data shorter than the header says
        raise FeatureError(f"{label}: cannot read as a .npy array: {e}") from e


def _load_pt(label: str) -> np.ndarray:
    import torch  # only .pt files need torch

    try:
        obj = torch.load(label, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # Python objects other than tensors and containers
        why = next((ln.strip() for ln in str(e).splitlines() if "Unsupported" in ln), "")
        raise FeatureError(f"{label}: holds Python objects that a weights-only torch.load refuses"
                           f"{' (' + why.split('. ')[0] + ')' if why else ''}; save only tensors "
                           f"(a tensor, or a dict of tensors)") from e
    except Exception as e:  # corrupt zip, truncation, not a torch file, ...
        raise FeatureError(f"{label}: cannot read as a torch file: "
                           f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from e
    if isinstance(obj, dict):
        named = [k for k in TENSOR_KEYS if k in obj]
        tensors = [k for k, v in obj.items() if isinstance(v, torch.Tensor)]
        if len(named) > 1:
            raise FeatureError(f"{label}: the dict has more than one of the keys "
                               f"{', '.join(map(repr, named))}; keep one")
        if named:
            key = named[0]
        elif len(tensors) == 1:
            key = tensors[0]
        else:
            raise FeatureError(f"{label}: the dict must hold exactly one tensor or one of the keys "
                               f"{', '.join(map(repr, TENSOR_KEYS))} (keys: "
                               f"{', '.join(map(repr, list(obj)[:10]))})")
        obj = obj[key]
        if not isinstance(obj, torch.Tensor):
            raise FeatureError(f"{label}: key {key!r} holds {type(obj).__name__}, not a tensor")
    elif not isinstance(obj, torch.Tensor):
        raise FeatureError(f"{label}: holds {type(obj).__name__}; expected a tensor or a dict "
                           f"with one tensor")
    if obj.is_complex() or obj.dtype == torch.bool:
        raise FeatureError(f"{label}: tensor dtype {obj.dtype} is not a real number type; "
                           f"features must be floats or integers")
    if obj.layout != torch.strided:
        obj = obj.to_dense()
    return obj.detach().to(device="cpu", dtype=torch.float32).numpy()


def _load_jsonl(label: str) -> tuple[np.ndarray, list[dict[str, Any]], list[int]]:
    vectors: list[list[float]] = []
    rows: list[dict[str, Any]] = []
    lines: list[int] = []
    for lineno, obj in read_jsonl(label, what="features", error=FeatureError, allow_nan=True):
        loc = f"{label}:{lineno}"
        if isinstance(obj, list):
            vec, key, rest = obj, "the line", {}
        elif isinstance(obj, dict):
            keys = [k for k in VECTOR_KEYS if k in obj]
            if not keys:
                raise FeatureError(f"{loc}: missing the vector: the object needs one of the keys "
                                   f"{', '.join(map(json.dumps, VECTOR_KEYS))}")
            if len(keys) > 1:
                raise FeatureError(f"{loc}: the object has more than one vector key "
                                   f"({', '.join(map(json.dumps, keys))}); keep one")
            key = json.dumps(keys[0])
            vec, rest = obj[keys[0]], {k: v for k, v in obj.items() if k != keys[0]}
            if not isinstance(vec, list):
                raise FeatureError(f"{loc}: {key} must be an array of numbers (got {json_kind(vec)})")
        else:
            raise FeatureError(f"{loc}: each line must be a JSON object with a \"vector\" array, "
                               f"or an array of numbers (got {json_kind(obj)})")
        if not vec:
            raise FeatureError(f"{loc}: the vector is empty (0 dimensions)")
        for j, x in enumerate(vec):
            if isinstance(x, bool) or not isinstance(x, (int, float)):
                raise FeatureError(f"{loc}: {key} entry {j} must be a number (got {json_kind(x)})")
        if vectors and len(vec) != len(vectors[0]):
            raise FeatureError(f"{loc}: the vector has {len(vec)} numbers but the one on line "
                               f"{lines[0]} has {len(vectors[0])}; all rows must have one length")
        vectors.append(vec)
        rows.append(rest)
        lines.append(lineno)
    if not vectors:
        raise FeatureError(f"{label}: holds no vectors (no non-blank lines)")
    with np.errstate(over="ignore"):  # 1e39 becomes inf in float32; reported below
        return np.array(vectors, dtype=np.float32), rows, lines


def _check_dtype(label: str, dtype: np.dtype) -> None:
    if dtype.kind not in "iuf":
        raise FeatureError(f"{label}: array dtype {dtype} is not a real number type; "
                           f"features must be floats or integers")


def _check_shape(label: str, shape: tuple[int, ...], dim: int | None, whom: str) -> None:
    if len(shape) not in (1, 2):
        raise FeatureError(f"{label}: expected a 2-D array [N, d] (or 1-D [d] for one vector), "
                           f"got shape {shape}")
    n, d = (1, shape[0]) if len(shape) == 1 else shape
    if n == 0:
        raise FeatureError(f"{label}: holds no vectors (shape {shape})")
    if d == 0:
        raise FeatureError(f"{label}: vectors have 0 dimensions (shape {shape})")
    if dim is not None and d != dim:
        raise FeatureError(f"{label}: vectors have {d} dimensions, {whom} expects {dim}")


def _to_float32(label: str, arr: np.ndarray) -> np.ndarray:
    """``arr`` as [N, d] C-contiguous float32 in memory: a memmap is copied once, else only
    when the dtype or layout needs it."""
    arr = arr.reshape(1, -1) if arr.ndim == 1 else arr
    try:
        with np.errstate(over="ignore"):  # float64 beyond float32's range: inf, reported later
            if isinstance(arr, np.memmap):
                return np.array(arr, dtype=np.float32, order="C", copy=True)
            return np.ascontiguousarray(arr, dtype=np.float32)
    except (OSError, ValueError) as e:  # e.g. a memmap over a file truncated after the header
        raise FeatureError(f"{label}: cannot read the array data: {e}") from e


def _check_finite(label: str, v: np.ndarray, lines: list[int] | None) -> None:
    """Raise naming the first row with NaN or inf, and how many rows have one."""
    first, count = -1, 0
    for start in range(0, v.shape[0], _CHUNK_ROWS):
        bad = ~np.isfinite(v[start:start + _CHUNK_ROWS]).all(axis=1)  # [chunk]
        k = int(bad.sum())
        if k and first < 0:
            first = start + int(np.argmax(bad))
        count += k
    if count:
        where = f"{label}:{lines[first]}" if lines is not None else label
        raise FeatureError(f"{where}: row {first} contains NaN or inf ({count} of {v.shape[0]} "
                           f"rows do); features must be finite float32 values")


def read_features(path: str | os.PathLike[str], *, dim: int | None = None,
                  modality: str | None = None, what: str = "features") -> FeatureSet:
    """Load and validate a features file: [N, d] float32, finite, d == ``dim`` when given.

    ``.npy`` (2-D, or 1-D for one vector), ``.pt``/``.pth`` (a tensor, or a dict with one tensor
    or a "features"/"vectors"/"embeddings" key) and ``.jsonl`` (one vector per line, as an array
    or an object with a "vector"/"features"/"embedding" key; other keys go to ``rows``).
    ``modality`` and ``what`` only shape the messages.
    """
    label = os.fspath(path)
    suffix = Path(label).suffix.lower()
    if suffix not in SUFFIXES:
        raise FeatureError(f"{label}: unsupported {what} file type {suffix or '(none)'!r}; "
                           f"use one of {', '.join(SUFFIXES)}")
    if not os.path.isfile(label):
        raise FileNotFoundError(f"{what} file not found: {label}")
    whom = f"modality {modality}" if modality else "the caller"
    rows: list[dict[str, Any]] | None = None
    lines: list[int] | None = None
    if suffix == ".jsonl":
        vectors, rows, lines = _load_jsonl(label)
        _check_shape(label, vectors.shape, dim, whom)
    else:
        arr = _load_npy(label) if suffix == ".npy" else _load_pt(label)
        _check_shape(label, arr.shape, dim, whom)
        vectors = _to_float32(label, arr)
        del arr  # drop the memmap
    _check_finite(label, vectors, lines)
    log.info("read %s: %d vectors of %d dimensions", label, vectors.shape[0], vectors.shape[1])
    return FeatureSet(vectors, label, rows)
