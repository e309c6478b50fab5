"""The HTTP service (FastAPI TestClient, real MiniLM, real databases): every route's happy path against the
library it wraps (Recognizer, CrossModalSearch, the CLI), its error cases (4xx JSON, never a 500), the
limits, the API key and the metrics. The catalog routes also run on PostgreSQL."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from unibind.indexer.runtime.device import Device
from unibind.retrieval.cli.main import main
from unibind.retrieval.search.cross_modal import CrossModalSearch, SearchFilter
from unibind.retrieval.recognition.recognizer import Recognizer
from unibind.retrieval.service.app import create_app
from unibind.retrieval.service.config import MIB, ServiceConfig
from unibind.retrieval.service.state import ServiceState
from unibind.schema import Database, Space
from unibind.schema.errors import InvalidInput
from unibind.schema.settings import SPECS, Settings
from tests.corpus_samples import ANIMALS, VEHICLES, write_json
from tests.test_gallery import D_IN, audio_space, gallery_rows, reference, write_gallery

TEXTS = ["a fish with olive-green scales and red eyes", "a red vehicle with ladders", "a striped pet purring"]
KEY = "s3cret-key"


@dataclass
class World:
    db: Database
    url: str
    home: Path
    state: ServiceState
    client: TestClient
    w: np.ndarray
    b: np.ndarray


def cli(url: str, home: Path | str, *args: str) -> None:
    assert main(["--db", url, "--home", str(home), "--device", "cpu", *args]) == 0


def png(width: int, height: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


def make_state(url: str, home: Path, minilm: Any) -> ServiceState:
    state = ServiceState(ServiceConfig(Settings(database_url=url, home=home, device="cpu")), device=Device())
    state.preload_encoder(minilm)
    return state


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, minilm: Any) -> Iterator[World]:
    """SQLite: two corpora, an audio modality with a head v1 and a 60-item audio gallery, served once."""
    root = tmp_path_factory.mktemp("service")
    home = root / "home"
    url = f"sqlite:///{root / 'unibind.db'}"
    cli(url, str(home), "ingest", str(write_json(root / "animals.json", ANIMALS)), "--name", "kb", "--encoder", "minilm")
    cli(url, str(home), "ingest", str(write_json(root / "vehicles.json", VEHICLES)), "--name", "vehicles",
        "--encoder", "minilm")
    db = Database(url)
    setup = audio_space(db, home)
    raw, metas = gallery_rows(60)
    feats, meta = write_gallery(root, raw, metas)
    cli(url, str(home), "gallery", "add", "--modality", "audio", "--features", str(feats), "--meta", str(meta))
    state = make_state(url, home, minilm)
    with TestClient(create_app(state.config, state=state)) as client:
        yield World(db, url, home, state, client, setup.w, setup.b)
    state.close()
    db.dispose()


def space(db: Database) -> Space:
    with db.session() as s:
        return s.scalars(select(Space)).one()


def detail(response: Any) -> str:
    body = response.json()
    assert set(body) == {"detail"}, body
    return body["detail"] if isinstance(body["detail"], str) else json.dumps(body["detail"])


# -- happy paths against the library ------------------------------------------------------------------
def test_healthz_and_openapi(world: World) -> None:
    assert world.client.get("/healthz").json() == {"status": "ok"}
    schema = world.client.get("/openapi.json").json()
    for path in ("/v1/recognize", "/v1/search", "/v1/corpora", "/v1/corpora/{name}", "/v1/categories/{name}/centre"):
        assert path in schema["paths"]
    body = schema["paths"]["/v1/recognize"]["post"]["requestBody"]["content"]
    assert {"application/json", "multipart/form-data"} <= set(body)
    assert world.client.get("/docs").status_code == 200


def test_recognize_texts_equals_recognizer_and_cli(world: World, minilm: Any, capsys: pytest.CaptureFixture[str]) -> None:
    r = world.client.post("/v1/recognize", json={"texts": TEXTS, "k": 3})
    assert r.status_code == 200, r.text
    rec = Recognizer(world.db, Device(), encoder_obj=minilm)
    expected = rec.recognize_texts(TEXTS, k=3)
    assert r.json() == [{"query": t, "labels": e.labels, "scores": e.scores} for t, e in zip(TEXTS, expected)]
    assert [x["labels"][0] for x in r.json()] == ["tench", "fire truck", "tabby cat"]
    capsys.readouterr()
    args = [a for t in TEXTS for a in ("--text", t)]
    assert main(["--db", world.url, "--home", str(world.home), "--device", "cpu", "recognize", *args, "-k", "3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == r.json()

    labels = ["goldfish", "bicycle"]
    r = world.client.post("/v1/recognize", json={"texts": TEXTS[:1], "k": 5, "labels": labels})
    assert r.status_code == 200 and r.json()[0]["labels"] == rec.recognize_texts(TEXTS[:1], k=5, labels=labels)[0].labels


def test_recognize_features_through_the_head(world: World, minilm: Any) -> None:
    raw = np.random.default_rng(3).standard_normal((4, D_IN)).astype(np.float32)
    r = world.client.post("/v1/recognize", json={"features": raw.tolist(), "modality": "audio", "k": 2})
    assert r.status_code == 200, r.text
    expected = Recognizer(world.db, Device(), encoder_obj=minilm).recognize_vectors(
        reference(raw, world.w, world.b).astype(np.float32), k=2)
    got = r.json()
    assert [g["query"] for g in got] == [f"features[{i}]" for i in range(4)]
    assert [g["labels"] for g in got] == [e.labels for e in expected]
    np.testing.assert_allclose([g["scores"] for g in got], [e.scores for e in expected], atol=1e-5)


def test_search_equals_cross_modal_search(world: World, minilm: Any) -> None:
    sp = space(world.db)
    r = world.client.post("/v1/search", json={"texts": TEXTS, "k": 4})
    assert r.status_code == 200, r.text
    ref = CrossModalSearch(world.db, world.home, Device(), sp, "descriptions").search(minilm.encode_text(TEXTS), k=4)
    assert r.json() == [{"query": t, "hits": [h.__dict__ for h in row]} for t, row in zip(TEXTS, ref)]

    r = world.client.post("/v1/search", json={"texts": TEXTS[:1], "k": 3, "label": "goldfish", "where": {"corpus": "kb"}})
    hits = r.json()[0]["hits"]
    assert r.status_code == 200 and len(hits) == 3 and {h["label"] for h in hits} == {"goldfish"}

    # text → the audio gallery, filtered by metadata
    audio = CrossModalSearch(world.db, world.home, Device(), sp, "audio")
    r = world.client.post("/v1/search", json={"texts": TEXTS[:2], "target": "audio", "k": 5, "where": {"split": "test"}})
    ref = audio.search(minilm.encode_text(TEXTS[:2]), k=5, flt=SearchFilter(where=(("split", "test"),)))
    assert r.status_code == 200 and [[h["id"] for h in q["hits"]] for q in r.json()] == [[h.id for h in row] for row in ref]
    assert all(h["uri"].startswith("clips/") and h["meta"]["split"] == "test" for q in r.json() for h in q["hits"])
    r = world.client.post("/v1/search", json={"texts": TEXTS[:1], "target": "audio", "k": 5, "where": {"n": 3, "ok": False}})
    ref = audio.search(minilm.encode_text(TEXTS[:1]), k=5, flt=SearchFilter(where=(("n", "3"), ("ok", "false"))))
    assert r.status_code == 200 and [h["id"] for h in r.json()[0]["hits"]] == [h.id for h in ref[0]] and len(ref[0]) == 5


def test_centre_route(world: World) -> None:
    r = world.client.get("/v1/categories/tench/centre")
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["category"], body["strategy"], body["centre_size"], body["k"], body["candidates"]) == (
        "tench", "knowledge", 50, 50, 4)
    assert [m["rank"] for m in body["members"]] == [1, 2, 3, 4]
    assert {m["text"] for m in body["members"]} == set(ANIMALS["tench"])
    assert body["members"] == sorted(body["members"], key=lambda m: -m["score"])
    # K is centre_size; k, its old name, still works (and must agree when both are sent)
    for query in ("centre_size=50", "k=50", "centre_size=50&k=50"):
        assert world.client.get(f"/v1/categories/tench/centre?{query}").json() == body, query


def test_centre_size_is_documented_and_k_is_deprecated(world: World) -> None:
    operation = world.client.get("/openapi.json").json()["paths"]["/v1/categories/{name}/centre"]["get"]
    params = {p["name"]: p for p in operation["parameters"]}
    assert "deprecated" not in params["centre_size"] and params["k"]["deprecated"] is True
    assert {"400", "404", "409", "422", "500", "503"} <= set(operation["responses"])


# -- errors and limits ----------------------------------------------------------------------------------
@pytest.mark.parametrize("path, status, message", [
    ("/v1/categories/tenchh/centre", 404, "unknown category 'tenchh'; did you mean 'tench'"),
    ("/v1/categories/tench/centre?centre_size=7&strategy=top", 409,
     ("no centre yet for 'tench' with top, K=7, 'A photo of a {}.': run `unibind centres build --strategy top "
      "--centre-size 7`")),
    ("/v1/categories/tench/centre?k=7&strategy=top", 409, "no centre yet for 'tench' with top, K=7"),
    ("/v1/categories/tench/centre?strategy=nope", 400, "nope"),
    ("/v1/categories/tench/centre?centre_size=0", 422, "greater than or equal to 1"),
    ("/v1/categories/tench/centre?k=0", 422, "greater than or equal to 1"),
    # a size no store's integer holds is refused before any query (it was a 500 from SQLite)
    ("/v1/categories/tench/centre?centre_size=9223372036854775808", 422, "less than or equal to 100000"),
    ("/v1/categories/tench/centre?k=100001", 422, "less than or equal to 100000"),
    ("/v1/categories/tench/centre/plot.png?centre_size=9223372036854775808", 422, "less than or equal to 100000"),
    ("/v1/categories/tench/centre/plot.png?neighbours=13", 422, "less than or equal to 12"),
    ("/v1/categories/tench/centre?template=A%00photo%20of%20a%20%7B%7D.", 400, "no other braces or NUL characters"),
    ("/v1/categories/tench/centre?centre_size=50&k=7", 400,
     "centre_size=50 and k=7 disagree: k is the deprecated name of centre_size; send centre_size only"),
])
def test_centre_errors(world: World, path: str, status: int, message: str) -> None:
    r = world.client.get(path)
    assert r.status_code == status and message in detail(r), r.text


@pytest.mark.parametrize("body, status, message", [
    ({"texts": TEXTS, "k": 101}, 400, "k must be between 1 and 100"),
    ({"texts": TEXTS, "labels": [f"c{i}" for i in range(1001)]}, 400, "1001 labels; the limit is 1000"),
    ({"texts": ["x"] * 65}, 413, "65 queries in one request; the limit is 64"),
    ({"texts": "not a list"}, 422, "list"),
    ({"texts": TEXTS, "features": [[0.0]], "modality": "audio"}, 422, "exactly one of texts or features"),
    ({"features": [[0.0] * D_IN]}, 422, "features need a modality"),
    ({"texts": TEXTS, "bogus": 1}, 422, "bogus"),
    ({"texts": TEXTS, "k": 0}, 422, "greater than or equal to 1"),
    ({"features": [[0.0] * D_IN], "modality": "sonar"}, 404, "unknown modality 'sonar'"),
    ({"features": [[0.0] * 3], "modality": "audio"}, 400, "modality audio expects 16"),
    ({"features": [[0.0] * D_IN], "modality": "text"}, 400, "does not take feature vectors"),
    ({"texts": TEXTS, "labels": ["tenchh"]}, 404, "unknown label 'tenchh'"),
    ({"texts": TEXTS, "labels": []}, 422, "at least 1 item"),
    ({"features": [[0.0] * D_IN, [0.0]], "modality": "audio"}, 400,
     "features: the feature vectors must be rows of numbers, all of one length"),
    ({"texts": TEXTS, "k": 10**30}, 400, "k must be between"),
    ([], 422, "object"),
    (None, 422, ""),
])
def test_recognize_errors(world: World, body: dict[str, Any], status: int, message: str) -> None:
    r = world.client.post("/v1/recognize", json=body)
    assert r.status_code == status and message in detail(r), r.text


def test_search_errors_and_bad_json(world: World) -> None:
    r = world.client.post("/v1/search", json={"texts": TEXTS, "target": "sonar"})
    assert r.status_code == 404 and "unknown modality 'sonar'" in detail(r)
    r = world.client.post("/v1/search", json={"texts": TEXTS, "k": 1000})
    assert r.status_code == 400 and "k must be between" in detail(r)
    r = world.client.post("/v1/search", json={"texts": TEXTS, "label": "tenhc"})  # a typo: 404, not 200 with nothing
    assert r.status_code == 404 and "unknown label 'tenhc' in the descriptions; did you mean 'tench'?" in detail(r)
    r = world.client.post("/v1/search", json={"texts": TEXTS, "label": "tench", "where": {"corpus": "none"}})
    assert r.status_code == 200 and r.json()[0]["hits"] == []  # a known label that the other filter rules out
    r = world.client.post("/v1/search", json={"texts": TEXTS, "where": {"n": [3]}})
    assert r.status_code == 422
    r = world.client.post("/v1/search", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and "json" in detail(r).lower()
    r = world.client.post("/v1/search", content=b"\x80{", headers={"content-type": "application/json"})  # not UTF-8
    assert r.status_code == 422 and r.json()["detail"][0]["type"] == "json_invalid", r.text


def test_image_uploads_and_their_limits(world: World) -> None:
    config = ServiceConfig(Settings(database_url=world.url, home=world.home, max_upload_mb=4000 / MIB,
                                    max_image_pixels=100))
    with TestClient(create_app(config, state=world.state)) as client:
        def post(path: str, data: bytes, **form: str) -> Any:
            return client.post(path, files={"image": ("q.png", data, "image/png")}, data=form)

        r = post("/v1/recognize", np.random.default_rng(0).bytes(5000))
        assert r.status_code == 413 and "larger than the limit of 4000 bytes" in detail(r)
        for data in (png(5, 5), png(20, 20), b"definitely not an image"):  # a MiniLM space has no image tower:
            r = post("/v1/recognize", data, k="3")  # it says so before it decodes anything (limits: below)
            assert r.status_code == 409 and "no image tower and no active image head" in detail(r)
        r = post("/v1/recognize", png(5, 5), k="many")
        assert r.status_code == 422 and "'k' must be an integer" in detail(r)
        r = post("/v1/search", png(5, 5), k="500")
        assert r.status_code == 400 and "k must be between" in detail(r)
        r = client.post("/v1/recognize", files={"other": ("q.png", png(5, 5), "image/png")})
        assert r.status_code == 422 and "field 'image'" in detail(r)


def test_api_key(world: World) -> None:
    config = ServiceConfig(Settings(database_url=world.url, home=world.home, api_key=KEY))
    with TestClient(create_app(config, state=world.state)) as client:
        assert client.get("/healthz").status_code == 200
        for path in ("/v1/corpora", "/metrics", "/v1/categories/tench/centre"):
            r = client.get(path)
            assert r.status_code == 401 and "API key" in detail(r), path
            assert r.headers["WWW-Authenticate"] == "Bearer"
        assert client.get("/v1/corpora", headers={"X-API-Key": "wrong"}).status_code == 401
        assert client.post("/v1/recognize", json={"texts": TEXTS}).status_code == 401
        assert client.get("/v1/corpora", headers={"X-API-Key": KEY}).status_code == 200
        assert client.get("/v1/corpora", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
        r = client.post("/v1/recognize", json={"texts": TEXTS}, headers={"X-API-Key": KEY})
        assert r.status_code == 200 and len(r.json()) == 3


def test_docs_load_with_a_key_and_declare_it(world: World) -> None:
    """With a key, /docs and the schema still load; the schema declares both ways of sending the key on every
    route but /healthz, so Swagger UI's "Authorize" sends it (the same call a browser's "Try it out" makes)."""
    config = ServiceConfig(Settings(database_url=world.url, home=world.home, api_key=KEY))
    with TestClient(create_app(config, state=world.state)) as client:
        docs = client.get("/docs")
        assert docs.status_code == 200 and "swagger-ui" in docs.text and "/openapi.json" in docs.text
        schema = client.get("/openapi.json")
        assert schema.status_code == 200
        doc = schema.json()
        assert doc["components"]["securitySchemes"] == {
            "APIKey": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "the service's key ($UNIBIND_API_KEY)"},
            "Bearer": {"type": "http", "scheme": "bearer", "description": "the service's key as a bearer token"}}
        for path, operations in doc["paths"].items():
            for method, operation in operations.items():
                expected = None if path == "/healthz" else [{"APIKey": []}, {"Bearer": []}]
                assert operation.get("security") == expected, (method, path)
                if expected:
                    assert "401" in operation["responses"], (method, path)
        r = client.get("/v1/categories", headers={"X-API-Key": KEY})  # what "Authorize" then sends
        assert r.status_code == 200 and [c["name"] for c in r.json()][:2] == ["bicycle", "fire truck"]
    without = create_app(ServiceConfig(Settings(database_url=world.url, home=world.home))).openapi()
    assert "securitySchemes" not in without.get("components", {})  # no key: nothing to authorize


def test_metrics_count_requests_and_index_sizes(world: World) -> None:
    config = ServiceConfig(Settings(database_url=world.url, home=world.home))
    with TestClient(create_app(config, state=world.state)) as client:  # a fresh registry
        for _ in range(3):
            client.post("/v1/recognize", json={"texts": TEXTS[:1]})
        client.post("/v1/recognize", json={"texts": TEXTS, "k": 101})
        client.get("/v1/categories/nothing/centre")
        text = client.get("/metrics").text
    n_descriptions = sum(map(len, ANIMALS.values())) + sum(map(len, VEHICLES.values()))
    assert 'unibind_requests_total{method="POST",route="/v1/recognize",status="200"} 3.0' in text
    assert 'unibind_requests_total{method="POST",route="/v1/recognize",status="400"} 1.0' in text
    assert 'unibind_requests_total{method="GET",route="/v1/categories/{name}/centre",status="404"} 1.0' in text
    assert 'unibind_request_seconds_count{method="POST",route="/v1/recognize",status="200"} 3.0' in text
    assert f'unibind_index_vectors{{space="minilm",target="descriptions"}} {float(n_descriptions)}' in text
    assert 'unibind_index_vectors{space="minilm",target="audio"} 60.0' in text


def test_config_is_a_view_of_the_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ServiceConfig has no default and no rule of its own: a broken value is the settings' InvalidInput, naming
    the flag or the variable."""
    for spec in SPECS:
        monkeypatch.delenv(spec.env, raising=False)
    assert [f.name for f in fields(ServiceConfig)] == ["settings"]
    with pytest.raises(InvalidInput, match=r"^--max-k must be an integer >= 1, got 0$"):
        ServiceConfig.from_settings(home=tmp_path, max_k=0)
    monkeypatch.setenv("UNIBIND_PORT", "70000")
    with pytest.raises(InvalidInput, match=r"^\$UNIBIND_PORT must be an integer in 0..65535, got 70000$"):
        ServiceConfig.from_settings(home=tmp_path)
    monkeypatch.delenv("UNIBIND_PORT")
    with pytest.raises(TypeError, match="unknown setting"):
        ServiceConfig.from_settings(home=tmp_path, max_kk=3)
    monkeypatch.setenv("UNIBIND_API_KEY", "  ")
    with pytest.raises(InvalidInput, match=r"^\$UNIBIND_API_KEY must not be blank when set"):
        ServiceConfig.from_settings(home=tmp_path)
    monkeypatch.setenv("UNIBIND_API_KEY", KEY)
    config = ServiceConfig.from_settings(home=tmp_path)
    assert (config.api_key, config.host, config.port, config.max_batch, config.max_k, config.max_labels,
            config.max_upload_bytes, config.max_image_pixels, config.device, config.fp16, config.encoder) == (
        KEY, "127.0.0.1", 8000, 64, 100, 1000, 10 * 2**20, 25_000_000, "auto", False, None)
    assert config.home == tmp_path.resolve() and config.database_url == f"sqlite:///{tmp_path.resolve() / 'unibind.db'}"


# -- the catalog routes on SQLite and PostgreSQL ----------------------------------------------------------
def test_corpora_list_and_delete(db_url: str, home: Path, tmp_path: Path, minilm: Any,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    cli(db_url, home, "ingest", str(write_json(tmp_path / "a.json", ANIMALS)), "--name", "kb", "--encoder", "minilm")
    cli(db_url, home, "ingest", str(write_json(tmp_path / "v.json", VEHICLES)), "--name", "vehicles")
    state = make_state(db_url, home, minilm)
    try:
        with TestClient(create_app(state.config, state=state)) as client:
            capsys.readouterr()
            cli(db_url, home, "corpus", "list", "--json")
            listed = client.get("/v1/corpora")
            assert listed.status_code == 200
            assert listed.json() == [{**row, "created_at": listed.json()[i]["created_at"],
                                      "completed_at": listed.json()[i]["completed_at"],
                                      "origin": Path(row["origin"]).name}  # the API names no server folder
                                     for i, row in enumerate(json.loads(capsys.readouterr().out))]
            assert [c["name"] for c in listed.json()] == ["kb", "vehicles"]
            before = client.post("/v1/recognize", json={"texts": TEXTS[1:2], "k": 5}).json()[0]["labels"]
            assert before[0] == "fire truck"

            r = client.delete("/v1/corpora/vehicles")
            assert r.status_code == 200 and r.json() == {"deleted": "vehicles", "descriptions": 5}
            assert [c["name"] for c in client.get("/v1/corpora").json()] == ["kb"]
            after = client.post("/v1/recognize", json={"texts": TEXTS[1:2], "k": 5}).json()[0]["labels"]
            assert set(after) == set(ANIMALS)  # the reloaded recognizer no longer knows the vehicles
            hits = client.post("/v1/search", json={"texts": TEXTS[1:2], "k": 50}).json()[0]["hits"]
            assert len(hits) == sum(map(len, ANIMALS.values())) and {h["meta"]["corpus"] for h in hits} == {"kb"}

            r = client.delete("/v1/corpora/vehicles")
            assert r.status_code == 404 and detail(r) == "no corpus named 'vehicles'"
            r = client.get("/v1/categories/bicycle/centre")
            assert r.status_code == 404 and "unknown category 'bicycle'" in detail(r)
    finally:
        state.close()


def test_empty_knowledge_base_starts_and_answers_4xx(tmp_path: Path) -> None:
    config = ServiceConfig(Settings(database_url=f"sqlite:///{tmp_path / 'empty.db'}", home=tmp_path, device="cpu"))
    with TestClient(create_app(config)) as client:  # the state is built by the app's lifespan
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/v1/corpora").json() == []
        r = client.post("/v1/recognize", json={"texts": TEXTS})
        assert r.status_code == 409 and "the knowledge base is empty" in detail(r)
        r = client.get("/v1/categories/tench/centre")
        assert r.status_code == 409 and "the knowledge base is empty" in detail(r)
        assert client.get("/metrics").status_code == 200


def test_image_upload_zero_shot_equals_the_library(tmp_path: Path) -> None:
    """A tiny open_clip space: the uploaded image goes through the tower zero-shot, as the library does it."""
    from PIL import Image

    from unibind.indexer.modalities.projection import load_projection
    from tests.tiny_models import make_tiny_open_clip

    spec = make_tiny_open_clip(tmp_path / "model")
    url, home = f"sqlite:///{tmp_path / 'clip.db'}", tmp_path / "home"
    cli(url, home, "ingest", str(write_json(tmp_path / "a.json", ANIMALS)), "--name", "kb", "--encoder", spec)
    data = png(24, 16)
    config = ServiceConfig(Settings(database_url=url, home=home, device="cpu", max_image_pixels=24 * 16))
    with TestClient(create_app(config)) as client:
        rec = client.post("/v1/recognize", files={"image": ("red.png", data, "image/png")}, data={"k": "2", "labels": "tench, goldfish"})
        found = client.post("/v1/search", files={"image": ("red.png", data, "image/png")},
                            data={"k": "3", "where": "corpus=kb", "label": "goldfish"})
        # the limits of a space that takes images: the pixels read from the header, before decoding
        r = client.post("/v1/recognize", files={"image": ("big.png", png(20, 20), "image/png")})
        assert r.status_code == 413 and "20x20 = 400 pixels, more than the limit of 384" in detail(r)
        r = client.post("/v1/search", files={"image": ("q.png", b"definitely not an image", "image/png")})
        assert r.status_code == 400 and "not a readable image" in detail(r)
    assert rec.status_code == 200 and found.status_code == 200, (rec.text, found.text)
    db = Database(url)
    try:
        vectors = load_projection(db, space(db), "image", Device(), home=home).images([Image.open(io.BytesIO(data)).convert("RGB")])
        expected = Recognizer(db, Device()).recognize_vectors(vectors, k=2, labels=["tench", "goldfish"])[0]
        assert rec.json() == [{"query": "red.png", "labels": expected.labels, "scores": expected.scores}]
        hits = CrossModalSearch(db, home, Device(), space(db), "descriptions").search(
            vectors, k=3, flt=SearchFilter("goldfish", (("corpus", "kb"),)))[0]
        assert found.json() == [{"query": "red.png", "hits": [h.__dict__ for h in hits]}]
    finally:
        db.dispose()
