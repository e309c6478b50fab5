"""Read a description corpus (JSON / JSONL / CSV) into validated, de-duplicated records.

Stdlib only. Every user mistake raises :class:`CorpusError` naming the file, the line (or key)
and the rule broken; nothing is returned until the whole file has been validated.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unibind.indexer.readers.jsonio import decode_utf8, json_kind, quote, strict_loads, strings_in
from unibind.indexer.readers.text import text_hash, unstorable
from unibind.schema.errors import InvalidInput

logger = logging.getLogger(__name__)

FORMATS = ("json", "jsonl", "csv")
SUFFIXES = {".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}  # file suffix -> format
MAX_CATEGORY_CHARS = 500
MAX_TEXT_CHARS = 20_000
_MAX_KEYS_SHOWN = 10


class CorpusError(InvalidInput):
    """A corpus file breaks a rule; the message names the file, line (or key) and rule."""


@dataclass(frozen=True)
class Record:
    category: str
    text: str  # stripped of surrounding whitespace
    text_hash: str  # sha1 hex of normalise_text(text)
    meta: dict[str, Any] | None  # extra JSONL fields / CSV columns; None when none
    line: int | None  # 1-based source line (JSON: the line of the category key), None if unknown


@dataclass(frozen=True)
class CorpusData:
    path: str
    format: str
    records: list[Record]
    n_duplicates: int
    file_sha256: str

    @property
    def categories(self) -> list[str]:
        """Distinct categories in first-seen order."""
        return list(dict.fromkeys(r.category for r in self.records))


def format_of(filename: str) -> str | None:
    """The corpus format a file name's suffix says (:data:`SUFFIXES`), or None if it says none."""
    return SUFFIXES.get(Path(filename).suffix.lower())


def _q(s: str) -> str:
    return quote(s, 60)


def _string_problem(v: Any, what: str, limit: int) -> str | None:
    """Why ``v`` is not an acceptable category/text, or None if it is."""
    if not isinstance(v, str) or not v.strip():
        return f"{what} must be a non-empty string (got {json_kind(v)})"
    if len(v.strip()) > limit:
        return f"{what} is {len(v.strip())} characters long; the limit is {limit}"
    if unstorable(v):
        return f"{what} contains a NUL character or an unpaired surrogate escape"
    return None


def _locs(label: str, line: int | None) -> str:
    return f"{label}:{line}" if line is not None else label


class _Builder:
    """Validates fields, builds records and drops (category, text_hash) duplicates."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.records: list[Record] = []
        self.seen: set[tuple[str, str]] = set()
        self.n_duplicates = 0

    def add(self, category: Any, text: Any, meta: dict[str, Any] | None, line: int | None,
            where: str = "", text_what: str = "text") -> None:
        loc = _locs(self.label, line) + where
        for value, what, limit in ((category, "category", MAX_CATEGORY_CHARS),
                                   (text, text_what, MAX_TEXT_CHARS)):
            problem = _string_problem(value, what, limit)
            if problem:
                raise CorpusError(f"{loc}: {problem}")
        if meta and any(unstorable(s) for s in strings_in(meta)):
            raise CorpusError(f"{loc}: an extra field holds a string with a NUL character "
                              f"or an unpaired surrogate escape")
        cat, txt = category.strip(), text.strip()
        h = text_hash(txt)
        if (cat, h) in self.seen:
            self.n_duplicates += 1
            return
        self.seen.add((cat, h))
        self.records.append(Record(cat, txt, h, meta or None, line))


def _loads(s: str, label: str, line: int | None = None) -> Any:
    """json.loads that rejects NaN/Infinity and repeated keys; ``line`` is the JSONL line."""
    try:
        return strict_loads(s)
    except json.JSONDecodeError as e:
        ln = e.lineno if line is None else line + e.lineno - 1
        hint = ("; one object per line is JSONL: name the file .jsonl"
                if line is None and e.msg == "Extra data" else "")
        raise CorpusError(f"{label}:{ln}: invalid JSON: {e.msg} (column {e.colno}){hint}") from e
    except ValueError as e:
        raise CorpusError(f"{_locs(label, line)}: invalid JSON: {e}") from e


def _key_line(text: str, key: str, start: tuple[int, int]) -> tuple[int | None, tuple[int, int]]:
    """Best-effort line of the object key ``key`` at or after ``start`` = (offset, its line).

    Returns (line or None, cursor after the key) so a forward scan stays linear in the file size.
    """
    pos, line = start
    for quoted in (json.dumps(key, ensure_ascii=False), json.dumps(key)):
        m = re.compile(r'(?<!\\)' + re.escape(quoted) + r'\s*:').search(text, pos)
        if m:
            key_line = line + text.count("\n", pos, m.start())
            return key_line, (m.end(), key_line + text.count("\n", m.start(), m.end()))
    return None, start


def _read_json(text: str, b: _Builder, key: str | None) -> None:
    label = b.label
    doc = _loads(text, label)
    if not isinstance(doc, dict):
        first = text.count("\n", 0, len(text) - len(text.lstrip())) + 1
        raise CorpusError(f"{label}:{first}: top level must be an object {{category: [descriptions]}} "
                          f"(got {json_kind(doc)})")
    if not doc:
        raise CorpusError(f"{label}: the top-level object is empty; no records")
    nested = all(isinstance(v, dict) for v in doc.values())
    keys = list(doc)
    shown = ", ".join(_q(k) for k in keys[:_MAX_KEYS_SHOWN])
    shown += f", ... ({len(keys) - _MAX_KEYS_SHOWN} more)" if len(keys) > _MAX_KEYS_SHOWN else ""
    cursor = (0, 1)
    if nested:
        if key is None:
            raise CorpusError(f"{label}: the file holds corpora under keys {shown}; "
                              f"pass --key to pick one")
        if key not in doc:
            raise CorpusError(f"{label}: key {_q(key)} not found; available keys: {shown}")
        _, cursor = _key_line(text, key, cursor)
        doc = doc[key]
        if not doc:
            raise CorpusError(f"{label}: key {_q(key)}: the object is empty; no records")
    elif key is not None:
        raise CorpusError(f"{label}: key {_q(key)} was given but the file is flat "
                          f"({{category: [descriptions]}}); drop --key")
    for cat, items in doc.items():
        line, cursor = _key_line(text, cat, cursor)
        where = f": category {_q(cat)}"
        if not isinstance(items, list):
            raise CorpusError(f"{_locs(label, line)}{where}: value must be an array of description "
                              f"strings (got {json_kind(items)})")
        if not items:
            raise CorpusError(f"{_locs(label, line)}{where}: has no descriptions")
        for i, item in enumerate(items):
            b.add(cat, item, None, line, f"{where}, item {i}", text_what="description")


def _read_jsonl(text: str, b: _Builder) -> None:
    for lineno, raw in enumerate(text.split("\n"), start=1):
        if not raw.strip():
            continue
        obj = _loads(raw, b.label, lineno)
        loc = f"{b.label}:{lineno}"
        if not isinstance(obj, dict):
            raise CorpusError(f"{loc}: each line must be a JSON object with \"category\" and "
                              f"\"text\" (got {json_kind(obj)})")
        for field in ("category", "text"):
            if field not in obj:
                raise CorpusError(f"{loc}: missing required field {_q(field)}")
        meta = {k: v for k, v in obj.items() if k not in ("category", "text")}
        b.add(obj["category"], obj["text"], meta, lineno)


def _read_csv(text: str, b: _Builder) -> None:
    label = b.label
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = [h.strip() for h in next(reader)]
        if len(set(header)) != len(header):
            dup = next(h for h in header if header.count(h) > 1)
            raise CorpusError(f"{label}:{reader.line_num}: header repeats column {_q(dup)}")
        for col in ("category", "text"):
            if col not in header:
                raise CorpusError(f"{label}:{reader.line_num}: header has no {_q(col)} column "
                                  f"(columns: {', '.join(_q(h) for h in header)})")
        ci, ti = header.index("category"), header.index("text")
        for row in reader:
            if not row:
                continue
            if len(row) != len(header):
                raise CorpusError(f"{label}:{reader.line_num}: row has {len(row)} fields, "
                                  f"the header has {len(header)}")
            meta = {h: v for j, (h, v) in enumerate(zip(header, row)) if j not in (ci, ti)}
            b.add(row[ci], row[ti], meta, reader.line_num)
    except csv.Error as e:
        raise CorpusError(f"{label}:{reader.line_num}: malformed CSV: {e}") from e


def read_corpus_bytes(data: bytes, *, label: str, format: str,
                      key: str | None = None) -> CorpusData:
    """Parse and validate a corpus held in memory; ``label`` names it in messages."""
    if format not in FORMATS:
        raise CorpusError(f"{label}: unknown format {format!r}; use one of {', '.join(FORMATS)}")
    if key is not None and format != "json":
        raise CorpusError(f"{label}: --key only applies to .json corpora, not {format}")
    text = decode_utf8(data, label, CorpusError)
    if not text.strip():
        raise CorpusError(f"{label}: the file is empty; no records")
    b = _Builder(label)
    if format == "json":
        _read_json(text, b, key)
    elif format == "jsonl":
        _read_jsonl(text, b)
    else:
        _read_csv(text, b)
    if not b.records:
        raise CorpusError(f"{label}: no records found")
    out = CorpusData(label, format, b.records, b.n_duplicates, hashlib.sha256(data).hexdigest())
    logger.info("read %s: %d records, %d categories, %d duplicates dropped",
                label, len(out.records), len(out.categories), out.n_duplicates)
    return out


def read_corpus(path: str | os.PathLike[str], *, format: str | None = None,
                key: str | None = None) -> CorpusData:
    """Read a corpus file; the format comes from ``format`` or else the file extension."""
    label = os.fspath(path)
    if format is None:
        format = format_of(label)
        if format is None:
            raise CorpusError(f"{label}: cannot tell the corpus format from the extension "
                              f"{Path(label).suffix!r}; use .json, .jsonl/.ndjson or .csv, or pass "
                              f"a format ({', '.join(FORMATS)})")
    if not os.path.exists(label):
        raise FileNotFoundError(f"corpus file not found: {label}")
    try:
        data = Path(label).read_bytes()
    except OSError as e:
        raise CorpusError(f"{label}: cannot read the file: {e.strerror or e}") from e
    return read_corpus_bytes(data, label=label, format=format, key=key)

