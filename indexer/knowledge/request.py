"""What the knowledge-base tools ask an LLM backend: one chat request and the backend interface."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Request:
    """One chat completion: a user message (the rendered prompt), optional images (data URLs), sampling settings."""

    prompt: str  # the user message
    category: str | None = None  # the category it is about (the waffle control builds its text from it)
    system: str | None = None  # an optional system message
    images: tuple[str, ...] = ()  # data URLs (``data:image/png;base64,...``) sent beside the prompt
    temperature: float = 0.99
    max_tokens: int = 50
    seed: int = 0  # this request's own seed (derived from the run's --seed, the category, the prompt and the sample)
    stop: tuple[str, ...] = ()  # the text is cut before the first of these


class LLM(ABC):
    """A text generator behind one interface: ``openai:<model>``, ``hf:<path-or-id>`` or ``waffle``."""

    spec: str  # the canonical spec string, e.g. "openai:gpt-4o-mini"
    # False: the texts come from the request's category and seed alone (the waffle control), so no prompt,
    # temperature or request sent is recorded as used
    uses_prompts: bool = True

    @property
    def identity(self) -> str:
        """What enters the cache key besides the request: the model (not where it is served from)."""
        return self.spec

    def describe(self) -> str:
        """A human-readable name for logs and reports."""
        return self.spec

    @abstractmethod
    def run(self, requests: Sequence[Request], on_result: Callable[[int, str], None]) -> None:
        """Answer every request. ``on_result(i, text)`` is called in the calling thread as each request finishes
        (any order), so a caller can save it at once; on a failure that retries did not cure, a typed error
        (``unibind.schema.errors``) is raised and the results already delivered stay delivered."""

    def close(self) -> None:
        """Release connections, threads and models."""
