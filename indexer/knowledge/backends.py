"""The one factory for LLM backends: a spec in, an :class:`LLM` out.

Backend modules are imported only when their kind is asked for, so ``waffle`` needs neither ``openai`` nor
``torch``, and a bad spec fails before anything heavy loads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from unibind.indexer.knowledge.llm_spec import LLMSpec, parse_llm_spec
from unibind.indexer.knowledge.request import LLM

if TYPE_CHECKING:
    from unibind.indexer.knowledge.openai_backend import OpenAIConfig
    from unibind.indexer.runtime.device import Device

__all__ = ["make_llm"]


def make_llm(spec: str | LLMSpec, *, openai: OpenAIConfig | None = None, device: Device | None = None,
             load: bool = True) -> LLM:
    """Build the backend for ``spec``. ``openai`` configures ``openai:`` backends (server, key, concurrency,
    retries); ``device`` is where ``hf:`` models run (None: ``select_device("auto")``); ``load=False`` builds an
    ``hf:`` backend without loading its model (its spec and identity only, for a dry run)."""
    parsed = spec if isinstance(spec, LLMSpec) else parse_llm_spec(spec)
    if parsed.kind == "waffle":
        from unibind.indexer.knowledge.waffle import WaffleBackend

        return WaffleBackend()
    if parsed.kind == "openai":
        from unibind.indexer.knowledge.openai_backend import OpenAIBackend

        return OpenAIBackend(parsed.model, openai)
    if parsed.kind == "hf":
        from unibind.indexer.knowledge.hf_backend import HFBackend
        from unibind.indexer.runtime.device import select_device

        return HFBackend(parsed.model, device or select_device("auto"), load=load)
    raise AssertionError(f"unhandled LLM kind {parsed.kind!r}")  # parse_llm_spec admits only the three kinds
