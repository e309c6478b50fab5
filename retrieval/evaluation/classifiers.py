"""The classifiers of ``unibind eval zero-shot``, by name: which centre strategy picks a class's members and how a
class scores them (``retrieval/evaluation/zero_shot.py`` builds and scores them). Light to import: the command line
lists them without loading a model."""

from __future__ import annotations

from dataclasses import dataclass

from unibind.retrieval.centres.strategies import DEFAULT_K, DEFAULT_STRATEGY
from unibind.retrieval.recognition.engine import DEFAULT_CENTRING, DEFAULT_TOP_M
from unibind.schema.errors import InvalidInput


@dataclass(frozen=True)
class Classifier:
    name: str
    strategy: str  # the centre strategy that picks a class's members
    top_m: int  # a class scores the mean of its top_m best members (1: the max)
    centring: bool
    what: str
    k: int = DEFAULT_K

    @property
    def uses_kb(self) -> bool:
        return self.strategy not in ("prompt", "templates")


CLASSIFIERS: dict[str, Classifier] = {c.name: c for c in (
    Classifier("prompt", "prompt", 1, False, "the base prompt alone (the encoder's zero-shot classifier)"),
    Classifier("templates", "templates", 1, False, "the mean of CLIP's 80 ImageNet templates (CLIP's ensemble)"),
    Classifier("cupl", "mean", 1, False, "the mean of the class's descriptions (CuPL)"),
    Classifier("paper", "top", 1, False, "the 50 descriptions closest to the base prompt, best member (UniBind)"),
    Classifier("default", DEFAULT_STRATEGY, DEFAULT_TOP_M, DEFAULT_CENTRING,
               f"unibind's default rule: strategy {DEFAULT_STRATEGY}, mean of the {DEFAULT_TOP_M} best members"
               f"{', centred' if DEFAULT_CENTRING else ''}"),
)}


def parse_classifiers(raw: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(s.strip() for s in raw.split(",") if s.strip()))
    if not names:
        raise InvalidInput("--classifiers needs at least one classifier name (comma-separated)")
    unknown = [n for n in names if n not in CLASSIFIERS]
    if unknown:
        raise InvalidInput(f"unknown classifier {unknown[0]!r}; classifiers: {', '.join(CLASSIFIERS)}")
    return names
