"""Read head-training pairs and gallery metadata (JSONL), validated line by line.

A pairs file holds one sample per line: ``{"input": ..., "description": ..., "label": ...}``.
``input`` is an image path (relative paths resolve against the pairs file's folder) or, for a
feature modality, a row index into the ``--features`` file. A metadata file holds one object per
feature row for ``gallery add``. Every user mistake raises :class:`PairsError` (an ``InvalidInput``)
or ``FileNotFoundError`` naming the file, the line, the field and the rule broken.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from unibind.indexer.readers.features import parse_row_index
from unibind.indexer.readers.jsonio import json_kind, quote, read_jsonl, strings_in
from unibind.indexer.readers.text import unstorable
from unibind.schema.errors import InvalidInput

log = logging.getLogger(__name__)

PAIR_KEYS = ("input", "description", "descriptions", "label", "meta")
KINDS = ("image", "features")


class PairsError(InvalidInput):
    """A pairs or metadata file breaks a rule; the message names the file, line and field."""


@dataclass(frozen=True)
class Pair:
    input: Path | int  # an image file (absolute or as resolved) or a row of the features file
    descriptions: tuple[str, ...]  # at least one, each stripped and non-empty
    label: str | None
    line: int  # 1-based line in the pairs file


@dataclass(frozen=True)
class ItemMeta:
    uri: str | None
    label: str | None
    meta: dict[str, Any]  # every other key of the line
    line: int  # 1-based line in the metadata file


def _q(s: str) -> str:
    return quote(s)


def _text_problem(v: Any) -> str | None:
    """Why ``v`` is not a usable non-empty string, or None if it is."""
    if not isinstance(v, str) or not v.strip():
        return f"must be a non-empty string (got {json_kind(v)})"
    if unstorable(v):
        return "contains a NUL character or an unpaired surrogate escape"
    return None


def _optional_text(obj: dict[str, Any], field: str, loc: str) -> str | None:
    v = obj.get(field)
    if v is None:
        return None
    problem = _text_problem(v)
    if problem:
        raise PairsError(f"{loc}: field {_q(field)} {problem}")
    return v.strip()


def _descriptions(obj: dict[str, Any], loc: str) -> tuple[str, ...]:
    keys = [k for k in ("description", "descriptions") if k in obj]
    if not keys:
        raise PairsError(f'{loc}: missing required field "description"')
    if len(keys) == 2:
        raise PairsError(f'{loc}: has both "description" and "descriptions"; use one')
    field = keys[0]
    v = obj[field]
    items = v if isinstance(v, list) else [v]
    if isinstance(v, list) and not v:
        raise PairsError(f"{loc}: field {_q(field)} is an empty array; give at least one "
                         f"description")
    if not isinstance(v, (list, str)):
        raise PairsError(f"{loc}: field {_q(field)} must be a string or an array of strings "
                         f"(got {json_kind(v)})")
    out = []
    for j, item in enumerate(items):
        problem = _text_problem(item)
        if problem:
            where = f"{_q(field)} item {j}" if isinstance(v, list) else f"field {_q(field)}"
            raise PairsError(f"{loc}: {where} {problem}")
        out.append(item.strip())
    return tuple(out)


def _image_input(v: Any, base: Path, loc: str, check_files: bool) -> Path:
    if not isinstance(v, str) or not v.strip():
        raise PairsError(f'{loc}: field "input" must be a non-empty image path string '
                         f"(got {json_kind(v)})")
    p = Path(v)
    resolved = p if p.is_absolute() else base / p
    if check_files and not resolved.is_file():
        how = "" if p.is_absolute() else f" (relative to {base})"
        raise PairsError(f'{loc}: field "input": image file not found: {resolved}{how}')
    return resolved


def read_pairs(path: str | os.PathLike[str], *, kind: Literal["image", "features"],
               n_rows: int | None = None, check_files: bool = True) -> list[Pair]:
    """Read and validate a pairs JSONL file for head training.

    ``kind="features"``: "input" is a row index < ``n_rows`` (unchecked above when None).
    ``kind="image"``: "input" is an image path; when ``check_files`` it must be an existing file.
    """
    if kind not in KINDS:
        raise InvalidInput(f"unknown pairs kind {kind!r}; use one of {', '.join(KINDS)}")
    label = os.fspath(path)
    base = Path(label).resolve().parent
    pairs: list[Pair] = []
    for lineno, obj in read_jsonl(label, what="pairs", error=PairsError):
        loc = f"{label}:{lineno}"
        if not isinstance(obj, dict):
            raise PairsError(f'{loc}: each line must be a JSON object with "input" and '
                             f'"description" (got {json_kind(obj)})')
        unknown = [k for k in obj if k not in PAIR_KEYS]
        if unknown:
            raise PairsError(f"{loc}: unknown field(s) {', '.join(map(_q, unknown))}; allowed: "
                             f"{', '.join(map(_q, PAIR_KEYS))}")
        if "input" not in obj:
            raise PairsError(f'{loc}: missing required field "input"')
        if kind == "features":
            try:
                inp: Path | int = parse_row_index(obj["input"], n_rows,
                                                  where=f'{loc}: field "input"')
            except ValueError as e:
                raise PairsError(str(e)) from e
        else:
            inp = _image_input(obj["input"], base, loc, check_files)
        descriptions = _descriptions(obj, loc)
        if "meta" in obj and not isinstance(obj["meta"], dict):
            raise PairsError(f'{loc}: field "meta" must be an object (got {json_kind(obj["meta"])})')
        pairs.append(Pair(inp, descriptions, _optional_text(obj, "label", loc), lineno))
    if not pairs:
        raise PairsError(f"{label}: the file is empty; no pairs")
    log.info("read %s: %d pairs, %d descriptions", label, len(pairs),
             sum(len(p.descriptions) for p in pairs))
    return pairs


LABEL_MAX = 500  # the store's label column


def _finite(v: Any) -> bool:
    if isinstance(v, float):
        return math.isfinite(v)
    if isinstance(v, dict):
        return all(_finite(x) for x in v.values())
    if isinstance(v, list):
        return all(_finite(x) for x in v)
    return True


def item_meta(obj: Any, loc: str, line: int) -> ItemMeta:
    """One gallery item's metadata from a JSON object: "uri" and "label" (optional strings; a label of at
    most 500 characters) taken out, every other key kept; errors name ``loc``."""
    if not isinstance(obj, dict):
        raise PairsError(f"{loc}: each line must be a JSON object (got {json_kind(obj)})")
    uri = _optional_text(obj, "uri", loc)
    item_label = _optional_text(obj, "label", loc)
    if item_label is not None and len(item_label) > LABEL_MAX:
        raise PairsError(f"{loc}: field \"label\" is {len(item_label)} characters long; the limit is {LABEL_MAX}")
    meta = {k: v for k, v in obj.items() if k not in ("uri", "label")}
    if any(unstorable(s) for s in strings_in(meta)):
        raise PairsError(f"{loc}: a metadata field holds a string with a NUL character or an unpaired surrogate escape")
    if not _finite(meta):
        raise PairsError(f"{loc}: a metadata field holds NaN or Infinity, which JSON cannot store")
    return ItemMeta(uri, item_label, meta, line)


def read_meta(path: str | os.PathLike[str], n: int) -> list[ItemMeta]:
    """Read a gallery metadata JSONL file: exactly one object per feature row (``n`` of them).

    "uri" and "label" (optional strings) are taken out; every other key goes into ``meta``.
    """
    label = os.fspath(path)
    out = [item_meta(obj, f"{label}:{lineno}", lineno) for lineno, obj in read_jsonl(label, what="metadata", error=PairsError)]
    if len(out) != n:
        raise PairsError(f"{label}: has {len(out)} metadata lines but the features have {n} rows; "
                         f"give one line per feature row")
    log.info("read %s: %d metadata lines", label, len(out))
    return out
