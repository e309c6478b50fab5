"""The category names ``kb generate`` writes about: a comma-separated list, a file (one per line) or a corpus."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

from unibind.indexer.readers.corpus import MAX_CATEGORY_CHARS
from unibind.indexer.readers.jsonio import decode_utf8, read_bytes
from unibind.indexer.readers.text import unstorable
from unibind.schema.errors import InvalidInput

log = logging.getLogger(__name__)


def _checked(names: Sequence[tuple[str, str]]) -> list[str]:
    """(location, name) pairs → distinct names in order; a bad name raises naming its location."""
    out: dict[str, None] = {}
    for where, raw in names:
        name = raw.strip()
        if len(name) > MAX_CATEGORY_CHARS:
            raise InvalidInput(f"{where}: a category name is {len(name)} characters long; the limit is {MAX_CATEGORY_CHARS}")
        if unstorable(name):
            raise InvalidInput(f"{where}: a category name contains a NUL character or an unpaired surrogate")
        if name in out:
            log.warning("%s: category %r is listed twice; asking once", where, name)
        out[name] = None
    return list(out)


def parse_categories(raw: str) -> list[str]:
    """``--categories a,b,c`` → ["a", "b", "c"] (blank items are an error: they are usually a typo)."""
    items = raw.split(",")
    for i, item in enumerate(items, 1):
        if not item.strip():
            raise InvalidInput(f"--categories: item {i} is empty; give comma-separated names, e.g. --categories owl,fox")
    return _checked([(f"--categories item {i}", item) for i, item in enumerate(items, 1)])


def read_categories_file(path: str | os.PathLike[str]) -> list[str]:
    """One category per line (UTF-8; blank lines skipped). An empty file or invalid UTF-8 is an error naming the
    file (and the line of the bad byte)."""
    label = os.fspath(path)
    text = decode_utf8(read_bytes(label, what="categories", error=InvalidInput), label, InvalidInput)
    names = [(f"{label}:{n}", line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not names:
        raise InvalidInput(f"{label}: the file has no category names (one per line)")
    return _checked(names)
