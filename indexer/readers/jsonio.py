"""Strict JSON for the readers: UTF-8 decoding that names the line of a bad byte, JSON that rejects NaN /
Infinity and repeated keys, a JSONL reader, and the words messages use for JSON values.

Stdlib only. Errors are raised as the caller's error type (each reader has its own, all ``InvalidInput``).
"""

from __future__ import annotations

import codecs
import json
import os
from pathlib import Path
from typing import Any

from unibind.schema.errors import InvalidInput


def quote(s: str, limit: int | None = None) -> str:
    """A JSON-quoted rendering of a user string for messages, cut to ``limit`` characters if given."""
    return json.dumps(s if limit is None or len(s) <= limit else s[:limit] + "...", ensure_ascii=False)


def json_kind(v: Any) -> str:
    """The JSON word for ``v``'s type, as messages name it (``empty string`` for a blank string)."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "empty string" if not v.strip() else "string"
    return {dict: "object", list: "array"}.get(type(v), type(v).__name__)


def strings_in(v: Any) -> list[str]:
    """Every string (keys included) inside a JSON-like value."""
    if isinstance(v, str):
        return [v]
    if isinstance(v, dict):
        return [s for k, x in v.items() for s in (k, *strings_in(x))]
    if isinstance(v, list):
        return [s for x in v for s in strings_in(x)]
    return []


def reject_constant(name: str) -> Any:
    """``parse_constant`` hook: NaN, Infinity and -Infinity are not JSON."""
    raise ValueError(f"{name} is not valid JSON")


def reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook``: an object may not repeat a key."""
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {quote(k)} in one object")
        out[k] = v
    return out


def strict_loads(s: str, *, allow_nan: bool = False) -> Any:
    """``json.loads`` that rejects repeated keys, and NaN / Infinity unless ``allow_nan``.

    Raises ``json.JSONDecodeError`` for bad syntax and ``ValueError`` for the two rules; callers turn both
    into their own error naming the file and line.
    """
    if allow_nan:
        return json.loads(s, object_pairs_hook=reject_duplicate_keys)
    return json.loads(s, parse_constant=reject_constant, object_pairs_hook=reject_duplicate_keys)


def decode_utf8(data: bytes, label: str, error: type[InvalidInput]) -> str:
    """``data`` as text (a UTF-8 BOM skipped); invalid UTF-8 raises ``error`` naming the line and byte."""
    bom = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[bom:].decode("utf-8")
    except UnicodeDecodeError as e:
        at = bom + e.start
        line = data.count(b"\n", 0, at) + 1
        raise error(f"{label}:{line}: invalid UTF-8 (byte 0x{data[at]:02x} at byte offset {at}); "
                    f"save the file as UTF-8") from e


def read_bytes(path: str | os.PathLike[str], *, what: str, error: type[InvalidInput]) -> bytes:
    """The bytes of a user's ``what`` file; a missing file is ``FileNotFoundError``, an unreadable one ``error``."""
    label = os.fspath(path)
    if not os.path.isfile(label):
        raise FileNotFoundError(f"{what} file not found: {label}")
    try:
        return Path(label).read_bytes()
    except OSError as e:
        raise error(f"{label}: cannot read the file: {e.strerror or e}") from e


def read_jsonl(path: str | os.PathLike[str], *, what: str, error: type[InvalidInput],
               allow_nan: bool = False) -> list[tuple[int, Any]]:
    """(1-based line number, parsed value) for each non-blank line of a UTF-8 JSONL file.

    A UTF-8 BOM is skipped; invalid UTF-8, invalid JSON and repeated keys raise ``error`` naming
    the line; NaN/Infinity are invalid unless ``allow_nan``. ``what`` names the file kind.
    """
    label = os.fspath(path)
    text = decode_utf8(read_bytes(label, what=what, error=error), label, error)
    out: list[tuple[int, Any]] = []
    for lineno, raw in enumerate(text.split("\n"), start=1):
        if not raw.strip():
            continue
        try:
            out.append((lineno, strict_loads(raw, allow_nan=allow_nan)))
        except json.JSONDecodeError as e:
            raise error(f"{label}:{lineno}: invalid JSON: {e.msg} (column {e.colno})") from e
        except ValueError as e:
            raise error(f"{label}:{lineno}: invalid JSON: {e}") from e
    return out
