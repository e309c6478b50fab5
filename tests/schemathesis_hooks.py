"""Schemathesis hooks for the service's schema: a generated corpus upload carries a real corpus, and the centre
route's deprecated ``k`` agrees with ``centre_size`` when both are sent.

A schema says a part is a file (``format: binary``); it cannot say which bytes make a corpus, so a generator
sends any bytes (a PNG, random ones) and every such upload is rightly a 400 naming the line it could not read.
This hook gives ``POST /v1/corpora``'s ``file`` part a small corpus in the format the form names (``format``,
or JSON when ``key`` names a key, else JSONL), so the other fields are what the run explores. Cases
generated to break the schema are left as they are. Images need no hook here: the test's space takes no
images, which the service answers (409) before it looks at the bytes.

Schemathesis re-validates a body a hook changed and reads its file part as text, so it would take the body
written here for a schema-invalid one; ``filter_failure`` drops that one verdict (and only when no other part
of the request was generated to break the schema). The repository's ``schemathesis.toml`` names this module,
so a ``schemathesis run`` started there loads it; the pytest run imports it.

``GET /v1/categories/{name}/centre`` takes the centre size as ``centre_size`` or by its deprecated name ``k``;
both sent must be equal (two values for one thing are a 400), which no OpenAPI schema can state. ``before_call``
makes two valid, different values equal, so generated requests explore each name; invalid values are left as
generated, to be rejected.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import schemathesis
from schemathesis.core.parameters import ParameterLocation
from schemathesis.transport.serialization import Binary  # how schemathesis holds a generated file's bytes

UPLOAD = ("POST", "/v1/corpora")
CENTRE = ("GET", "/v1/categories/{name}/centre")
REWRITTEN: set[int] = set()  # ids of the cases whose file this hook wrote
TABLE = {"kite": ["a bird of prey that hovers over fields", "a toy on a string in the wind"]}


def corpus_bytes(fmt: str, key: str | None) -> bytes:
    """A two-line corpus of one category in ``fmt`` (``key``: the JSON key that holds the table)."""
    if fmt == "json":
        return json.dumps({key: TABLE} if key else TABLE).encode()
    rows = [(category, text) for category, texts in TABLE.items() for text in texts]
    if fmt == "jsonl":
        return "".join(json.dumps({"category": c, "text": t}) + "\n" for c, t in rows).encode()
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(("category", "text"))
    writer.writerows(rows)
    return out.getvalue().encode()


@schemathesis.hook
def before_call(ctx: Any, case: Any, **kwargs: Any) -> None:
    _one_centre_size(case)
    operation, body = case.operation, case.body
    if (operation.method.upper(), operation.path) != UPLOAD or not isinstance(body, dict):
        return
    meta = case.meta
    if meta is not None and (meta.generation.mode.is_negative
                             or any(c.mode.is_negative for c in meta.components.values())):
        return  # a case that breaks the schema somewhere stays as generated: its file is one more reason to reject it
    key = body.get("key") if isinstance(body.get("key"), str) and body.get("key") else None
    fmt = body.get("format")
    if key is not None and fmt in (None, "jsonl", "csv"):
        fmt = "json"  # a key names a JSON file's table
    if fmt is None:
        fmt = "jsonl"
    if fmt not in ("json", "jsonl", "csv"):  # a schema-invalid format: left to be rejected
        return
    case.body = {**body, "format": fmt, "file": as_binary(corpus_bytes(fmt, key))}
    REWRITTEN.add(id(case))


@schemathesis.hook
def filter_failure(ctx: Any, failure: Any, case: Any, response: Any) -> bool:
    """Schemathesis re-validates a body a hook changed and cannot read a file part of it, so it takes the corpus
    written above for a schema-invalid body; "schema-invalid data accepted" is then no finding, unless another
    part of the request was generated to break the schema."""
    if id(case) not in REWRITTEN or type(failure).__name__ != "AcceptedNegativeData":
        return True
    return any(info.mode.is_negative for location, info in case.meta.components.items()
               if location != ParameterLocation.BODY)


def _size(value: Any) -> int | None:
    """A query value that is a valid centre size (an integer >= 1, as generated or as text), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 1 else None
    return int(value) if isinstance(value, str) and value.isdigit() and int(value) >= 1 else None


def _one_centre_size(case: Any) -> None:
    """The centre route: a valid ``k`` that differs from a valid ``centre_size`` takes its value."""
    query = case.query
    if (case.operation.method.upper(), case.operation.path) != CENTRE or not isinstance(query, dict):
        return
    centre_size, k = _size(query.get("centre_size")), _size(query.get("k"))
    if centre_size is not None and k is not None and centre_size != k:
        case.query = {**query, "k": query["centre_size"]}


def as_binary(data: bytes) -> Binary:
    """``data`` as schemathesis holds a generated file's bytes (its text, which a re-validation reads, not
    empty, as the schema wants a file)."""
    file = str.__new__(Binary, "<file>")
    file.data = data
    return file
