"""Property-based run of the service's OpenAPI schema (schemathesis over the ASGI app, no network): every
operation, fed generated bodies, paths and queries with the API key sent, never answers a 5xx.

A few examples per operation keep the file short; the knowledge base is SQLite with one small corpus."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402

from unibind.indexer.runtime.device import Device  # noqa: E402
from unibind.retrieval.service.app import create_app  # noqa: E402
from unibind.retrieval.service.config import ServiceConfig  # noqa: E402
from unibind.retrieval.service.state import ServiceState  # noqa: E402
from tests.corpus_samples import ANIMALS, write_json  # noqa: E402
from tests.test_service import KEY, cli  # noqa: E402

HEADERS = {"X-API-Key": KEY}


ROOT = Path(tempfile.mkdtemp(prefix="unibind-schema-"))
URL, HOME = f"sqlite:///{ROOT / 'unibind.db'}", ROOT / "home"
STATE = ServiceState(ServiceConfig(database_url=URL, home=HOME, device="cpu", api_key=KEY, max_k=20), device=Device())
# loaded at import (schemathesis runs the app's lifespan and keeps it for the process); the data comes below
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(STATE.config, state=STATE), headers=HEADERS)


@pytest.fixture(scope="module", autouse=True)
def knowledge_base(minilm: Any) -> Iterator[None]:
    """One small corpus, ingested before the first generated request (the state reloads on the change)."""
    STATE.preload_encoder(minilm)
    cli(URL, HOME, "ingest", str(write_json(ROOT / "a.json", ANIMALS)), "--name", "kb", "--encoder", "minilm")
    yield
    STATE.close()
    shutil.rmtree(ROOT, ignore_errors=True)


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case: Any) -> None:
    case.call_and_validate(headers=HEADERS, checks=[not_a_server_error])
