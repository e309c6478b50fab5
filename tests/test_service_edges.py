"""The service's edges (FastAPI TestClient, real MiniLM, real databases): one served space fixed at start, body
limits enforced while the body streams in, errors mapped in one place (a 500 carries a request id and nothing
of the server's insides), deletions of complete corpora of the served space only, and ingest jobs that outlive
the process."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, or_, select

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

T = TypeVar("T")


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
    from unibind.indexer.runtime.lease import current_owner

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
    [path] = description_index(db, space, home, Device()).files()
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


# -- the bound on queued uploads ----------------------------------------------------------------------------------
def until(check: Callable[[], T | None], what: str, timeout: float = 120.0) -> T:
    """Poll ``check`` until it returns something, within a deadline (never a guessed sleep)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found is not None:
            return found
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout}s")


def job_in(client: TestClient, job: str, state: str) -> Callable[[], bool | None]:
    def check() -> bool | None:
        r = client.get(f"/v1/jobs/{job}")
        assert r.status_code == 200, r.text
        return True if r.json()["state"] == state else None

    return check


def bounded(db_url: str, home: Path, tmp_path: Path, minilm: Any, bound: int) -> tuple[ServiceState, ServiceConfig]:
    cli(db_url, home, "ingest", str(write_json(tmp_path / "a.json", ANIMALS)), "--name", "kb", "--encoder", "minilm")
    state = make_state(db_url, home, minilm)
    return state, ServiceConfig(replace(state.config.settings, max_queued_uploads=bound))


def test_an_upload_past_the_bound_is_a_429_and_writes_nothing(db_url: str, home: Path, tmp_path: Path,
                                                               minilm: Any) -> None:
    """With one upload slot and a job held running (the test holds the service's compute lock, so the job's encoder
    waits for it), a second upload is a 429 with Retry-After and writes neither a job nor a corpus; once the job
    has ended, uploads are accepted again."""
    state, config = bounded(db_url, home, tmp_path, minilm, 1)
    db = Database(db_url)
    with TestClient(create_app(config, state=state), raise_server_exceptions=False) as client:
        documented = client.get("/openapi.json").json()["paths"]["/v1/corpora"]["post"]["responses"]
        assert "429" in documented and documented["429"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ErrorBody"}
        with state.compute:  # the job's encoder waits until the block ends
            r = upload(client, jsonl(VEHICLES), name="first")
            assert r.status_code == 202, r.text
            first = r.json()["job"]
            until(job_in(client, first, "running"), "the first job running")
            r = upload(client, jsonl(VEHICLES), name="second")
            assert r.status_code == 429, r.text
            assert 0 < int(r.headers["Retry-After"]) <= 60 and len(r.headers["X-Request-ID"]) == 16
            assert "uploads queued or running" in detail(r) and "nothing was written" in detail(r)
            with db.session() as s:
                assert list(s.scalars(select(Job.id))) == [first]
                assert not list(s.scalars(select(Corpus.id).where(
                    or_(Corpus.name == "second", Corpus.target_name == "second"))))
            assert client.get(f"/v1/jobs/{first}").json()["state"] == "running"  # still held: the bound held it
        assert wait(client, first)["state"] == "done"
        r = upload(client, jsonl(VEHICLES), name="third")  # the job freed its slot before it recorded its end
        assert r.status_code == 202, r.text
        assert wait(client, r.json()["job"])["state"] == "done"
        names = {c["name"] for c in client.get("/v1/corpora").json()}
        assert names == {"kb", "first", "third"}
    with db.session() as s:
        assert s.scalar(select(func.count(Job.id))) == 2
    state.close()
    db.dispose()


def test_concurrent_uploads_never_pass_the_bound(db_url: str, home: Path, tmp_path: Path, minilm: Any) -> None:
    """Six uploads at once against two slots (the first job held on the compute lock, the second queued behind it):
    exactly two are accepted, the others are 429s, and only two job rows exist; a failed job frees its slot too."""
    state, config = bounded(db_url, home, tmp_path, minilm, 2)
    db = Database(db_url)
    n = 6
    with TestClient(create_app(config, state=state), raise_server_exceptions=False) as client:
        start = threading.Barrier(n)

        def send(i: int) -> Any:
            start.wait()
            return upload(client, jsonl(VEHICLES), name=f"c{i}")

        with state.compute:
            with ThreadPoolExecutor(n) as pool:
                answers = list(pool.map(send, range(n)))
            assert sorted(r.status_code for r in answers) == [202] * 2 + [429] * (n - 2), [r.text for r in answers]
            assert all("Retry-After" in r.headers for r in answers if r.status_code == 429)
            with db.session() as s:
                assert s.scalar(select(func.count(Job.id))) == 2
        jobs = [r.json()["job"] for r in answers if r.status_code == 202]
        assert [wait(client, j)["state"] for j in jobs] == ["done", "done"]
        # a job that fails frees its slot too: two uploads of one name sent while neither can finish are both
        # accepted; the second one's ingest finds the first's corpus and fails
        with state.compute:
            twins = [upload(client, jsonl(VEHICLES), name="dup") for _ in range(2)]
        assert [r.status_code for r in twins] == [202, 202], [r.text for r in twins]
        assert [wait(client, r.json()["job"])["state"] for r in twins] == ["done", "failed"]

        def accepted() -> Any:
            r = upload(client, jsonl(VEHICLES), name="after")
            return None if r.status_code == 429 else r

        r = until(accepted, "an upload accepted after a failed job")
        assert r.status_code == 202 and wait(client, r.json()["job"])["state"] == "done"
    state.close()
    db.dispose()


# -- no answer names a path of the server -------------------------------------------------------------------------
SERVER_PATH = re.compile(r"(?<![\w.:@/-])~?/[^\s/'\"`]+/")  # an absolute path with a folder in it (not a URL's //)


def assert_no_server_path(text: str, *folders: Path) -> None:
    assert not SERVER_PATH.search(text), text
    for folder in folders:
        assert str(folder) not in text and folder.name not in text, (folder, text)


def test_the_path_helper_keeps_routes_urls_and_names() -> None:
    from unibind.retrieval.service.errors import strip_paths

    assert strip_paths("the milvus-lite folder /srv/kb/lite could not be opened; run `milvus-lite server --data-dir "
                       "/srv/kb/lite` and use --vectors milvus://127.0.0.1:19531.") == (
        "the milvus-lite folder lite could not be opened; run `milvus-lite server --data-dir lite` and use --vectors "
        "milvus://127.0.0.1:19531.")
    assert strip_paths("Milvus at /srv/kb/milvus.db: search failed") == "Milvus at milvus.db: search failed"
    assert strip_paths('socket "/var/run/postgresql/.s.PGSQL.5432" failed') == 'socket ".s.PGSQL.5432" failed'
    assert strip_paths("~/kb/x.db, file:///srv/a.png and milvus-lite:/srv/v.") == "x.db, file://a.png and milvus-lite:v."
    for kept in ("ingest a corpus first (POST /v1/corpora, or unibind ingest FILE --name N)", "see /healthz",
                 "upload as multipart/form-data", "3/4 and a / b", "Milvus at http://10.0.0.5:19530 is down",
                 "this service serves the space st:/models/x", "open_clip:tiny@/srv/m/tiny.pt"):  # and specs
        assert strip_paths(kept) == kept


@pytest.mark.slow
def test_a_missing_thumbnail_names_the_item_and_the_file_only(db_url: str, home: Path, tmp_path: Path) -> None:
    from tests.image_site import draw
    from tests.tiny_models import make_tiny_open_clip

    spec = make_tiny_open_clip(tmp_path / "clip")
    cli(db_url, home, "ingest", str(write_json(tmp_path / "a.json", ANIMALS)), "--name", "kb", "--encoder", spec)
    folder = tmp_path / "secret-images"
    folder.mkdir()
    image = draw(folder / "cat.png", (200, 30, 30), "disc")
    cli(db_url, home, "gallery", "add", "--modality", "image", "--files", str(image))
    from unibind.schema.settings import Settings

    state = ServiceState(ServiceConfig(Settings(database_url=db_url, home=home, device="cpu")), device=Device())
    with TestClient(create_app(state.config, state=state), raise_server_exceptions=False) as client:
        assert client.get("/v1/items/1/thumbnail").status_code == 200
        image.unlink()
        r = client.get("/v1/items/1/thumbnail")
        assert r.status_code == 404 and detail(r) == "item 1's image file 'cat.png' is missing (or not a file)"
        assert_no_server_path(r.text, folder, tmp_path)
        image.mkdir()  # a folder where the file was
        r = client.get("/v1/items/1/thumbnail")
        assert r.status_code == 404 and "'cat.png'" in detail(r)
        assert_no_server_path(r.text, folder, tmp_path)
    state.close()


def test_corpora_show_the_origin_s_file_name_only(served: tuple[str, Path, ServiceState, TestClient],
                                                  tmp_path: Path) -> None:
    """A corpus the CLI read from a file in a temp folder lists as its file's base name; a builtin one by its name;
    the store keeps the full path."""
    url, _, _, client = served
    db = Database(url)
    with db.transaction() as s:
        space = s.scalars(select(Space)).one()
        s.add(Corpus(space_id=space.id, name="builtin-one", status=CorpusStatus.COMPLETE,
                     origin="builtin:cupl-imagenet", completed_at=datetime.now(timezone.utc)))
    r = client.get("/v1/corpora")
    assert r.status_code == 200, r.text
    origins = {c["name"]: c["origin"] for c in r.json()}
    assert origins == {"kb": "a.json", "builtin-one": "builtin:cupl-imagenet"}
    assert_no_server_path(r.text, tmp_path)
    with db.session() as s:  # the store keeps where it came from
        assert s.scalars(select(Corpus.origin).where(Corpus.name == "kb")).one() == str(tmp_path / "a.json")
    db.dispose()


@pytest.fixture
def held_lite_folder(tmp_path: Path) -> Iterator[Path]:
    """A milvus-lite folder another process holds open (one process at a time may open one)."""
    from tests.test_vector_backends import need_milvus

    need_milvus()
    folder = tmp_path / "private-vectors" / "lite"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import time\n"
        "from unibind.indexer.index.milvus_backend import MilvusBackend\n"
        f"b = MilvusBackend({str(folder)!r}, 'rows', 4)\n"
        "print('open', flush=True)\n"
        "time.sleep(300)\n")], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        yield folder
    finally:
        holder.kill()
        holder.wait(timeout=30)


@pytest.mark.slow
def test_an_unavailable_milvus_is_a_503_naming_no_path(held_lite_folder: Path, tmp_path: Path) -> None:
    """The real backend's Unavailable errors (a milvus-lite folder another process holds; a server that cannot be
    reached), answered by the service: a 503 with Retry-After, the CLI's advice kept, but no path of the server."""
    from unibind.indexer.index.milvus_backend import MilvusBackend
    from unibind.schema.errors import Unavailable
    from unibind.schema.settings import Settings

    errors: list[Unavailable] = []
    for uri in (str(held_lite_folder), "http://127.0.0.1:1"):
        with pytest.raises(Unavailable) as info:
            MilvusBackend(uri, "rows", 4, timeout=5)
        errors.append(info.value)
    assert str(held_lite_folder) in str(errors[0])  # the CLI's message names the folder in full
    config = ServiceConfig(Settings(database_url=f"sqlite:///{tmp_path / 'x.db'}", home=tmp_path))
    app = create_app(config)  # no lifespan: the error mapping needs no loaded service
    for i, error in enumerate(errors):
        def fail(error: Unavailable = error) -> None:
            raise error

        app.add_api_route(f"/v1/milvus{i}", fail)
    client = TestClient(app, raise_server_exceptions=False)
    lite, remote = client.get("/v1/milvus0"), client.get("/v1/milvus1")
    for r in (lite, remote):
        assert r.status_code == 503 and int(r.headers["Retry-After"]) > 0, r.text
        assert_no_server_path(r.text, held_lite_folder.parent, tmp_path)
    assert detail(lite).startswith("the milvus-lite folder lite could not be opened")
    assert "one process at a time may open it" in detail(lite) and "--data-dir lite " in detail(lite)
    assert "Milvus at http://127.0.0.1:1 cannot be reached" in detail(remote)


@pytest.mark.slow
def test_an_upload_job_failing_on_milvus_reports_no_path(db_url: str, home: Path, held_lite_folder: Path,
                                                         minilm: Any, tmp_path: Path) -> None:
    """A service whose --vectors folder another process holds: the upload's job fails Unavailable, and
    ``GET /v1/jobs/{id}`` names the folder by its base name only (the store keeps the full message)."""
    from unibind.schema.settings import Settings

    settings = Settings(database_url=db_url, home=home, device="cpu", vectors=f"milvus-lite:{held_lite_folder}")
    state = ServiceState(ServiceConfig(settings), device=Device())
    state.preload_encoder(minilm)
    with TestClient(create_app(state.config, state=state), raise_server_exceptions=False) as client:
        r = upload(client, jsonl(ANIMALS), name="kb", encoder="minilm")
        assert r.status_code == 202, r.text
        job = wait(client, r.json()["job"])
        assert job["state"] == "failed" and job["error"].startswith("Unavailable: "), job
        assert "lite" in job["error"]
        listed = client.get("/v1/jobs")
        for text in (json.dumps(job), listed.text):
            assert_no_server_path(text, held_lite_folder.parent, tmp_path)
    db = Database(db_url)
    with db.session() as s:
        assert str(held_lite_folder) in s.get(Job, job["id"]).error
    db.dispose()
    state.close()
