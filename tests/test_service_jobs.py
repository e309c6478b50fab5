"""Corpus uploads through the HTTP service (FastAPI TestClient, real MiniLM, real databases): the
synchronous check of the file, the background ingest job and its status, and consistency under change:
queries fired from several threads while one corpus is ingested and another deleted always get a 200
whose labels all come from the corpora complete at that time."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from unibind.retrieval.service import jobs
from unibind.retrieval.service.app import create_app
from unibind.retrieval.service.config import MIB, ServiceConfig
from unibind.schema import Corpus, Database
from tests.corpus_samples import ANIMALS, VEHICLES, write_json
from tests.test_service import TEXTS, cli, detail, make_state

FRUIT = {f"a{i}": [f"a ripe fruit number {i} with a sweet smell", f"an orchard fruit of kind {i}, round and red"]
         for i in range(1, 6)}
BOATS = {f"b{i}": [f"a boat number {i} with sails on the sea", f"a wooden sailing ship of kind {i} in a harbour"]
         for i in range(1, 6)}


def jsonl(table: dict[str, list[str]]) -> bytes:
    return "".join(json.dumps({"category": c, "text": t}) + "\n" for c, texts in table.items() for t in texts).encode()


def upload(client: TestClient, data: bytes, filename: str = "corpus.jsonl", **form: str) -> Any:
    return client.post("/v1/corpora", files={"file": (filename, data, "application/octet-stream")}, data=form)


def wait(client: TestClient, job: str, timeout: float = 600.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = client.get(f"/v1/jobs/{job}")
        assert r.status_code == 200, r.text
        if r.json()["state"] in ("done", "failed"):
            return r.json()  # type: ignore[no-any-return]
        time.sleep(0.05)
    raise AssertionError(f"job {job} did not finish in {timeout}s")


def n_corpora(db_url: str) -> int:
    db = Database(db_url)
    try:
        with db.session() as s:
            return int(s.scalar(select(func.count(Corpus.id))) or 0)
    finally:
        db.dispose()


@pytest.fixture
def served(db_url: str, home: Path, tmp_path: Path, minilm: Any) -> Iterator[TestClient]:
    """A knowledge base with the corpus ``kb`` (animals), served."""
    cli(db_url, home, "ingest", str(write_json(tmp_path / "a.json", ANIMALS)), "--name", "kb", "--encoder", "minilm")
    state = make_state(db_url, home, minilm)
    try:
        with TestClient(create_app(state.config, state=state)) as client:
            yield client
    finally:
        state.close()


def test_the_schema_links_lead_from_an_upload_to_its_job_and_its_corpus(served: TestClient) -> None:
    """Follow the OpenAPI links as a client would: the upload's 202 links to its job (also in Location), the job
    links to the corpus it ingests, which is there once the job is done."""
    paths = served.get("/openapi.json").json()["paths"]
    operations = {op["operationId"]: (path, method) for path, methods in paths.items()
                  for method, op in methods.items() if "operationId" in op}
    r = upload(served, jsonl(BOATS), "boats.jsonl")
    assert r.status_code == 202, r.text
    link = paths["/v1/corpora"]["post"]["responses"]["202"]["links"]["job"]
    assert link["parameters"] == {"job_id": "$response.body#/job"}
    path, method = operations[link["operationId"]]
    job_url = path.replace("{job_id}", r.json()["job"])
    assert (method, r.headers["location"]) == ("get", job_url)
    job = wait(served, r.json()["job"])
    assert job["state"] == "done" and job["corpus"] == "boats", job
    link = paths["/v1/jobs/{job_id}"]["get"]["responses"]["200"]["links"]["corpus"]
    assert link["parameters"] == {"name": "$response.body#/corpus"}
    path, method = operations[link["operationId"]]
    corpus = served.request(method, path.replace("{name}", job["corpus"]))
    assert corpus.status_code == 200 and corpus.json()["name"] == "boats" and corpus.json()["status"] == "complete"
    assert corpus.json() == next(c for c in served.get("/v1/corpora").json() if c["name"] == "boats")
    missing = served.get("/v1/corpora/boatz")
    assert missing.status_code == 404 and "no corpus named 'boatz'" in detail(missing)


def test_upload_ingests_in_a_job_and_queries_see_it(served: TestClient) -> None:
    client = served
    assert client.post("/v1/recognize", json={"texts": TEXTS[1:2], "k": 1}).json()[0]["labels"] != ["fire truck"]
    r = upload(client, jsonl(VEHICLES), "vehicles.jsonl", source="tests")
    assert r.status_code == 202, r.text
    body = r.json()
    assert set(body) == {"job", "status_url"} and body["status_url"] == f"/v1/jobs/{body['job']}"
    job = wait(client, body["job"])
    assert job["state"] == "done" and job["error"] is None, job
    state = client.app.state.service  # type: ignore[attr-defined]
    assert state._snapshot.signature == state.signature()  # the service moved on before the job said done
    assert state._snapshot.loaded_recognizer is not None  # and built the new recognizer ahead of the queries
    assert job["corpus"] == "vehicles" and job["progress"] == {"done": 5, "total": 5}
    assert job["started_at"] <= job["finished_at"]
    listed = {c["name"]: c for c in client.get("/v1/corpora").json()}
    assert set(listed) == {"kb", "vehicles"} and listed["vehicles"]["source"] == "tests"
    assert listed["vehicles"]["descriptions"] == 5
    # no restart: the next query sees the new corpus
    assert client.post("/v1/recognize", json={"texts": TEXTS[1:2], "k": 1}).json()[0]["labels"] == ["fire truck"]

    # a JSON file with an explicit name: the same name again is a 409, and replace=true replaces it
    r = upload(client, json.dumps(VEHICLES).encode(), "v.json", name="vehicles")
    assert r.status_code == 409 and "already exists" in detail(r)
    r = upload(client, json.dumps({"bicycle": VEHICLES["bicycle"]}).encode(), "v.json", name="vehicles", replace="true")
    assert wait(client, r.json()["job"])["state"] == "done"
    assert {c["name"]: c["descriptions"] for c in client.get("/v1/corpora").json()} == {"kb": 10, "vehicles": 3}
    listed_jobs = client.get("/v1/jobs").json()
    assert [j["id"] for j in listed_jobs] == [r.json()["job"], body["job"]]  # newest first
    assert listed_jobs[1] == client.get(f"/v1/jobs/{body['job']}").json()


def test_a_failed_job_records_its_one_line_error(served: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """A user-facing error is recorded as its first line; the server's own trouble as an internal error whose
    details (paths, say) stay in the log."""
    from unibind.schema.errors import Conflict

    for raised, expected in ((Conflict("corpus 'vehicles' is being ingested by process 7\nand more detail"),
                              "Conflict: corpus 'vehicles' is being ingested by process 7"),
                             (OSError(28, "No space left on device", "/srv/data/indexes/x.faiss"), None)):
        def broken(*_: Any, e: BaseException = raised, **__: Any) -> None:
            raise e

        monkeypatch.setattr(jobs, "ingest", broken)
        r = upload(served, jsonl(VEHICLES), "vehicles.jsonl")
        assert r.status_code == 202
        job = wait(served, r.json()["job"])
        assert job["state"] == "failed" and job["finished_at"] is not None
        assert job["error"] == (expected or f"internal error (job {job['id']}; see the server log)")
        assert "/srv" not in json.dumps(job) and job["progress"] == {"done": 0, "total": 5}
    assert [c["name"] for c in served.get("/v1/corpora").json()] == ["kb"]


def test_ingest_reports_progress_every_few_batches(db: Database, home: Path, minilm: Any) -> None:
    from unibind.indexer.readers.corpus import read_corpus_bytes
    from unibind.indexer.runtime.device import Device
    from unibind.indexer.store.ingest import IngestConfig, ingest

    seen: list[tuple[int, int]] = []
    data = read_corpus_bytes(jsonl(VEHICLES), label="v.jsonl", format="jsonl")
    ingest(db, data, IngestConfig(name="v", encoder="minilm", chunk_size=2, progress=False), home=home, device=Device(),
           encoder=minilm, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(2, 5), (4, 5), (5, 5)]
    # one chunk of many batches: the progress (a job's too) moves every few batches, not once at the end
    seen.clear()
    ingest(db, data, IngestConfig(name="w", encoder="minilm", chunk_size=4096, batch_size=1, progress=False),
           home=home, device=Device(), encoder=minilm, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(2, 5), (4, 5), (5, 5)]  # PROGRESS_BATCHES = 2 batches of 1


def test_bad_uploads_are_4xx_and_write_nothing(served: TestClient, db_url: str) -> None:
    client = served
    before = n_corpora(db_url)
    bad = b'{"category": "x", "text": "fine"}\n{"category": "y"}\n'
    r = upload(client, bad, "bad.jsonl")
    assert r.status_code == 400 and detail(r) == "bad.jsonl:2: missing required field \"text\""
    r = upload(client, b'{"category": "x", "text": "fine"}\n', "corpus.txt")
    assert r.status_code == 400 and "give the form field 'format'" in detail(r)
    r = upload(client, b"category,text\nx,fine\n", "corpus.txt", format="xml")
    assert r.status_code == 400 and "unknown format 'xml'" in detail(r)
    r = upload(client, b"category,text\nx,\n", "c.csv")
    assert r.status_code == 400 and detail(r).startswith("c.csv:2")
    r = upload(client, jsonl(VEHICLES), "v.jsonl", name="~hidden")
    assert r.status_code == 400 and "must be 1-200 printable characters" in detail(r)
    r = upload(client, jsonl(VEHICLES), "v.jsonl", replace="maybe")
    assert r.status_code == 422 and "'replace' must be true or false" in detail(r)
    r = upload(client, jsonl(VEHICLES), "v.jsonl", encoder="no-such-encoder:x")  # not an encoder spec at all
    assert r.status_code == 400 and detail(r).startswith("encoder spec 'no-such-encoder:x' is not one of: "), r.text
    r = upload(client, jsonl(VEHICLES), "v.jsonl", encoder="st:/another/model")  # a spec, not the served space's
    assert r.status_code == 409 and detail(r).startswith("this service serves the space minilm; a corpus for "
                                                         "st:/another/model must be ingested"), r.text
    r = upload(client, b"", "empty.jsonl")
    assert r.status_code == 400 and "is empty" in detail(r)
    r = client.post("/v1/corpora", data={"name": "x"}, files={"other": ("x.jsonl", b"{}", "text/plain")})
    assert r.status_code == 422 and "field 'file'" in detail(r)
    r = client.post("/v1/corpora", json={"name": "x"})
    assert r.status_code == 415
    r = client.get("/v1/jobs/nope")
    assert r.status_code == 404 and detail(r) == "no job 'nope'"
    assert n_corpora(db_url) == before


def test_upload_limit(db_url: str, home: Path, tmp_path: Path, minilm: Any) -> None:
    from dataclasses import replace

    cli(db_url, home, "ingest", str(write_json(tmp_path / "a.json", ANIMALS)), "--name", "kb", "--encoder", "minilm")
    state = make_state(db_url, home, minilm)
    state.config = ServiceConfig(replace(state.config.settings, max_upload_mb=100 / MIB))
    try:
        with TestClient(create_app(state.config, state=state)) as client:
            r = upload(client, jsonl(VEHICLES), "v.jsonl")
            assert r.status_code == 413 and "larger than the limit of 100 bytes" in detail(r)
    finally:
        state.close()


def test_queries_stay_consistent_while_corpora_come_and_go(served: TestClient, db_url: str, home: Path,
                                                           tmp_path: Path) -> None:
    """4 threads query without pause while corpus B is uploaded (ingested by the job) and corpus A deleted:
    every answer is a 200 whose labels all belong to corpora that were complete at that time."""
    client = served
    cli(db_url, home, "ingest", str(write_json(tmp_path / "fruit.json", FRUIT)), "--name", "fruit")
    kb, a, b = set(ANIMALS), set(FRUIT), set(BOATS)
    phase = {"b_done": False, "a_deleted": False}
    problems: list[str] = []
    answers: list[set[str]] = []
    stop = threading.Event()
    queries = ["a sailing boat in the harbour", "a sweet red fruit", "a striped cat", "a fish"]

    def fire(i: int) -> None:
        n = 0
        while not stop.is_set():
            text = queries[(i + n) % len(queries)]
            n += 1
            started = dict(phase)  # what was certainly complete (or gone) before the request left
            if n % 2:
                r = client.post("/v1/recognize", json={"texts": [text], "k": 15})
                labels = set(r.json()[0]["labels"]) if r.status_code == 200 else set()
            else:
                r = client.post("/v1/search", json={"texts": [text], "k": 40})
                labels = {h["label"] for h in r.json()[0]["hits"]} if r.status_code == 200 else set()
            if r.status_code != 200:
                problems.append(f"{r.status_code}: {r.text}")
                continue
            allowed = kb | b | (set() if started["a_deleted"] else a)
            if labels - allowed:
                problems.append(f"labels {sorted(labels - allowed)} outside the catalog")
            if n % 2:  # recognize with k above the category count ranks every category of one catalog
                catalogs = [kb | x | y for x in ((a,) if not started["a_deleted"] else ()) + (set(),)
                            for y in ((b,) if started["b_done"] else (b, set()))]
                if labels not in catalogs:
                    problems.append(f"not one catalog: {sorted(labels)}")
                answers.append(labels)

    threads = [threading.Thread(target=fire, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    def until(condition: Callable[[], bool], what: str) -> None:  # an event, not a duration
        deadline = time.monotonic() + 600
        while not condition():
            assert time.monotonic() < deadline and not problems, f"no {what}: {problems[:5]}"
            time.sleep(0.05)

    try:
        until(lambda: len(answers) >= 4, "answers before the upload")
        r = upload(client, jsonl(BOATS), "boats.jsonl")
        assert r.status_code == 202, r.text
        r_del = client.delete("/v1/corpora/fruit")
        assert r_del.status_code == 200, r_del.text
        phase["a_deleted"] = True
        job = wait(client, r.json()["job"])
        assert job["state"] == "done", job
        phase["b_done"] = True
        until(lambda: len(answers) > 8 and any(b <= x for x in answers), "answer from the new catalog")
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert not problems, problems[:5]
    assert len(answers) > 8 and any(not x & b for x in answers) and any(b <= x for x in answers)  # both sides seen
    # after the job: every category of B is known, fruit is gone
    r = client.post("/v1/recognize", json={"texts": ["a boat"], "k": 100})
    assert r.status_code == 200 and set(r.json()[0]["labels"]) == kb | b
    hits = client.post("/v1/search", json={"texts": ["a sailing boat"], "k": 5}).json()[0]["hits"]
    assert {h["label"] for h in hits} <= b


def test_queries_answer_from_the_old_catalog_while_the_new_one_is_built(served: TestClient, db_url: str, home: Path,
                                                                        tmp_path: Path) -> None:
    """A corpus ingested by another process: while one thread builds the new snapshot (here: the build lock is
    held), queries answer at once from the old, whole catalog; the next query after the build sees the corpus."""
    state = served.app.state.service  # type: ignore[attr-defined]
    assert served.post("/v1/search", json={"texts": ["a fish"], "k": 1}).status_code == 200  # both objects loaded
    cli(db_url, home, "ingest", str(write_json(tmp_path / "boats.json", BOATS)), "--name", "boats")
    assert state._rebuild.acquire(timeout=600)
    try:
        r = served.post("/v1/recognize", json={"texts": ["a sailing boat"], "k": 100})
        assert r.status_code == 200 and set(r.json()[0]["labels"]) == set(ANIMALS)  # the old catalog, whole
        hits = served.post("/v1/search", json={"texts": ["a sailing boat"], "k": 100}).json()[0]["hits"]
        assert {h["label"] for h in hits} == set(ANIMALS)
    finally:
        state._rebuild.release()
    r = served.post("/v1/recognize", json={"texts": ["a sailing boat"], "k": 100})
    assert r.status_code == 200 and set(r.json()[0]["labels"]) == set(ANIMALS) | set(BOATS)


class HeldQuery:
    """A query in flight: it took its snapshot and holds it (as a slow query does) until released."""

    def __init__(self, state: Any) -> None:
        self.state, self.taken, self.release = state, threading.Event(), threading.Event()
        self.snapshot: Any = None
        self.thread = threading.Thread(target=self._run)
        self.thread.start()
        assert self.taken.wait(30)

    def _run(self) -> None:
        with self.state.query() as snapshot:
            self.snapshot = snapshot
            self.taken.set()
            self.release.wait(120)

    def texts(self, query: str, k: int) -> list[tuple[int, str | None, str | None]]:
        """The held snapshot's own search, answered from its catalog version."""
        vectors = self.snapshot.encoder().encode_text([query])
        return [(h.id, h.label, h.text) for h in self.snapshot.search("descriptions").search(vectors, k)[0]]

    def done(self) -> None:
        self.release.set()
        self.thread.join(30)


def test_a_deletion_never_waits_for_queries_in_flight(served: TestClient, db_url: str, home: Path,
                                                      tmp_path: Path) -> None:
    """A query in flight keeps its catalog version: the DELETE does not wait for it, the query goes on answering
    from the deleted corpus whole (texts included: the reader lease keeps those rows), and queries sent after the
    DELETE returned never see the corpus."""
    state = served.app.state.service  # type: ignore[attr-defined]
    cli(db_url, home, "ingest", str(write_json(tmp_path / "boats.json", BOATS)), "--name", "boats")
    state.refresh()
    held = HeldQuery(state)
    try:
        before = held.texts("a sailing boat", 4)
        assert len(before) == 4 and all(label in BOATS for _, label, _ in before)
        r = served.delete("/v1/corpora/boats")  # answered while the query is still in flight
        assert r.status_code == 200, r.text
        assert held.thread.is_alive() and n_corpora(db_url) >= 1
        assert state._snapshot.signature == state.signature()  # the service moved on before the DELETE returned
        assert held.texts("a sailing boat", 4) == before  # the held query: its version, whole
        r = served.post("/v1/recognize", json={"texts": ["a sailing boat"], "k": 100})
        assert set(r.json()[0]["labels"]) == set(ANIMALS)
        hits = served.post("/v1/search", json={"texts": ["a sailing boat"], "k": 100}).json()[0]["hits"]
        assert {h["label"] for h in hits} == set(ANIMALS)
    finally:
        held.done()


def test_a_replacing_upload_never_waits_for_queries_in_flight(served: TestClient, db_url: str) -> None:
    """replace=true retires the old corpus in its publish commit: the job does not wait for the queries in flight,
    which keep answering from the old corpus whole, and it says done once the service has moved to the new
    catalog."""
    state = served.app.state.service  # type: ignore[attr-defined]
    held = HeldQuery(state)
    try:
        before = held.texts("a dog", 5)
        assert len(before) == 5 and all(label in ANIMALS for _, label, _ in before)
        r = upload(served, jsonl(BOATS), "kb.jsonl", name="kb", replace="true")
        assert r.status_code == 202, r.text
        job = wait(served, r.json()["job"])
        assert job["state"] == "done", job
        assert held.thread.is_alive() and state._snapshot.signature == state.signature()
        assert held.texts("a dog", 5) == before
        r = served.post("/v1/recognize", json={"texts": ["a fish"], "k": 100})
        assert set(r.json()[0]["labels"]) == set(BOATS)
    finally:
        held.done()
