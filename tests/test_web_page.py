"""The web page at ``/`` in real headless Chromium (Debian's ``chromium``, driven by Playwright) against a real
uvicorn server: a text query's recognition bars and search grid, an image upload's bars and a gallery grid with
thumbnails, metadata on hover, the centre inspector, error messages and the API key. Everything the page shows
is compared with the JSON the API answers for the same query. A screenshot of the page is saved to
``test-artifacts/web-page.png`` (or ``$UNIBIND_TEST_ARTIFACTS``).

Without a Chromium the browser tests skip, and fail when ``CI=true`` (.ci/run installs ``chromium``)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import IN_CI
from unibind.indexer.runtime.device import Device
from unibind.retrieval.service.app import create_app
from unibind.retrieval.service.config import ServiceConfig
from unibind.retrieval.service.state import ServiceState
from unibind.schema.settings import Settings
from tests.image_site import ImageSite, build_image_site, live_server
from tests.test_service import KEY

pytestmark = pytest.mark.slow

ARTIFACTS = Path(os.environ.get("UNIBIND_TEST_ARTIFACTS") or Path(__file__).resolve().parents[1] / "test-artifacts")
TIMEOUT_MS = 30_000
TEXT = "A small orange fish kept in a glass bowl."


def chromium_path() -> str:
    found = os.environ.get("UNIBIND_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        msg = "no Chromium to drive (apt-get install chromium, or set UNIBIND_CHROMIUM)"
        if IN_CI:
            pytest.fail(msg + " (CI=true: the browser tests must run)")
        pytest.skip(msg)
    return found


@dataclass
class Site:
    site: ImageSite
    base: str  # the open server
    keyed: str  # the same data behind an API key


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    path = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as e:  # pragma: no cover - playwright is in the dev extra
        if IN_CI:
            pytest.fail(f"playwright is not installed: {e}")
        pytest.skip(f"playwright is not installed: {e}")
    with sync_playwright() as pw:
        chrome = pw.chromium.launch(executable_path=path, headless=True, args=["--no-sandbox"])
        yield chrome
        chrome.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, browser: Any) -> Iterator[Site]:
    site = build_image_site(tmp_path_factory.mktemp("web"))
    config = ServiceConfig(Settings(database_url=site.url, home=site.home, device="cpu"))
    state = ServiceState(config, device=Device())
    with live_server(create_app(config, state=state)) as base, \
            live_server(create_app(ServiceConfig(replace(config.settings, api_key=KEY)), state=state)) as keyed:
        yield Site(site, base, keyed)
    state.close()


@pytest.fixture
def page(browser: Any, served: Site) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    tab = context.new_page()
    tab.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    tab.on("pageerror", lambda e: errors.append(str(e)))
    tab.goto(served.base)
    tab.wait_for_function("document.body.dataset.ready === '1'")
    yield tab
    context.close()
    assert not errors, errors  # no uncaught script errors


def api(base: str, path: str, **kwargs: Any) -> Any:
    r = httpx.post(base + path, timeout=60, **kwargs) if "json" in kwargs or "files" in kwargs else \
        httpx.get(base + path, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def run_query(page: Any, k: int) -> None:
    page.fill("#q-k", str(k))
    page.click("#q-go")
    page.wait_for_function("!document.body.dataset.busy && document.querySelectorAll('#bars .bar').length > 0")


def bars(page: Any) -> list[tuple[str, str, float]]:
    return page.eval_on_selector_all("#bars .bar", """rows => rows.map(r => [
        r.querySelector('.bar-label').textContent, r.querySelector('.bar-score').textContent, Number(r.dataset.score)])""")


def cards(page: Any) -> list[dict[str, Any]]:
    return page.eval_on_selector_all("#grid .card", """cards => cards.map(c => ({
        id: Number(c.dataset.id), label: c.querySelector('.card-label').textContent,
        score: c.querySelector('.card-score').textContent,
        text: c.querySelector('.card-text') ? c.querySelector('.card-text').textContent : null,
        thumb: !!c.querySelector('img.card-thumb')}))""")


def expect_bars(page: Any, answer: dict[str, Any]) -> None:
    shown = bars(page)
    assert [b[0] for b in shown] == answer["labels"]
    assert [b[1] for b in shown] == [f"{s:.3f}" for s in answer["scores"]]
    assert [b[2] for b in shown] == pytest.approx(answer["scores"], abs=1e-6)
    widths = page.eval_on_selector_all("#bars .bar-fill", "fs => fs.map(f => parseFloat(f.style.width))")
    assert widths[0] == pytest.approx(100.0) and widths == sorted(widths, reverse=True)


def test_text_query_shows_bars_and_description_cards(page: Any, served: Site) -> None:
    page.fill("#q-text", TEXT)
    run_query(page, 3)
    page.wait_for_function("document.querySelectorAll('#grid .card').length === 3")
    expect_bars(page, api(served.base, "/v1/recognize", json={"texts": [TEXT], "k": 3})[0])
    hits = api(served.base, "/v1/search", json={"texts": [TEXT], "k": 3})[0]["hits"]
    assert cards(page) == [{"id": h["id"], "label": h["label"], "score": f"{h['score']:.3f}", "text": h["text"],
                            "thumb": False} for h in hits]

    meta = page.locator("#grid .card").first.locator(".card-meta")
    assert not meta.is_visible()
    page.hover("#grid .card >> nth=0")
    meta.wait_for(state="visible")
    text = meta.inner_text()
    assert f"{hits[0]['id']}" in text and "corpus" in text and "kb" in text


def test_image_upload_and_the_gallery_grid_with_thumbnails(page: Any, served: Site) -> None:
    query = served.site.images[2]  # the green disc
    page.select_option("#q-target", "image")
    page.set_input_files("#q-image", str(query))
    page.wait_for_selector("#q-preview:not([hidden])")
    page.fill("#q-where", "split=test")
    run_query(page, 2)
    page.wait_for_function("""document.querySelectorAll('#grid img.card-thumb').length === 2 &&
        [...document.querySelectorAll('#grid img.card-thumb')].every(i => i.complete && i.naturalWidth > 0)""")

    data = query.read_bytes()
    answer = api(served.base, "/v1/recognize", files={"image": (query.name, data, "image/png")}, data={"k": "2"})[0]
    expect_bars(page, answer)
    hits = api(served.base, "/v1/search", files={"image": (query.name, data, "image/png")},
               data={"k": "2", "target": "image", "where": "split=test"})[0]["hits"]
    assert [(c["id"], c["label"], c["thumb"]) for c in cards(page)] == [(h["id"], h["label"], True) for h in hits]
    assert all(h["meta"]["split"] == "test" for h in hits)
    sizes = page.eval_on_selector_all("#grid img.card-thumb", "is => is.map(i => [i.naturalWidth, i.naturalHeight])")
    assert sizes == [[64, 48]] * 2  # the thumbnails of the 64x48 gallery images

    page.hover("#grid .card >> nth=1")
    meta = page.locator("#grid .card").nth(1).locator(".card-meta")
    meta.wait_for(state="visible")
    assert f"shape\n{hits[1]['meta']['shape']}" in meta.inner_text() and hits[1]["uri"] in meta.inner_text()

    # the centre inspector, opened from the top bar; then the whole page is saved for a person to look at
    page.click("#bars .bar >> nth=0")
    page.wait_for_selector("#centre-members tbody tr")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "web-page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000


def test_centre_inspector_lists_members_with_scores(page: Any, served: Site) -> None:
    centre = api(served.base, "/v1/categories/tabby%20cat/centre")
    options = page.eval_on_selector_all("#category-list option", "os => os.map(o => o.value)")
    assert options == [c["name"] for c in api(served.base, "/v1/categories")]
    page.fill("#c-name", "tabby cat")
    page.click("#c-go")
    page.wait_for_selector("#centre-members tbody tr")
    rows = page.eval_on_selector_all("#centre-members tbody tr", """rs => rs.map(r => [
        Number(r.querySelector('.member-rank').textContent), Number(r.dataset.score),
        r.querySelector('.member-text').textContent])""")
    assert [(r[0], r[2]) for r in rows] == [(m["rank"], m["text"]) for m in centre["members"]]
    assert [r[1] for r in rows] == pytest.approx([m["score"] for m in centre["members"]], abs=1e-6)
    assert "tabby cat: 3 members of 3 descriptions (knowledge, K=50" in page.inner_text("#centre-head")

    page.fill("#c-name", "tabby")
    page.click("#c-go")
    page.wait_for_selector("#centre-error:not([hidden])")
    assert "unknown category 'tabby'; did you mean 'tabby cat'" in page.inner_text("#centre-error")
    assert page.locator("#centre-members tbody tr").count() == 0


def test_errors_are_shown_as_messages(page: Any) -> None:
    page.click("#q-go")  # nothing to query
    page.wait_for_selector("#recognition-error:not([hidden])")
    assert "type a description or choose an image" in page.inner_text("#recognition-error")

    page.fill("#q-text", TEXT)
    page.fill("#q-k", "500")
    page.click("#q-go")
    page.wait_for_selector("#results-error:not([hidden])")
    page.wait_for_selector("#recognition-error:not([hidden])")
    assert "k must be between 1 and 100, got 500" in page.inner_text("#recognition-error")
    assert "k must be between 1 and 100, got 500" in page.inner_text("#results-error")

    page.fill("#q-k", "3")
    page.fill("#q-where", "split")
    page.click("#q-go")
    page.wait_for_function("document.getElementById('results-error').textContent.includes('expected key=value')")

    page.fill("#q-where", "split=nowhere")
    run_query(page, 3)
    page.wait_for_selector("#grid .empty")
    assert page.locator("#results-error").is_hidden()


def test_api_key_is_asked_for_and_used(browser: Any, served: Site) -> None:
    context = browser.new_context()
    tab = context.new_page()
    tab.set_default_timeout(TIMEOUT_MS)
    try:
        tab.goto(served.keyed)  # the page itself is served without the key ...
        tab.wait_for_function("document.getElementById('auth-note').textContent.length > 0")
        assert "needs an API key" in tab.inner_text("#auth-note")  # ... its data is not
        tab.fill("#api-key", "wrong")
        tab.click("#save-key")
        tab.wait_for_function("document.getElementById('auth-note').textContent.includes('refused')")
        tab.fill("#api-key", KEY)
        tab.click("#save-key")
        tab.wait_for_function("document.body.dataset.ready === '1'")
        assert tab.inner_text("#auth-note") == ""
        tab.fill("#q-text", TEXT)
        run_query(tab, 2)
        assert len(bars(tab)) == 2
    finally:
        context.close()


def test_space_view_shows_the_centre_plot(page: Any, served: Site) -> None:
    import io

    from PIL import Image

    drawn = httpx.get(served.base + "/v1/categories/goldfish/centre/plot.png?neighbours=2", timeout=60)
    assert drawn.status_code == 200 and drawn.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(drawn.content)) as image:
        image.load()
        size = list(image.size)
    page.fill("#s-name", "goldfish")
    page.fill("#s-neighbours", "2")
    page.click("#s-go")
    page.wait_for_function("""(() => { const i = document.getElementById('space-image');
        return !i.hidden && i.complete && i.naturalWidth > 0; })()""")
    assert page.eval_on_selector("#space-image", "i => [i.naturalWidth, i.naturalHeight]") == size
    assert page.eval_on_selector("#space-image", "i => i.src.startsWith('blob:')")
    assert page.inner_text("#space-head") == "goldfish" and page.locator("#space-error").is_hidden()

    page.fill("#s-name", "goldfsh")
    page.click("#s-go")
    page.wait_for_selector("#space-error:not([hidden])")
    assert "unknown category 'goldfsh'; did you mean 'goldfish'" in page.inner_text("#space-error")
    assert page.locator("#space-image").is_hidden()

    # a recognition bar draws its category's space too
    page.fill("#q-text", TEXT)
    run_query(page, 2)
    first = bars(page)[0][0]
    page.click("#bars .bar >> nth=0")
    page.wait_for_function(f"""(() => {{ const i = document.getElementById('space-image');
        return !i.hidden && i.complete && i.naturalWidth > 0 &&
               document.getElementById('space-head').textContent === {first!r}; }})()""")
