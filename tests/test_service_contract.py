"""The contract for any seed: ``schemathesis run --checks all`` (the command schemathesis.toml describes, the
stateful phase and its links included) against a real ``unibind serve`` holding a small corpus, on SQLite and
PostgreSQL, with several seeds. tests/test_service_schema.py covers every operation in-process with one seed;
this runs what a user runs, over HTTP, where a seed once found a 500 (a huge ``centre_size``) and a link to an
operation the upload could not have made possible yet."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.corpus_samples import ANIMALS, write_json
from tests.llm_server import free_port
from tests.test_service import KEY, cli

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
SEEDS = (3, 7, 10)
MAX_EXAMPLES = 25
START_DEADLINE = 600  # seconds: a hang guard; the wait ends on /healthz answering


def _env(db_url: str, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNIBIND_")}
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", UNIBIND_API_KEY=KEY,
               UNIBIND_DATABASE_URL=db_url, UNIBIND_HOME=str(home), PYTHONPATH=str(REPO))
    return env


@pytest.fixture
def served(db_url: str, home: Path, tmp_path: Path) -> Iterator[str]:
    """``unibind serve -v`` on a free loopback port over a store with one small corpus; its base URL (its stderr
    goes to serve.log in ``tmp_path``)."""
    cli(db_url, home, "ingest", str(write_json(tmp_path / "a.json", ANIMALS)), "--name", "kb", "--encoder", "minilm")
    port = free_port()
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "unibind.retrieval.cli", "serve", "--port", str(port), "-v"],
                            env=_env(db_url, home), stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_DEADLINE
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, "unibind serve never answered /healthz"
            try:
                if httpx.get(f"{base}/healthz", timeout=30).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_schemathesis_all_checks_pass_for_several_seeds(served: str, db_url: str, home: Path) -> None:
    schemathesis = Path(sys.executable).parent / "schemathesis"
    if not schemathesis.exists():
        pytest.skip("schemathesis is not installed (pip install -e '.[dev]')")
    for seed in SEEDS:
        run = subprocess.run([str(schemathesis), "run", f"{served}/openapi.json", "--checks", "all",
                              "-H", f"X-API-Key: {KEY}", "--max-examples", str(MAX_EXAMPLES), "--seed", str(seed),
                              # a busy machine draws a plot slowly: a hang guard, not schemathesis' 10 s
                              "--request-timeout", str(START_DEADLINE), "--no-color"],
                             cwd=REPO, env=_env(db_url, home), capture_output=True, text=True, check=False)
        assert run.returncode == 0, f"seed {seed}:\n{run.stdout[-6000:]}\n{run.stderr[-2000:]}"
        assert "Stateful" in run.stdout and " passed" in run.stdout, run.stdout[-3000:]


def test_serve_says_where_it_listens_and_logs_each_request(served: str, tmp_path: Path) -> None:
    """What a user sees in the terminal: one line naming the space, the page's address and the key rule; uvicorn's
    address; an access line per request; and with -v (given after the command) no FAISS loader chatter."""
    assert httpx.get(f"{served}/v1/info", headers={"X-API-Key": KEY}, timeout=60).status_code == 200
    log = tmp_path / "serve.log"
    deadline = time.monotonic() + START_DEADLINE
    while '"GET /v1/info HTTP/1.1" 200' not in log.read_text():  # the access line, once uvicorn has written it
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    text = log.read_text()
    assert (f"unibind: serving space minilm at {served}/ (the page; the API docs at {served}/docs), the API key "
            f"from $UNIBIND_API_KEY; Ctrl-C stops") in text, text
    assert f"Uvicorn running on {served}" in text and "faiss.loader" not in text, text
