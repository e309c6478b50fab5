"""The service's edges (FastAPI TestClient, real MiniLM, real databases): one served space fixed at start, body
limits enforced while the body streams in, errors mapped in one place (a 500 carries a request id and nothing
of the server's insides), deletions of complete corpora of the served space only, and ingest jobs that outlive
the process."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from unibind.indexer.store.contents import description_index
from unibind.indexer.runtime.device import Device
from unibind.retrieval.service.app import create_app
from unibind.retrieval.service.config import MIB, ServiceConfig
from unibind.retrieval.service.state import ServiceState
from unibind.schema import Corpus, CorpusStatus, Database, Job, Space
from unibind.schema.errors import Conflict
from tests.corpus_samples import ANIMALS, VEHICLES, write_json
from tests.test_service import TEXTS, cli, detail, make_state
from tests.test_service_jobs import jsonl, upload, wait


@pytest.fixture
def served(db_url: str, home: Path, tmp_path: Path, minilm: Any) -> Iterator[tuple[str, Path, ServiceState, TestClient]]:
    cli(db_url, home, "ingest", str(write_json(tmp_path / "a.json", ANIMALS)), "--name", "kb", "--encoder", "minilm")
    state = make_state(db_url, home, minilm)
    with TestClient(create_app(state.config, state=state), raise_server_exceptions=False) as client:
        yield db_url, home, state, client
    state.close()


def test_the_served_space_is_fixed_at_start(served: tuple[str, Path, ServiceState, TestClient], tmp_path: Path) -> None:
    from tests.tiny_models import make_tiny_open_clip

    url, home, state, client = served
    spec = make_tiny_open_clip(tmp_path / "clip")
    cli(url, home, "ingest", str(write_json(tmp_path / "v.json", VEHICLES)), "--name", "other", "--encoder", spec)
    r = client.post("/v1/recognize", json={"texts": TEXTS, "k": 1})  # a second space changes nothing here
    assert r.status_code == 200, r.text
    assert client.get("/v1/info").json()["space"] == "minilm"
    r = upload(client, jsonl(VEHICLES), name="more", encoder=spec)
    assert r.status_code == 409 and "this service serves the space minilm" in detail(r) and spec in detail(r)
    r = client.delete("/v1/corpora/other")  # a corpus of another space is not this service's to delete
    assert r.status_code == 404 and detail(r) == "no corpus named 'other'"
    db = Database(url)
    with db.session() as s:
        assert s.scalars(select(Corpus.status).where(Corpus.name == "other")).one() == CorpusStatus.COMPLETE
        assert s.query(Space).count() == 2
    db.dispose()


def test_a_service_without_encoder_refuses_to_start_on_several_spaces(db_url: str, home: Path, tmp_path: Path,
                                                                      minilm: Any) -> None:
    from tests.tiny_models import make_tiny_open_clip

    cli(db_url, home, "ingest", str(write_json(tmp_path / "a.json", ANIMALS)), "--name", "kb", "--encoder", "minilm")
    cli(db_url, home, "ingest", str(write_json(tmp_path / "v.json", VEHICLES)), "--name", "v",
        "--encoder", make_tiny_open_clip(tmp_path / "clip"))
    with pytest.raises(Conflict, match="several spaces exist .* start the service with --encoder"):
        make_state(db_url, home, minilm)


def test_deleting_an_incomplete_corpus_is_a_404(served: tuple[str, Path, ServiceState, TestClient]) -> None:
    url, _, _, client = served
    db = Database(url)
    with db.transaction() as s:
        space = s.scalars(select(Space)).one()
        s.add(Corpus(space_id=space.id, name="~ingesting-abc", target_name="half", status=CorpusStatus.INGESTING,
                     owner=None))
    for name in ("~ingesting-abc", "half"):
        r = client.delete(f"/v1/corpora/{name}")
        assert r.status_code == 404, r.text
    db.dispose()


def test_deleting_a_corpus_still_being_ingested_is_a_409(served: tuple[str, Path, ServiceState, TestClient]) -> None:
    """A live ingest (its process runs) shows in the list under its coming name; deleting it is a conflict with
    the store's state, as in the CLI, naming the process; its hidden name is no corpus of the API."""
    from unibind.indexer.store.lease import current_owner

    url, _, _, client = served
    db = Database(url)
    with db.transaction() as s:
        space = s.scalars(select(Space)).one()
        s.add(Corpus(space_id=space.id, name="~ingesting-abc", target_name="half", status=CorpusStatus.INGESTING,
                     owner=current_owner(), heartbeat_at=datetime.now(timezone.utc)))
    assert ("half", "ingesting") in [(c["name"], c["status"]) for c in client.get("/v1/corpora").json()]
    r = client.delete("/v1/corpora/half")
    assert r.status_code == 409 and detail(r).startswith("corpus 'half' is not complete: it is being ingested by "), r.text
    assert client.delete("/v1/corpora/~ingesting-abc").status_code == 404
    assert "409" in client.get("/openapi.json").json()["paths"]["/v1/corpora/{name}"]["delete"]["responses"]
    db.dispose()


def test_body_limits_declared_and_chunked(db_url: str, home: Path, tmp_path: Path, minilm: Any) -> None:
    cli(db_url, home, "ingest", str(write_json(tmp_path / "a.json", ANIMALS)), "--name", "kb", "--encoder", "minilm")
    state = make_state(db_url, home, minilm)
    state.config = ServiceConfig(replace(state.config.settings, max_upload_mb=1000 / MIB))
    limit = 1000 + 64 * 1024
    big = json.dumps({"texts": ["x" * 100] * 1000}).encode()  # 100 KB, over the limit
    with TestClient(create_app(state.config, state=state), raise_server_exceptions=False) as client:
        r = client.post("/v1/recognize", content=big, headers={"content-type": "application/json"})
        assert r.status_code == 413 and r.json()["detail"] == (f"request body of {len(big)} bytes is larger than the "
                                                               f"limit of {limit} bytes")
        assert len(r.headers["X-Request-ID"]) == 16  # answered by the middleware, through the one mapping
        def chunks() -> Iterator[bytes]:  # no Content-Length (the ASGI-level test below checks the cut-off point)
            for i in range(0, len(big), 4096):
                yield big[i : i + 4096]

        r = client.post("/v1/recognize", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413 and r.json()["detail"] == f"request body is larger than the limit of {limit} bytes"
        body = b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"c.jsonl\"\r\n\r\n" + b"y" * 200_000

        def form() -> Iterator[bytes]:
            for i in range(0, len(body), 4096):
                yield body[i : i + 4096]

        r = client.post("/v1/corpora", content=form(), headers={"content-type": "multipart/form-data; boundary=b"})
        assert r.status_code == 413, r.text
        r = client.post("/v1/recognize", json={"texts": TEXTS[:1], "k": 1})  # small bodies still pass
        assert r.status_code == 200, r.text
    state.close()


def test_an_internal_error_is_a_500_with_a_request_id_only(served: tuple[str, Path, ServiceState, TestClient]) -> None:
    _, _, _, client = served

    def boom() -> None:
        raise RuntimeError("cannot open /srv/secret/unibind-data/indexes/x.faiss")

    client.app.add_api_route("/v1/boom", boom)  # type: ignore[attr-defined]
    r = client.get("/v1/boom")
    assert r.status_code == 500
    rid = r.headers["X-Request-ID"]
    assert r.json() == {"detail": f"internal error (request id {rid})"}
    assert "secret" not in r.text and "Traceback" not in r.text
    ok = client.get("/v1/corpora")
    assert ok.status_code == 200 and len(ok.headers["X-Request-ID"]) == 16 and ok.headers["X-Request-ID"] != rid


def test_a_plain_value_error_is_an_internal_error(served: tuple[str, Path, ServiceState, TestClient]) -> None:
    """Only typed errors are the user's: an untyped ValueError is the code's fault, a 500 with the request id."""
    _, _, _, client = served

    def untyped() -> None:
        raise ValueError("operands could not be broadcast together with shapes (3,) (4,)")

    client.app.add_api_route("/v1/untyped", untyped)  # type: ignore[attr-defined]
    r = client.get("/v1/untyped")
    assert r.status_code == 500 and r.json() == {"detail": f"internal error (request id {r.headers['X-Request-ID']})"}


def test_a_stale_index_is_a_409_naming_one_command(served: tuple[str, Path, ServiceState, TestClient]) -> None:
    url, home, state, client = served
    db = Database(url)
    with db.session() as s:
        space = s.scalars(select(Space)).one()
    path = description_index(db, space, home, Device()).path
    assert path is not None
    path.unlink()
    r = client.post("/v1/search", json={"texts": TEXTS[:1], "k": 2, "target": "descriptions"})
    assert r.status_code == 409 and detail(r).count("unibind index rebuild") == 1 and str(home) not in detail(r)
    db.dispose()


def test_jobs_outlive_the_process(db_url: str, home: Path, tmp_path: Path, minilm: Any) -> None:
    cli(db_url, home, "ingest", str(write_json(tmp_path / "a.json", ANIMALS)), "--name", "kb", "--encoder", "minilm")
    state = make_state(db_url, home, minilm)
    with TestClient(create_app(state.config, state=state)) as client:
        r = upload(client, jsonl(VEHICLES), name="vehicles")
        assert r.status_code == 202, r.text
        job = r.json()["job"]
        assert wait(client, job)["state"] == "done"
    state.close()
    db = Database(db_url)
    now = datetime.now(timezone.utc)
    with db.transaction() as s:  # a job its process was running when it was killed
        s.add(Job(id="f" * 32, kind="ingest", corpus="lost", space="minilm", state="running", done=10, total=100,
                  owner=None, heartbeat_at=now, created_at=now, started_at=now))
    state = make_state(db_url, home, minilm)  # a restart
    with TestClient(create_app(state.config, state=state)) as client:
        r = client.get(f"/v1/jobs/{job}")
        assert r.status_code == 200 and r.json()["state"] == "done" and r.json()["corpus"] == "vehicles"
        r = client.get("/v1/jobs/" + "f" * 32)
        assert r.status_code == 200 and r.json()["state"] == "interrupted" and "stopped" in r.json()["error"]
        assert [j["id"] for j in client.get("/v1/jobs").json()][:2] == ["f" * 32, job]
    state.close()
    with db.session() as s:
        assert s.get(Job, "f" * 32).state == "interrupted"  # recorded at start-up, not only shown
    db.dispose()


@pytest.mark.parametrize("path, content_type", [("/v1/recognize", b"application/json"),
                                                ("/v1/corpora", b"multipart/form-data; boundary=b")])
def test_a_chunked_body_is_cut_off_while_it_streams(tmp_path: Path, path: str, content_type: bytes) -> None:
    """At the ASGI level, as a server delivers a chunked upload: the app stops reading once the body passes the
    limit (the rest is never pulled, let alone spooled) and answers 413."""
    import asyncio

    from unibind.schema.settings import Settings

    config = ServiceConfig(Settings(database_url=f"sqlite:///{tmp_path / 'x.db'}", home=tmp_path,
                                    max_upload_mb=1000 / MIB))
    app = create_app(config)  # no lifespan: the limit answers before any route needs the loaded service
    limit = 1000 + 64 * 1024
    head = b'--b\r\nContent-Disposition: form-data; name="file"; filename="c.jsonl"\r\n\r\n' if b"multipart" in content_type else b""
    chunks = [head + b"x" * 4096] + [b"x" * 4096] * 99  # 400 KB in 100 pieces, no Content-Length
    pulled = 0

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        if pulled < len(chunks):
            pulled += 1
            return {"type": "http.request", "body": chunks[pulled - 1], "more_body": pulled < len(chunks)}
        return {"type": "http.disconnect"}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
             "headers": [(b"content-type", content_type), (b"transfer-encoding", b"chunked")],
             "server": ("testserver", 80), "client": ("127.0.0.1", 5000)}
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert start["status"] == 413 and f"limit of {limit} bytes".encode() in body
    assert pulled == limit // 4096 + 1 < len(chunks)  # cut off at the first piece past the limit


def test_corpora_lists_the_served_space_and_shows_dead_ingests_as_interrupted(
        served: tuple[str, Path, ServiceState, TestClient], tmp_path: Path) -> None:
    from tests.tiny_models import make_tiny_open_clip

    url, home, _, client = served
    cli(url, home, "ingest", str(write_json(tmp_path / "v.json", VEHICLES)), "--name", "other",
        "--encoder", make_tiny_open_clip(tmp_path / "clip"))
    db = Database(url)
    with db.transaction() as s:
        space = s.scalars(select(Space).where(Space.encoder == "minilm")).one()
        s.add(Corpus(space_id=space.id, name="~ingesting-abc", target_name="half", status=CorpusStatus.INGESTING,
                     owner="somehost/abcd/1/99/1", heartbeat_at=datetime(2026, 1, 1, tzinfo=timezone.utc)))
    listed = {c["name"]: (c["space"], c["status"]) for c in client.get("/v1/corpora").json()}
    assert listed == {"kb": ("minilm", "complete"), "half": ("minilm", "interrupted")}
    db.dispose()
