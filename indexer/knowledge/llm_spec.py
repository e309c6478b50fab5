"""LLM spec strings: ``openai:<model>``, ``hf:<path-or-hub-id>`` or ``waffle``, parsed in one place.

A spec names *which* model writes the text, not where it is served from (the server's URL is a separate
option), so the same spec on another server shares the cache.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from unibind.schema.errors import InvalidInput

__all__ = ["KINDS", "LLMSpec", "parse_llm_spec"]

KINDS = ("openai", "hf", "waffle")
FORMS = "openai:<model>, hf:<path-or-hub-id> or waffle"


@dataclass(frozen=True)
class LLMSpec:
    """A parsed spec: ``kind`` is one of :data:`KINDS`; ``model`` is empty only for ``waffle``."""

    kind: str
    model: str = ""

    def __str__(self) -> str:
        return self.kind if self.kind == "waffle" else f"{self.kind}:{self.model}"


def parse_llm_spec(raw: str) -> LLMSpec:
    """Parse ``raw`` (the kind word is case-insensitive, surrounding whitespace is ignored; an ``hf:`` path to an
    existing folder becomes absolute); anything that is not one of the three forms raises :class:`InvalidInput`
    naming the spec and listing the forms."""
    text = (raw or "").strip()
    kind, sep, model = text.partition(":")
    kind, model = kind.strip().lower(), model.strip()
    if not sep and kind == "waffle":
        return LLMSpec("waffle")
    if sep and kind == "hf" and model and os.path.isdir(os.path.expanduser(model)):
        return LLMSpec("hf", str(Path(model).expanduser().resolve()))  # one folder, one spec (and one cache)
    if sep and kind in ("openai", "hf") and model:
        return LLMSpec(kind, model)
    if sep and kind in ("openai", "hf"):
        why = f"{kind}: needs a model after the colon"
    elif sep and kind == "waffle":
        why = "waffle takes no model"
    else:
        why = "unknown kind"
    raise InvalidInput(f"LLM spec {raw!r} is not valid ({why}): use {FORMS}")
