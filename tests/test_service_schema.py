"""Property-based run of the service's OpenAPI schema (schemathesis over the ASGI app, no network) with ALL of
schemathesis' checks: every operation, fed generated bodies, paths and queries (schema-valid and schema-invalid)
with the API key sent, never answers a 5xx, answers only statuses and bodies its schema documents, accepts
every schema-valid request, rejects every schema-invalid one, and refuses requests without the key.

Seeded, with a bounded number of examples per operation; the knowledge base is SQLite with one small corpus."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import CHECKS, is_check_class, load_all_checks  # noqa: E402

from unibind.indexer.runtime.device import Device  # noqa: E402
from unibind.retrieval.service.app import create_app  # noqa: E402
from unibind.retrieval.service.config import ServiceConfig  # noqa: E402
from unibind.retrieval.service.state import ServiceState  # noqa: E402
from unibind.schema.settings import Settings  # noqa: E402
from tests.corpus_samples import ANIMALS, write_json  # noqa: E402
from tests import schemathesis_hooks  # noqa: E402,F401 - a corpus upload carries a real corpus
from tests.test_service import KEY, cli  # noqa: E402

load_all_checks()
ALL_CHECKS = [check for check in CHECKS.get_all() if not is_check_class(check)]  # what `--checks all` runs per response


ROOT = Path(tempfile.mkdtemp(prefix="unibind-schema-"))
URL, HOME = f"sqlite:///{ROOT / 'unibind.db'}", ROOT / "home"
STATE = ServiceState(ServiceConfig(Settings(database_url=URL, home=HOME, device="cpu", api_key=KEY, max_k=20)),
                     device=Device())
# the repository's schemathesis.toml (what `schemathesis run` reads too), and the key as a client sends it:
# schemathesis fills the schema's APIKey scheme, and leaves it out to check that every protected operation
# refuses a request without it
SETTINGS = (Path(__file__).resolve().parent.parent / "schemathesis.toml").read_text()
CONFIG = schemathesis.config.SchemathesisConfig.from_str(f'{SETTINGS}\n[auth.openapi.APIKey]\napi_key = "{KEY}"\n')
# the state is loaded at import (schemathesis runs the app's lifespan around its calls); the data comes below
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(STATE.config, state=STATE), config=CONFIG)


@pytest.fixture(scope="module", autouse=True)
def knowledge_base(minilm: Any) -> Iterator[None]:
    """One small corpus, ingested before the first generated request (the state reloads on the change)."""
    STATE.preload_encoder(minilm)
    cli(URL, HOME, "ingest", str(write_json(ROOT / "a.json", ANIMALS)), "--name", "kb", "--encoder", "minilm")
    yield
    STATE.close()
    shutil.rmtree(ROOT, ignore_errors=True)


def test_every_check_is_run() -> None:
    names = {check.__name__ for check in ALL_CHECKS}
    assert {"not_a_server_error", "status_code_conformance", "content_type_conformance", "response_schema_conformance",
            "response_headers_conformance", "positive_data_acceptance", "negative_data_rejection", "ignored_auth",
            "unsupported_method", "missing_required_header", "use_after_free",
            "ensure_resource_availability"} <= names, names


@schema.parametrize()
@settings(max_examples=15, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_the_schema_tells_the_truth(case: Any) -> None:
    case.call_and_validate(checks=ALL_CHECKS)
