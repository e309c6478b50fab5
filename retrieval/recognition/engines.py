"""The recognition engines by name."""

from __future__ import annotations

from unibind.indexer.runtime.device import Device
from unibind.retrieval.recognition.dense_engine import DenseEngine
from unibind.retrieval.recognition.faiss_engine import FaissEngine
from unibind.retrieval.recognition.engine import CentreTable, RecognitionEngine, check_top_m
from unibind.schema.errors import InvalidInput

ENGINES: dict[str, type[RecognitionEngine]] = {"faiss": FaissEngine, "dense": DenseEngine}


def make_engine(name: str, table: CentreTable, device: Device, top_m: int = 1) -> RecognitionEngine:
    """Build the recognition engine called ``name`` ("faiss" or "dense") over ``table``, scoring a category
    by the mean of its ``top_m`` best members (1: the paper's max)."""
    try:
        cls = ENGINES[name]
    except KeyError:
        raise InvalidInput(f"unknown recognition engine {name!r}; choose from {', '.join(sorted(ENGINES))}") from None
    return cls(table, device, top_m=check_top_m(top_m))
