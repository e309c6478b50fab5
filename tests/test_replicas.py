"""Several service replicas: two ``unibind serve`` processes on one PostgreSQL and one Milvus (a milvus-lite
server on loopback) answer the same, and an ingest uploaded through one replica is seen by the other without a
restart (the catalog version), never half.

Everything is real and runs in subprocesses: the milvus-lite server, the CLI ingest and both services (MiniLM on
the CPU). The test needs the Milvus extra (``pip install 'unibind[milvus]'``): skipped without it, except under CI
(``CI=true``), where a missing pymilvus or milvus-lite fails it. Tests never assert timings: the deadlines below
only bound how long a broken setup hangs.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import fresh_pg_schema
from tests.corpus_samples import ANIMALS, VEHICLES, write_json
from tests.llm_server import stop_process
from tests.test_vector_backends import need_milvus

pytestmark = pytest.mark.slow

KEY = "replica-s3cret"
HEADERS = {"X-API-Key": KEY}
BIN = Path(sys.executable).parent
UNIBIND = str(BIN / "unibind")
MILVUS_LITE = str(BIN / "milvus-lite")
MILVUS_START_S = 60.0
SERVE_START_S = 120.0
JOB_S = 180.0
CATCH_UP_S = 30.0

# the second corpus, uploaded through replica A: the vehicles and a few dozen boat categories (enough rows that
# replica B is queried many times while the job runs); no label is shared with the animals
BOATS = {f"boat {i:02d}": [f"a boat number {i} with white sails on a windy sea",
                           f"a wooden sailing ship of kind {i} moored in a harbour",
                           f"vessel {i}: a hull, a mast and ropes, painted blue and yellow"] for i in range(1, 41)}
FLEET = {**VEHICLES, **BOATS}
OLD = {"kb": sum(map(len, ANIMALS.values()))}
NEW = {**OLD, "fleet": sum(map(len, FLEET.values()))}
OLD_LABELS, NEW_LABELS = set(ANIMALS), set(FLEET)
QUERIES = ["a fish with olive-green scales and red eyes", "a red vehicle with ladders", "a sailing boat in a harbour",
           "a striped pet purring"]


# -- processes ----------------------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def tail(path: Path, n: int = 4000) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-n:]
    except OSError as e:
        return f"<cannot read {path}: {e}>"


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def describe(self) -> str:
        code = self.popen.poll()
        return f"{self.name} ({'running' if code is None else f'exited with {code}'}); its output:\n{tail(self.log)}"


def start(name: str, args: list[str], log: Path, env: dict[str, str]) -> Proc:
    with open(log, "wb") as out:  # the child keeps its own descriptor: no pipe to fill and block on
        popen = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    return Proc(name, popen, log)


def stop(proc: Proc) -> None:
    stop_process(proc.popen)


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNIBIND_")}
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", UNIBIND_API_KEY=KEY, PYTHONUNBUFFERED="1")
    return env


# -- the cluster --------------------------------------------------------------------------------------------------

@dataclass
class Cluster:
    url: str
    home: Path
    vectors: str
    root: Path
    a: httpx.Client
    b: httpx.Client
    procs: dict[str, Proc] = field(default_factory=dict)

    def logs(self) -> str:
        return "\n\n".join(p.describe() for p in self.procs.values())


def wait_for_milvus(proc: Proc, port: int) -> None:
    deadline = time.monotonic() + MILVUS_START_S
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            break
        if accepts(port):
            return
        time.sleep(0.2)
    pytest.fail(f"the milvus-lite server did not accept connections on 127.0.0.1:{port} within {MILVUS_START_S:.0f}s: "
                f"{proc.describe()}")


def wait_for_health(proc: Proc, client: httpx.Client) -> None:
    deadline = time.monotonic() + SERVE_START_S
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            break
        try:
            if client.get("/healthz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    pytest.fail(f"{proc.name} did not answer /healthz within {SERVE_START_S:.0f}s: {proc.describe()}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A milvus-lite server on loopback, the animals ingested through the CLI into a fresh PostgreSQL schema, and two
    ``unibind serve`` replicas on that database, that Milvus and one home folder."""
    need_milvus()
    root = tmp_path_factory.mktemp("replicas")
    home = root / "home"
    home.mkdir()
    env = child_env()
    procs: dict[str, Proc] = {}
    clients: list[httpx.Client] = []
    with fresh_pg_schema() as url:
        try:
            milvus_port = free_port()
            procs["milvus"] = start("milvus-lite server", [
                MILVUS_LITE, "server", "--data-dir", str(root / "milvus"), "--host", "127.0.0.1",
                "--port", str(milvus_port)], root / "milvus.log", env)
            wait_for_milvus(procs["milvus"], milvus_port)
            vectors = f"milvus://127.0.0.1:{milvus_port}"
            base = [UNIBIND, "--db", url, "--home", str(home), "--vectors", vectors, "--device", "cpu"]

            corpus = write_json(root / "animals.json", ANIMALS)
            done = subprocess.run([*base, "ingest", str(corpus), "--name", "kb", "--encoder", "minilm"], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
            assert done.returncode == 0, f"the CLI ingest failed ({done.returncode}):\n{done.stdout.decode()[-4000:]}"

            for name in ("A", "B"):
                port = free_port()
                procs[name] = start(f"replica {name}", [*base, "serve", "--port", str(port)],
                                    root / f"serve-{name}.log", env)
                clients.append(httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=HEADERS, timeout=120))
            for name, client in zip(("A", "B"), clients):
                wait_for_health(procs[name], client)
            yield Cluster(url, home, vectors, root, clients[0], clients[1], procs)
        finally:
            for client in clients:
                client.close()
            for name in ("B", "A", "milvus"):  # the services before the server they use
                if name in procs:
                    stop(procs[name])


# -- asking the replicas ------------------------------------------------------------------------------------------

def ok(response: httpx.Response, cluster: Cluster) -> Any:
    assert response.status_code == 200, (f"{response.request.method} {response.request.url} answered "
                                         f"{response.status_code}: {response.text}\n\n{cluster.logs()}")
    return response.json()


def search(client: httpx.Client, cluster: Cluster, **extra: Any) -> list[dict[str, Any]]:
    answer: list[dict[str, Any]] = ok(client.post("/v1/search", json={"texts": QUERIES, "k": 6, **extra}), cluster)
    return answer


def recognize(client: httpx.Client, cluster: Cluster) -> list[dict[str, Any]]:
    return ok(client.post("/v1/recognize", json={"texts": QUERIES, "k": 3}), cluster)  # type: ignore[no-any-return]


def corpora(client: httpx.Client, cluster: Cluster) -> list[dict[str, Any]]:
    return ok(client.get("/v1/corpora"), cluster)  # type: ignore[no-any-return]


def complete_view(listed: list[dict[str, Any]]) -> dict[str, int]:
    """The complete corpora a listing shows, with their description counts."""
    return {c["name"]: c["descriptions"] for c in listed if c["status"] == "complete"}


def same_hits(x: list[dict[str, Any]], y: list[dict[str, Any]]) -> bool:
    """Search answers with the same hits (ids, labels, texts, metadata) and scores within 1e-6."""
    if [r["query"] for r in x] != [r["query"] for r in y]:
        return False
    for rx, ry in zip(x, y):
        if len(rx["hits"]) != len(ry["hits"]):
            return False
        for hx, hy in zip(rx["hits"], ry["hits"]):
            if {k: v for k, v in hx.items() if k != "score"} != {k: v for k, v in hy.items() if k != "score"}:
                return False
            if not math.isclose(hx["score"], hy["score"], rel_tol=0, abs_tol=1e-6):
                return False
    return True


def same_recognition(x: list[dict[str, Any]], y: list[dict[str, Any]]) -> bool:
    return (len(x) == len(y) and all(
        rx["query"] == ry["query"] and rx["labels"] == ry["labels"] and len(rx["scores"]) == len(ry["scores"])
        and all(math.isclose(s, t, rel_tol=0, abs_tol=1e-6) for s, t in zip(rx["scores"], ry["scores"]))
        for rx, ry in zip(x, y)))


def hit_labels(answer: list[dict[str, Any]]) -> set[str]:
    return {h["label"] for row in answer for h in row["hits"]}


def hit_corpora(answer: list[dict[str, Any]]) -> set[str]:
    return {(h["meta"] or {}).get("corpus") for row in answer for h in row["hits"]}


def recognized_labels(answer: list[dict[str, Any]]) -> set[str]:
    return {label for row in answer for label in row["labels"]}


def upload(client: httpx.Client, cluster: Cluster, table: dict[str, list[str]], name: str) -> str:
    data = "".join(json.dumps({"category": c, "text": t}) + "\n" for c, texts in table.items() for t in texts)
    r = client.post("/v1/corpora", files={"file": (f"{name}.jsonl", data.encode(), "application/octet-stream")},
                    data={"name": name, "source": "test_replicas"})
    assert r.status_code == 202, f"the upload answered {r.status_code}: {r.text}\n\n{cluster.logs()}"
    return r.json()["job"]  # type: ignore[no-any-return]


# -- the tests ----------------------------------------------------------------------------------------------------

def test_both_replicas_answer_the_same(cluster: Cluster) -> None:
    a, b = cluster.a, cluster.b
    assert complete_view(corpora(a, cluster)) == complete_view(corpora(b, cluster)) == OLD

    found_a, found_b = search(a, cluster), search(b, cluster)
    assert hit_labels(found_a) <= OLD_LABELS and all(len(row["hits"]) == 6 for row in found_a)
    assert same_hits(found_a, found_b), (found_a, found_b)
    assert found_a[0]["hits"][0]["label"] == "tench" and hit_corpora(found_a) == {"kb"}

    filtered_a = search(a, cluster, label="goldfish", where={"corpus": "kb"})
    filtered_b = search(b, cluster, label="goldfish", where={"corpus": "kb"})
    assert hit_labels(filtered_a) == {"goldfish"} and same_hits(filtered_a, filtered_b), (filtered_a, filtered_b)

    known_a, known_b = recognize(a, cluster), recognize(b, cluster)
    assert same_recognition(known_a, known_b), (known_a, known_b)
    assert [row["labels"][0] for row in known_a][::3] == ["tench", "tabby cat"]
    # asked again (each replica now has its recognizer loaded), still the same
    assert same_recognition(recognize(b, cluster), known_a) and same_recognition(recognize(a, cluster), known_b)


@dataclass
class Seen:
    """One look at replica B while the job ran: a listing, a search, a recognition and a second listing."""

    before: dict[str, int]
    found: list[dict[str, Any]]
    known: list[dict[str, Any]]
    after: dict[str, int]
    ingesting: list[dict[str, Any]]


def test_an_ingest_through_one_replica_is_seen_by_the_other_never_half(cluster: Cluster) -> None:
    a, b = cluster.a, cluster.b
    assert complete_view(corpora(b, cluster)) == OLD
    old_found, old_known = search(b, cluster), recognize(b, cluster)
    assert same_hits(old_found, search(a, cluster)) and same_recognition(old_known, recognize(a, cluster))

    job = upload(a, cluster, FLEET, "fleet")
    looks: list[Seen] = []
    state = None
    deadline = time.monotonic() + JOB_S
    while time.monotonic() < deadline:
        first = corpora(b, cluster)
        found, known = search(b, cluster), recognize(b, cluster)
        second = corpora(b, cluster)
        looks.append(Seen(complete_view(first), found, known, complete_view(second),
                          [c for c in first + second if c["status"] != "complete"]))
        state = ok(a.get(f"/v1/jobs/{job}"), cluster)
        if state["state"] in ("done", "failed", "interrupted"):
            break
    assert state is not None and state["state"] == "done" and state["error"] is None, (state, cluster.logs())
    assert state["progress"] == {"done": NEW["fleet"], "total": NEW["fleet"]}

    # after the job, B catches up without a restart: it lists the new corpus and answers from it, as A does
    deadline = time.monotonic() + CATCH_UP_S
    while complete_view(corpora(b, cluster)) != NEW and time.monotonic() < deadline:
        time.sleep(0.2)
    assert complete_view(corpora(b, cluster)) == complete_view(corpora(a, cluster)) == NEW
    new_found_a, new_known_a = search(a, cluster), recognize(a, cluster)
    new_found, new_known = search(b, cluster), recognize(b, cluster)
    assert same_hits(new_found, new_found_a), (new_found, new_found_a)
    assert same_recognition(new_known, new_known_a), (new_known, new_known_a)
    assert hit_labels(new_found) & (NEW_LABELS - OLD_LABELS) and recognized_labels(new_known) & NEW_LABELS
    assert new_found[1]["hits"][0]["label"] == "fire truck" and new_found[2]["hits"][0]["label"].startswith("boat")
    assert [row["labels"][0] for row in new_known][:2] == ["tench", "fire truck"]
    assert hit_corpora(new_found) == {"kb", "fleet"}
    assert not same_hits(new_found, old_found)  # the two states are told apart by the answers

    # what B showed at every look: the old state or the new one, never half of it
    assert looks
    for i, look in enumerate(looks):
        where = f"look {i} of {len(looks)} at replica B during the job"
        for view in (look.before, look.after):
            assert view in (OLD, NEW), f"{where}: it listed the complete corpora {view} (old {OLD}, new {NEW})"
        for row in look.ingesting:  # the coming corpus may show as ingesting, but never with a partial count
            assert (row["name"], row["status"]) == ("fleet", "ingesting"), f"{where}: {row}"
            assert row["descriptions"] in (0, NEW["fleet"]), f"{where}: an ingesting corpus with a partial count: {row}"
        old_search, new_search = same_hits(look.found, old_found), same_hits(look.found, new_found)
        old_rec, new_rec = same_recognition(look.known, old_known), same_recognition(look.known, new_known)
        assert old_search or new_search, f"{where}: a search answer neither the old nor the new one: {look.found}"
        assert old_rec or new_rec, f"{where}: a recognition that is neither the old nor the new one: {look.known}"
        # a search runs before the second listing, and B never goes back: its hits come from corpora listed then
        assert hit_corpora(look.found) <= set(look.after), \
            f"{where}: search hits from {hit_corpora(look.found)}, but B listed only {sorted(look.after)}"
        if look.before == look.after == OLD:  # nothing changed around the queries: they saw what B listed
            assert old_search and old_rec and hit_labels(look.found) <= OLD_LABELS, \
                f"{where}: B listed only {OLD} but answered from the new corpus: {look.found} {look.known}"
        if look.before == look.after == NEW:
            assert new_search and new_rec, f"{where}: B listed {NEW} but answered from the old state: {look.found}"
        if look.before == NEW:  # B never goes back
            assert look.after == NEW and all(later.before == NEW for later in looks[i + 1:]), f"{where}: went back"
