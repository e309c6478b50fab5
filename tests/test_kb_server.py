"""``unibind kb generate`` and ``kb describe`` against a real OpenAI-compatible server (``transformers serve`` on
loopback, serving a tiny random Llama: gibberish text, real plumbing): provenance, the cache, resuming a killed
run, errors that leave nothing written, per-sample descriptions of images, and captions made elsewhere."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.llm_server import RateLimitServer, SlowServer, TransformersServer, free_port, make_tiny_llm
from unibind.indexer.readers.corpus import read_corpus
from unibind.indexer.readers.pairs import read_pairs
from unibind.retrieval.cli.main import main

pytestmark = pytest.mark.slow

# A child that takes Ctrl-C as a terminal would deliver it. A process started in the background by a
# non-interactive shell (`make test &`, a CI step) has SIGINT ignored, Python keeps an ignored SIGINT ignored, and
# Popen passes that on: the interrupt would never reach the CLI. The child restores Python's own handler first.
INTERRUPTIBLE = ("import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
                 "runpy.run_module('unibind.retrieval.cli', run_name='__main__', alter_sys=True)")
EVENT_DEADLINE = 600  # seconds: only a broken run waits this long; a working one ends on the event


def _wait_for(condition: Callable[[], bool], proc: subprocess.Popen[bytes], what: str) -> None:
    """Wait until ``condition()`` holds (the process must still be running), polling the event, not a duration."""
    deadline = time.monotonic() + EVENT_DEADLINE
    while not condition():
        assert proc.poll() is None, f"the run ended before {what}"
        assert time.monotonic() < deadline, f"no {what} in {EVENT_DEADLINE} s"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_llm(tmp_path_factory.mktemp("llm") / "tiny")


@pytest.fixture(scope="module")
def server() -> TransformersServer:  # type: ignore[misc]
    with TransformersServer() as s:
        yield s


@pytest.fixture
def run(tmp_path: Path, capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    home = tmp_path / "home"

    def _run(*args: str) -> tuple[int, str, str]:
        code = main(["--home", str(home), "--device", "cpu", *args])
        out = capsys.readouterr()
        return code, out.out, out.err

    _run.home = home  # type: ignore[attr-defined]
    return _run


def test_generate_through_the_server_then_rerun_from_the_cache(run, model: Path, server: TransformersServer,  # type: ignore[no-untyped-def]
                                                                tmp_path: Path) -> None:
    out = tmp_path / "gen.jsonl"
    argv = ["kb", "generate", "--categories", "owl,red fox", "--llm", f"openai:{model}", "--base-url", server.base_url,
            "--samples", "2", "--min-per-category", "0", "--encoder", "minilm", "--out", str(out), "--json"]
    code, text, err = run(*argv)
    assert code == 0, err
    report = json.loads(text)
    assert report["requests"] == report["sent"] == 20 and report["cached"] == 0  # 2 categories x 5 prompts x 2
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows and report["records"] == len(rows) == report["cleaning"]["kept"]
    assert {r["category"] for r in rows} <= {"owl", "red fox"}
    assert all(r["model"] == f"openai:{model}" and r["prompt_set"] == "cupl" and r["sample"] in (0, 1) for r in rows)
    assert all(r["text"][-1] in ".!?" and "\ufffd" not in r["text"] for r in rows)
    assert read_corpus(out).records
    c = report["cleaning"]
    assert c["responses"] == 20 and c["sentences"] == (c["empty"] + c["refusals"] + c["unnamed"] + c["named"]
                                                       + c["exact_duplicates"] + c["near_duplicates"] + c["kept"])
    first = out.read_bytes()
    code, text, _ = run(*argv)
    again = json.loads(text)
    assert code == 0 and again["sent"] == 0 and again["cached"] == 20 and out.read_bytes() == first


def test_a_killed_run_resumes_where_it_stopped(run, model: Path, server: TransformersServer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "gen.jsonl"
    args = ["kb", "generate", "--categories", "owl,fox,eagle", "--llm", f"openai:{model}", "--base-url", server.base_url,
            "--samples", "6", "--concurrency", "1", "--min-per-category", "0", "--near-duplicate", "0",
            "--encoder", "minilm", "--out", str(out)]
    cache = run.home / "kb-cache.sqlite"
    proc = subprocess.Popen([sys.executable, "-m", "unibind.retrieval.cli", "--home", str(run.home), "--device", "cpu",
                             *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def saved_responses() -> int:
            if not cache.exists():
                return 0
            with sqlite3.connect(cache) as db:
                try:
                    return int(db.execute("SELECT count(*) FROM responses").fetchone()[0])
                except sqlite3.OperationalError:  # the file is there, its table not yet
                    return 0

        _wait_for(lambda: saved_responses() >= 10, proc, "10 responses in the cache")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not out.exists()  # nothing partial
    with sqlite3.connect(cache) as db:
        saved = db.execute("SELECT count(*) FROM responses").fetchone()[0]
    assert 10 <= saved < 90
    code, text, err = run(*args, "--json")
    report = json.loads(text)
    assert code == 0, err
    assert report["requests"] == 90 and report["cached"] == saved and report["sent"] == 90 - saved
    assert out.exists()


def test_errors_are_one_line_and_write_nothing(run, model: Path, server: TransformersServer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "never.jsonl"
    closed = f"http://127.0.0.1:{free_port()}/v1"
    code, _, err = run("kb", "generate", "--categories", "owl", "--llm", f"openai:{model}", "--base-url", closed,
                       "--encoder", "minilm", "--out", str(out))
    assert code == 69 and "cannot reach the LLM server" in err and closed in err and len(err.strip().splitlines()) == 1
    assert err.startswith("unibind: error: cannot reach") and not out.exists()  # the check before anything loads
    code, _, err = run("kb", "generate", "--categories", "owl", "--llm", f"openai:{tmp_path / 'no-such-model'}",
                       "--base-url", server.base_url, "--retries", "1", "--timeout", "20", "--encoder", "minilm",
                       "--out", str(out))
    assert code in (2, 69) and "no-such-model" in err and len(err.strip().splitlines()) == 1 and not out.exists()
    with RateLimitServer() as storm:  # every request answered 429: retried with backoff, then one line, exit 75
        code, _, err = run("kb", "generate", "--categories", "owl,fox", "--llm", "openai:some-model", "--base-url",
                           storm.base_url, "--retries", "2", "--concurrency", "2", "--encoder", "minilm", "--out", str(out))
        assert code == 75 and "rate limited (HTTP 429)" in err and len(err.strip().splitlines()) == 1, err
        assert storm.posts >= 3 and not out.exists()  # retries + 1 attempts (the backend test counts them exactly)
    code, _, err = run("kb", "generate", "--categories", "owl", "--llm", "waffle", "--base-url", server.base_url,
                       "--out", str(out))
    assert code == 2 and "--base-url goes with --llm openai" in err


def _png(path: Path, colour: tuple[int, int, int]) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), colour).save(path)
    return path


def test_describe_images_through_the_server(run, model: Path, server: TransformersServer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    photos = tmp_path / "photos"
    for name, colour in [("owl/a.png", (90, 60, 30)), ("owl/b.png", (80, 70, 40)), ("fox/c.png", (200, 90, 20))]:
        _png(photos / name, colour)
    out = tmp_path / "pairs" / "pairs.jsonl"
    argv = ["kb", "describe", "--images", str(photos), "--llm", f"openai:{model}", "--base-url", server.base_url,
            "--labels-from-folders", "--max-tokens", "20", "--out", str(out), "--json"]
    code, text, err = run(*argv)
    assert code == 0, err
    summary = json.loads(text)
    assert summary["images"] == 3 and summary["sent"] == 3
    pairs = read_pairs(out, kind="image")  # what `unibind head train` reads: the paths resolve from the pairs file
    assert sorted((p.input.name, p.label) for p in pairs) == sorted(
        [("a.png", "owl"), ("b.png", "owl"), ("c.png", "fox")])[: len(pairs)]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(r["meta"]["model"] == f"openai:{model}" and not Path(r["input"]).is_absolute() for r in rows)
    code, text, _ = run(*argv)
    assert code == 0 and json.loads(text)["sent"] == 0 and json.loads(text)["cached"] == 3
    bad = tmp_path / "bad" / "x.png"
    bad.parent.mkdir()
    bad.write_bytes(b"not a png")
    code, _, err = run("kb", "describe", "--images", str(bad), "--llm", f"openai:{model}", "--base-url", server.base_url,
                       "--out", str(tmp_path / "never.jsonl"))
    assert code == 2 and "x.png: not a readable image" in err and not (tmp_path / "never.jsonl").exists()
    code, _, err = run("kb", "describe", "--images", str(photos), "--out", str(tmp_path / "never.jsonl"))
    assert code == 2 and "needs --llm" in err


def test_describe_images_with_the_waffle_control(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """`kb describe --llm waffle`: random words about each image's folder (its category), recording only what it
    used; without folder labels it says what it needs."""
    photos = tmp_path / "photos"
    for name, colour in [("owl/a.png", (90, 60, 30)), ("fox/c.png", (200, 90, 20))]:
        _png(photos / name, colour)
    out = tmp_path / "pairs.jsonl"
    code, text, err = run("kb", "describe", "--images", str(photos), "--llm", "waffle", "--labels-from-folders",
                          "--samples", "2", "--out", str(out), "--json")
    assert code == 0, err
    assert json.loads(text)["pairs"] == 2
    rows = {r["label"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert set(rows) == {"owl", "fox"}
    for label, r in rows.items():
        assert len(r["descriptions"]) == 2 and all(f"A photo of {'an' if label == 'owl' else 'a'} {label}, which"
                                                   in d for d in r["descriptions"])
        assert r["meta"] == {"model": "waffle", "seed": 0, "samples": 2}  # no prompt or temperature it never used
    code, _, err = run("kb", "describe", "--images", str(photos), "--llm", "waffle", "--out", str(tmp_path / "n.jsonl"))
    assert code == 2 and "--labels-from-folders" in err and not (tmp_path / "n.jsonl").exists(), err


def test_captions_become_pairs(run, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    captions = tmp_path / "captions.jsonl"
    # captions as a captioning model writes them: cleaned as `kb generate` cleans answers (bullets, emphasis,
    # refusals and "Here are" lines go; a caption with nothing left goes, with a warning)
    captions.write_text('{"row": 0, "caption": "a dog barks twice", "label": "dog"}\n'
                        '{"row": 1, "caption": "As an AI language model, I cannot hear audio."}\n'
                        '{"row": 2, "caption": "Here are the sounds:\\n- **Rain** on a tin roof\\n- thunder far away"}\n'
                        '{"row": 3, "caption": "rain on a tin roof"}\n')
    out = tmp_path / "pairs.jsonl"
    code, text, err = run("kb", "describe", "--captions", str(captions), "--rows", "4", "--out", str(out), "--json")
    assert code == 0 and json.loads(text)["pairs"] == 3, err
    assert "captions.jsonl:2: caption dropped (a refusal or no description)" in caplog.text
    pairs = read_pairs(out, kind="features", n_rows=4)
    assert [(p.input, p.descriptions, p.label) for p in pairs] == [
        (0, ("a dog barks twice.",), "dog"), (2, ("Rain on a tin roof. thunder far away.",), None),
        (3, ("rain on a tin roof.",), None)]
    for body, message in [('{"row": 9, "caption": "x"}\n', 'captions.jsonl:1: field "row" must be an integer >= 0 < 4'),
                          ('{"row": 0}\n', 'field "caption" must be a non-empty string'),
                          ('{"row": 0, "caption": "x", "text": "y"}\n', 'unknown field(s) "text"'),
                          ('{"row": 0, "caption": "x", "meta": [1]}\n', 'field "meta" must be an object (got array)'),
                          ("", "the file has no captions")]:
        captions.write_text(body)
        code, _, err = run("kb", "describe", "--captions", str(captions), "--rows", "4", "--out", str(tmp_path / "n.jsonl"))
        assert code == 2 and message in err and not (tmp_path / "n.jsonl").exists(), err


def test_the_child_takes_ctrl_c_even_when_started_with_sigint_ignored() -> None:
    """The launcher above undoes an inherited SIG_IGN (what `make test &` gives every child)."""
    probe = "import signal; print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)"
    launcher = INTERRUPTIBLE.split("; runpy")[0] + "; " + probe
    for code in (probe, launcher):
        # what a non-interactive shell's `&` does: the child starts with SIGINT ignored
        proc = subprocess.run(["sh", "-c", 'trap "" INT; exec "$0" -c "$1"', sys.executable, code],
                              capture_output=True, text=True, check=True)
        assert proc.stdout.strip() == ("False" if code is probe else "True")


def test_ctrl_c_stops_at_once_and_writes_nothing(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Ctrl-C while requests are in flight: the run ends at once (it does not wait for them: the server holds them
    until the test ends, so a run that waited would never end), with exit 130 and no output file."""
    out = tmp_path / "never.jsonl"
    with SlowServer(delay=3600) as slow:
        proc = subprocess.Popen([sys.executable, "-c", INTERRUPTIBLE, "--home", str(run.home), "--device", "cpu",
                                 "kb", "generate", "--categories", "owl", "--llm", "openai:slow", "--base-url",
                                 slow.base_url, "--timeout", "3600", "--encoder", "minilm", "--out", str(out)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            _wait_for(lambda: slow.posts >= 2, proc, "request reaching the server")
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=EVENT_DEADLINE)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 130 and b"interrupted" in err and not out.exists(), err
