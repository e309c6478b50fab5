"""The browsing routes (``/v1/info``, ``/v1/categories``, item thumbnails) and the web page's files, through
FastAPI's TestClient on a tiny open_clip space with an image gallery (see tests/image_site.py). The page itself
is driven in a real browser by tests/test_web_page.py."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from unibind.indexer.runtime.device import Device
from unibind.retrieval.service.app import create_app
from unibind.retrieval.service.config import ServiceConfig
from unibind.schema.settings import Settings
from unibind.retrieval.service.state import ServiceState
from tests.corpus_samples import ANIMALS
from tests.image_site import COLOURS, ImageSite, build_image_site, draw
from tests.test_service import KEY, detail

pytestmark = pytest.mark.slow


@dataclass
class Served:
    site: ImageSite
    state: ServiceState
    client: TestClient


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    site = build_image_site(tmp_path_factory.mktemp("catalog"))
    state = ServiceState(ServiceConfig(Settings(database_url=site.url, home=site.home, device="cpu")), device=Device())
    with TestClient(create_app(state.config, state=state)) as client:
        yield Served(site, state, client)
    state.close()


def test_info_lists_the_space_its_galleries_and_the_limits(served: Served) -> None:
    r = served.client.get("/v1/info")
    assert r.status_code == 200, r.text
    info = r.json()
    assert info["space"] == served.site.spec and info["dim"] == 32
    assert (info["corpora"], info["categories"], info["image_queries"]) == (1, len(ANIMALS), True)
    assert info["modalities"] == [{"name": "image", "kind": "image", "input_dim": 32, "items": 6, "head": None}]
    assert info["limits"] == {"max_batch": 64, "max_k": 100, "max_labels": 1000, "max_upload_bytes": 10 * 2**20,
                              "max_image_pixels": 25_000_000}


def test_categories_route(served: Served) -> None:
    r = served.client.get("/v1/categories")
    assert r.status_code == 200
    assert r.json() == [{"name": n, "descriptions": len(ANIMALS[n]), "corpora": 1} for n in sorted(ANIMALS)]


def test_thumbnail_is_a_small_jpeg_of_the_item(served: Served) -> None:
    for item_id, size, expected in ((1, 256, (64, 48)), (2, 32, (32, 24)), (3, 16, (16, 12))):
        r = served.client.get(f"/v1/items/{item_id}/thumbnail", params={"size": size})
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg", r.text
        thumb = Image.open(io.BytesIO(r.content))
        assert thumb.format == "JPEG" and thumb.size == expected  # never enlarged; aspect ratio kept
        colour = list(COLOURS.values())[(item_id - 1) // 2]
        centre = np.asarray(thumb.convert("RGB"))[expected[1] // 2, expected[0] // 2].astype(int)
        assert np.abs(centre - colour).max() < 30, (centre, colour)  # the item's own image (JPEG-close)
    assert served.client.get("/v1/items/1/thumbnail").headers["cache-control"].startswith("private")


@pytest.mark.parametrize("path, status, message", [
    ("/v1/items/999/thumbnail", 404, "no item with id 999"),
    ("/v1/items/1/thumbnail?size=8", 422, "greater than or equal to 16"),
    ("/v1/items/1/thumbnail?size=5000", 422, "less than or equal to 1024"),
    ("/v1/items/x/thumbnail", 422, "integer"),
])
def test_thumbnail_errors(served: Served, path: str, status: int, message: str) -> None:
    r = served.client.get(path)
    assert r.status_code == status and message in detail(r), r.text


def test_thumbnail_of_a_moved_or_broken_file(served: Served, tmp_path: Path) -> None:
    """The item's file is gone, then replaced by bytes that are no image, then by a picture over the pixel limit."""
    path = served.site.images[5]
    saved = path.read_bytes()
    try:
        path.unlink()
        r = served.client.get("/v1/items/6/thumbnail")
        assert r.status_code == 404 and "is missing" in detail(r) and path.name in detail(r)
        path.mkdir()  # a folder where the file was
        r = served.client.get("/v1/items/6/thumbnail")
        assert r.status_code == 404 and "not a file" in detail(r)
        path.rmdir()
        path.write_bytes(b"not an image at all")
        r = served.client.get("/v1/items/6/thumbnail")
        assert r.status_code == 400 and "not a readable image" in detail(r)
        draw(path, (0, 0, 0), "disc", size=(200, 200))
        config = ServiceConfig(replace(served.state.config.settings, max_image_pixels=10_000))
        with TestClient(create_app(config, state=served.state)) as client:
            r = client.get("/v1/items/6/thumbnail")
        assert r.status_code == 413 and "200x200 = 40000 pixels" in detail(r)
    finally:
        path.write_bytes(saved)
    assert served.client.get("/v1/items/6/thumbnail").status_code == 200


def test_page_and_its_files_are_served_without_the_key(served: Served) -> None:
    config = ServiceConfig(replace(served.state.config.settings, api_key=KEY))
    with TestClient(create_app(config, state=served.state)) as client:
        page = client.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert '<script src="/ui/page.js"' in page.text and 'id="query-form"' in page.text
        script = client.get("/ui/page.js")
        assert script.status_code == 200 and "javascript" in script.headers["content-type"]
        assert client.get("/ui/page.css").headers["content-type"].startswith("text/css")
        assert client.get("/ui/nothing.js").status_code == 404
        for path in ("/v1/info", "/v1/categories", "/v1/items/1/thumbnail"):  # the data still needs the key
            assert client.get(path).status_code == 401, path
            assert client.get(path, headers={"X-API-Key": KEY}).status_code == 200, path
    assert "/" not in served.client.get("/openapi.json").json()["paths"]


@pytest.mark.parametrize("encoder", [None, "minilm"])
def test_empty_knowledge_base_info(tmp_path: Path, encoder: str | None) -> None:
    config = ServiceConfig(Settings(database_url=f"sqlite:///{tmp_path / 'empty.db'}", home=tmp_path, device="cpu",
                                    encoder=encoder))
    with TestClient(create_app(config)) as client:
        info = client.get("/v1/info").json()
        assert (info["space"], info["modalities"], info["image_queries"]) == (None, [], False)
        assert client.get("/v1/categories").json() == []
        assert client.get("/").status_code == 200
