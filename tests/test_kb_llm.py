"""The LLM backends behind one interface: spec parsing, the waffle control, a local transformers model in
process, and an OpenAI-compatible server (a real ``transformers serve`` serving a tiny random Llama, and a
stand-in that only rate-limits)."""

from __future__ import annotations

import base64
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.llm_server import RateLimitServer, TransformersServer, free_port, make_tiny_llm
from unibind.indexer.knowledge.backends import make_llm
from unibind.indexer.knowledge.llm_spec import LLMSpec, parse_llm_spec
from unibind.indexer.knowledge.openai_backend import OpenAIBackend, OpenAIConfig, _messages, cut_at_stop
from unibind.indexer.knowledge.request import LLM, Request
from unibind.indexer.knowledge.waffle import WaffleBackend, waffle_text
from unibind.schema.errors import Busy, InvalidInput, NotFound, UnibindError, Unavailable

# A 1x1 PNG as a data URL (the tiny text model ignores it; the request must still go through).
PNG = base64.b64encode(bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010802000000907753de0000000c4944415408d763f8cfc000000301"
    "0100189dd9a90000000049454e44ae426082")).decode()
DATA_URL = f"data:image/png;base64,{PNG}"


def collect(llm: LLM, requests: list[Request]) -> dict[int, str]:
    out: dict[int, str] = {}
    llm.run(requests, lambda i, text: out.__setitem__(i, text))
    return out


@pytest.fixture(scope="module")
def tiny_llm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_llm(tmp_path_factory.mktemp("llm") / "tiny")


# -- specs ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("raw,kind,model", [
    ("openai:gpt-4o-mini", "openai", "gpt-4o-mini"),
    ("  OpenAI: gpt-4o-mini ", "openai", "gpt-4o-mini"),
    ("openai:Qwen/Qwen2.5-VL-7B-Instruct", "openai", "Qwen/Qwen2.5-VL-7B-Instruct"),
    ("hf:Qwen/Qwen2.5-0.5B-Instruct", "hf", "Qwen/Qwen2.5-0.5B-Instruct"),
    ("HF:gpt2", "hf", "gpt2"),
    ("waffle", "waffle", ""),
    (" WAFFLE ", "waffle", ""),
])
def test_good_specs_parse_to_their_canonical_form(raw: str, kind: str, model: str) -> None:
    spec = parse_llm_spec(raw)
    assert spec == LLMSpec(kind, model)
    assert parse_llm_spec(str(spec)) == spec


def test_an_hf_folder_spec_becomes_absolute(tiny_llm: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tiny_llm.parent)
    assert str(parse_llm_spec("hf:tiny")) == f"hf:{tiny_llm}"


@pytest.mark.parametrize("raw", ["openai:", "openai:  ", "hf:", "foo:bar", "gpt-4o", "", "waffle:x", ":model"])
def test_bad_specs_name_the_spec_and_the_three_forms(raw: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_llm_spec(raw)
    message = str(info.value)
    assert repr(raw) in message and "openai:<model>" in message and "hf:<path-or-hub-id>" in message
    assert "waffle" in message and "\n" not in message


@pytest.mark.parametrize("field,value", [
    ("concurrency", 0), ("timeout", 0), ("timeout", -1.0), ("retries", -1), ("backoff", 0.0),
    ("backoff_max", float("nan")), ("base_url", "127.0.0.1:8000/v1"),
])
def test_openai_config_names_a_bad_field(field: str, value: object) -> None:
    with pytest.raises(InvalidInput, match=field):
        OpenAIConfig(**{field: value})  # type: ignore[arg-type]


def test_the_backoff_doubles_up_to_its_cap() -> None:
    config = OpenAIConfig(backoff=0.5, backoff_max=3.0)
    assert [config.wait_before(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_stop_strings_cut_the_text() -> None:
    assert cut_at_stop("red wings. Blue\nbeak", (".", "\n")) == "red wings"
    assert cut_at_stop("red wings", ("\n",)) == "red wings"
    assert cut_at_stop("red wings", ()) == "red wings"


def test_images_are_sent_as_data_url_parts_beside_the_text() -> None:
    messages = _messages(Request("describe it", system="be brief", images=(DATA_URL,)))
    assert messages[0] == {"role": "system", "content": "be brief"}
    assert messages[1]["content"] == [{"type": "text", "text": "describe it"},
                                      {"type": "image_url", "image_url": {"url": DATA_URL}}]
    assert _messages(Request("plain")) == [{"role": "user", "content": "plain"}]


def test_the_factory_builds_each_kind_without_a_server() -> None:
    assert isinstance(make_llm("waffle"), WaffleBackend)
    llm = make_llm(LLMSpec("openai", "some-model"), openai=OpenAIConfig(base_url="http://127.0.0.1:9/v1"))
    assert isinstance(llm, OpenAIBackend)
    assert llm.identity == "openai:some-model"  # the server is not part of the cache key
    assert llm.describe() == "openai:some-model at http://127.0.0.1:9/v1"
    llm.close()


# -- waffle -----------------------------------------------------------------------------------------------
def test_waffle_is_deterministic_by_seed_and_names_its_category() -> None:
    llm = make_llm("waffle")
    requests = [Request("ignored", category="cardinal", seed=s) for s in range(30)]
    first, again = collect(llm, requests), collect(llm, requests)
    assert first == again
    assert list(first) == list(range(30))  # in order
    assert len(set(first.values())) == 30  # another seed, another text
    assert all(text.startswith("A photo of a cardinal, which ") for text in first.values())
    assert {"has", "is"} == {text.split()[6] for text in first.values()}  # both kinds of nonsense occur
    assert waffle_text("cardinal", 3) != waffle_text("blue jay", 3)


def test_waffle_needs_a_category() -> None:
    with pytest.raises(InvalidInput, match="category"):
        make_llm("waffle").run([Request("a prompt")], lambda i, t: None)


# -- hf, in process ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def hf_llm(tiny_llm: Path) -> Iterator[LLM]:
    from unibind.indexer.runtime.device import select_device

    llm = make_llm(f"hf:{tiny_llm}", device=select_device("cpu"))
    yield llm
    llm.close()


def test_hf_same_seed_same_text_on_cpu(hf_llm: LLM, tiny_llm: Path) -> None:
    requests = [Request("a bird", seed=1, max_tokens=12), Request("a bird", seed=2, max_tokens=12),
                Request("a bird", seed=1, max_tokens=12, system="short")]
    first, again = collect(hf_llm, requests), collect(hf_llm, list(reversed(requests)))
    assert first[0] and first[0] == again[2] and first[1] == again[1] and first[2] == again[0]
    assert first[0] != first[1]
    assert hf_llm.describe() == f"hf:{tiny_llm} on cpu"
    assert next(iter(hf_llm.model.parameters())).device.type == "cpu"  # type: ignore[attr-defined]


def test_hf_greedy_and_stop_strings(hf_llm: LLM) -> None:
    greedy = Request("a bird", temperature=0.0, max_tokens=10)
    text = collect(hf_llm, [greedy, Request("a bird", temperature=0.0, max_tokens=10, seed=9)])
    assert text[0] == text[1]  # no sampling: the seed does not matter
    first_word = text[0].split()[0]
    cut = collect(hf_llm, [Request("a bird", temperature=0.0, max_tokens=10, stop=(f" {text[0].split()[1]}",))])
    assert cut[0].startswith(first_word) and len(cut[0]) < len(text[0])


def test_hf_is_text_only(hf_llm: LLM) -> None:
    with pytest.raises(InvalidInput, match="text-only"):
        hf_llm.run([Request("a bird"), Request("this", images=(DATA_URL,))], lambda i, t: None)


def test_hf_identity_follows_the_weights(tiny_llm: Path, hf_llm: LLM) -> None:
    from unibind.indexer.knowledge.hf_backend import weights_fingerprint

    assert hf_llm.identity == f"hf:{tiny_llm}@{weights_fingerprint(tiny_llm)}"
    weights = next(tiny_llm.glob("*.safetensors"))
    st = weights.stat()
    before = weights_fingerprint(tiny_llm)
    try:
        os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
        assert weights_fingerprint(tiny_llm) != before
    finally:
        os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert weights_fingerprint(tiny_llm) == before


def test_hf_missing_folder_and_a_folder_that_is_no_model(tmp_path: Path) -> None:
    from unibind.indexer.runtime.device import select_device

    cpu = select_device("cpu")
    with pytest.raises(NotFound, match="not found"):
        make_llm(f"hf:{tmp_path / 'nothere'}", device=cpu)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInput, match="empty"):
        make_llm(f"hf:{tmp_path / 'empty'}", device=cpu)


# -- openai, against a real server ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server() -> Iterator[TransformersServer]:
    with TransformersServer() as s:
        yield s


def backend(server_url: str, model: Path | str, **config: object) -> OpenAIBackend:
    llm = make_llm(f"openai:{model}", openai=OpenAIConfig(base_url=server_url, **config))  # type: ignore[arg-type]
    assert isinstance(llm, OpenAIBackend)
    return llm


@pytest.mark.slow
def test_openai_results_come_back_in_the_calling_thread(server: TransformersServer, tiny_llm: Path) -> None:
    llm = backend(server.base_url, tiny_llm, concurrency=2)
    caller = threading.get_ident()
    seen: dict[int, tuple[str, int]] = {}
    requests = [Request(f"a bird {i}", seed=i, max_tokens=8) for i in range(5)]
    llm.run(requests, lambda i, text: seen.__setitem__(i, (text, threading.get_ident())))
    assert sorted(seen) == list(range(5))
    assert {thread for _, thread in seen.values()} == {caller}
    assert any(text.strip() for text, _ in seen.values())  # a random model may stop at once, not every time
    llm.close()


@pytest.mark.slow
def test_openai_same_seed_same_text(server: TransformersServer, tiny_llm: Path) -> None:
    # one at a time: transformers serve shares torch's global generator between concurrent generations
    llm = backend(server.base_url, tiny_llm, concurrency=1)
    requests = [Request("a bird", seed=7, max_tokens=12), Request("a bird", seed=8, max_tokens=12)]
    first, again = collect(llm, requests), collect(llm, requests)
    assert first == again and first[0] != first[1]
    llm.close()


@pytest.mark.slow
def test_openai_sends_images(server: TransformersServer, tiny_llm: Path) -> None:
    llm = backend(server.base_url, tiny_llm)
    out = collect(llm, [Request("what is it", images=(DATA_URL,), max_tokens=6, system="be brief")])
    assert list(out) == [0] and isinstance(out[0], str)
    llm.close()


@pytest.mark.slow
def test_openai_unreachable_server_fails_fast() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    llm = backend(url, "some-model", retries=8)
    with pytest.raises(Unavailable) as info:  # from the reachability check, before any request and its 8 retries
        llm.run([Request("a bird")], lambda i, t: None)
    assert str(info.value).startswith(f"cannot reach the LLM server at {url}") and "--base-url" in str(info.value)


@pytest.mark.slow
def test_openai_wrong_model_is_a_typed_error(server: TransformersServer, tmp_path: Path) -> None:
    llm = backend(server.base_url, tmp_path / "no-such-model", retries=1, backoff=0.05)
    with pytest.raises(UnibindError) as info:
        llm.run([Request("a bird")], lambda i, t: None)
    assert type(info.value) in (NotFound, Unavailable)  # transformers serve answers HTTP 500, others 404
    assert "no-such-model" in str(info.value) and server.base_url in str(info.value)


@pytest.mark.slow
def test_openai_rate_limit_storm_is_busy_after_every_retry() -> None:
    with RateLimitServer() as storm:
        llm = backend(storm.base_url, "some-model", retries=3, backoff=0.01, concurrency=1)
        with pytest.raises(Busy) as info:
            llm.run([Request("a bird")], lambda i, t: None)
        assert storm.posts == 4
        assert "429" in str(info.value) and "4 attempts" in str(info.value) and storm.base_url in str(info.value)


@pytest.mark.slow
def test_openai_retries_until_the_server_is_back(server: TransformersServer, tiny_llm: Path) -> None:
    llm = backend(server.base_url, tiny_llm, retries=8, backoff=0.5, concurrency=2)
    assert collect(llm, [Request("warm up", max_tokens=2)])  # the server answered once
    results: dict[int, str] = {}
    errors: list[BaseException] = []

    def work() -> None:
        try:
            llm.run([Request(f"a bird {i}", seed=i, max_tokens=6) for i in range(3)], results.__setitem__)
        except BaseException as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)

    server.stop()
    try:
        thread = threading.Thread(target=work)
        thread.start()
        time.sleep(1.0)
    finally:
        server.start()
    thread.join(timeout=600)  # a hang guard only
    assert not thread.is_alive() and not errors, errors
    assert sorted(results) == [0, 1, 2]
    llm.close()
