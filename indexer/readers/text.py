"""Text as the store keeps it: the normal form that identifies a description, its hash, and whether a
string can be stored at all.

Stdlib only; used by every reader and by centre selection (which groups texts by their normal form).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

_WS = re.compile(r"\s+")


def normalise_text(text: str) -> str:
    """NFKC, casefold, collapse whitespace runs to one space, strip."""
    return _WS.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def text_hash(text: str) -> str:
    """The sha1 hex of :func:`normalise_text` of ``text``: two texts with one hash are one description."""
    return hashlib.sha1(normalise_text(text).encode("utf-8")).hexdigest()


def unstorable(s: str) -> bool:
    """True if ``s`` cannot be stored as UTF-8 text in the database (NUL, lone surrogate)."""
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return "\x00" in s
