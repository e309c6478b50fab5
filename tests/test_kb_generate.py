"""``unibind kb generate`` end to end with the waffle control (no LLM) and the real MiniLM encoder: the corpus, its
provenance, the cache (a re-run sends nothing and writes the same bytes; a partial run resumes), top-ups, dry runs,
ingest, the comparison of corpora in one eval table, and bad inputs (one line, nothing written)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from unibind.indexer.knowledge.cache import ResponseCache, request_key
from unibind.indexer.knowledge.cleaning import CleaningConfig
from unibind.indexer.knowledge.generate import GenerateConfig, Generator, plan
from unibind.indexer.knowledge.prompts import load_prompts
from unibind.indexer.knowledge.request import Request
from unibind.indexer.knowledge.waffle import WaffleBackend
from unibind.indexer.readers.corpus import read_corpus
from unibind.retrieval.cli.main import main

pytestmark = pytest.mark.slow  # the real MiniLM encoder


@pytest.fixture
def run(db_url: str, home: Path, capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    def _run(*args: str) -> tuple[int, str, str]:
        code = main(["--db", db_url, "--home", str(home), "--device", "cpu", *args])
        out = capsys.readouterr()
        return code, out.out, out.err

    return _run


def _lines(path: Path) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_waffle_corpus_cache_and_rerun(run, tmp_path: Path, home: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "waffle.jsonl"
    code, text, err = run("kb", "generate", "--categories", "owl,red fox,eagle", "--llm", "waffle", "--encoder", "minilm",
                          "--out", str(out), "--json")
    assert code == 0, err
    report = json.loads(text)
    rows = _lines(out)
    # the control asks no LLM: its report and records name no prompt, temperature or request it never used
    assert report["records"] == len(rows) and not {"prompts", "requests", "sent", "cached"} & set(report)
    assert [r["category"] for r in rows] == sorted([r["category"] for r in rows], key=["owl", "red fox", "eagle"].index)
    assert {r["category"] for r in rows} == {"owl", "red fox", "eagle"}
    for r in rows:  # provenance on every record, and the waffle text names its category
        assert set(r) == {"category", "text", "model", "seed", "sample"}
        assert r["model"] == "waffle" and r["seed"] == 0 and isinstance(r["sample"], int) and r["category"] in r["text"]
    counts = {c: sum(r["category"] == c for r in rows) for c in ("owl", "red fox", "eagle")}
    assert all(n >= 50 for n in counts.values()) or report["short"], counts  # filled to K = 50 or reported short
    assert read_corpus(out).records  # what `unibind ingest` reads
    first = out.read_bytes()
    code, text, _ = run("kb", "generate", "--categories", "owl,red fox,eagle", "--llm", "waffle", "--encoder", "minilm",
                        "--out", str(out), "--json")
    assert code == 0 and json.loads(text)["records"] == report["records"]
    assert out.read_bytes() == first  # the same corpus, byte for byte
    code, text, _ = run("kb", "generate", "--categories", "owl,red fox,eagle", "--llm", "waffle", "--encoder", "minilm",
                        "--out", str(out), "--seed", "1", "--json")
    assert out.read_bytes() != first  # another seed, other words


def test_partial_run_resumes_and_top_ups(minilm, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A run that stopped after some answers continues: only the missing requests are sent. A category below K after
    cleaning gets more samples (top-up rounds) and is reported short when still below."""
    llm = WaffleBackend()
    config = GenerateConfig.from_prompts(load_prompts("cupl"), samples=2, min_per_category=0,
                                         cleaning=CleaningConfig(near_duplicate=None))
    with ResponseCache(tmp_path / "c.sqlite") as cache:
        planned = plan(llm, "owl", config, range(config.samples))
        for request, _ in planned[:4]:  # what an interrupted run had saved
            cache.put(request_key(llm.identity, request), llm.identity, request, llm_text(llm, request))
        records, report = Generator(llm, cache, config, fit=minilm.fit_text).run(["owl", "fox"])
        assert report.requests == 20 and report.cached == 4 and report.sent == 16 and len(cache) == 20
        topped = GenerateConfig.from_prompts(load_prompts("cupl"), samples=2, min_per_category=25, top_up_rounds=1,
                                             cleaning=CleaningConfig(near_duplicate=None))
        records, report = Generator(llm, cache, topped, fit=minilm.fit_text).run(["owl"])
        assert report.requests == 20 and report.cached == 10 and report.sent == 10  # round 2: samples 2..3
        assert sorted({r["sample"] for r in records}) == [0, 1, 2, 3]
        assert report.short == {"owl": len(records)} and len(records) == 20  # 20 answers, 20 distinct sentences < 25


def llm_text(llm: WaffleBackend, request: Request) -> str:
    out: list[str] = []
    llm.run([request], lambda i, t: out.append(t))
    return out[0]


def test_dry_run_and_bad_inputs(run, tmp_path: Path, home: Path) -> None:  # type: ignore[no-untyped-def]
    code, text, _ = run("kb", "generate", "--categories", "owl,fox", "--llm", "waffle", "--dry-run")
    assert code == 0 and "2 categories x 5 prompts x 10 samples = 100 requests (0 cached, 100 to send)" in text
    assert "Describe what an owl looks like" in text
    code, text, _ = run("kb", "generate", "--categories", "owl", "--llm", "waffle", "--prompts", "dclip", "--dry-run", "--json")
    assert json.loads(text)["requests"] == 1
    out = tmp_path / "never.jsonl"
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("owl\ncaf\xe9\n".encode("latin-1"))
    cases = [
        (["--categories-file", str(empty)], "empty.txt: the file has no category names"),
        (["--categories-file", str(latin)], "latin1.txt:2: invalid UTF-8"),
        (["--categories-file", str(tmp_path / "missing.txt")], "categories file not found"),
        (["--categories", "owl,,fox"], "--categories: item 2 is empty"),
        (["--categories", "owl", "--llm", "gpt4"], "gpt4"),
        (["--categories", "owl", "--prompts", "nope"], "nope"),
        (["--categories", "owl", "--samples", "0"], "samples must be an integer >= 1"),
        (["--categories", "owl", "--ingest"], "--ingest needs --name"),
        (["--categories", "owl", "--out", str(tmp_path / "x.json")], "name the file .jsonl"),
        (["--categories", "owl", "--names", "never"], "--names never cannot be met by --llm waffle"),
        (["--categories", "owl", "--near-duplicate", "1.5"], "--near-duplicate must be a cosine"),
        (["--from-corpus", "nope"], "--from-corpus: no complete corpus named 'nope'"),
    ]
    for extra, message in cases:
        argv = ["kb", "generate", "--llm", "waffle", "--out", str(out), *extra]
        if "--llm" in extra:
            argv = ["kb", "generate", "--out", str(out), *extra]
        code, _, err = run(*argv)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, (extra, err)
        assert not out.exists()
    code, _, err = run("kb", "generate", "--categories", "owl", "--llm", "waffle")
    assert code == 2 and "--out FILE.jsonl, --ingest --name NAME" in err
    (tmp_path / "dir.jsonl").mkdir()
    code, _, err = run("kb", "generate", "--categories", "owl", "--llm", "waffle", "--out", str(tmp_path / "dir.jsonl"))
    assert code == 2 and "is a folder" in err
    code, _, err = run("kb", "generate", "--categories", "owl", "--from-corpus", "x", "--llm", "waffle", "--out", str(out))
    assert code == 2 and "one way" in err


def test_ingest_and_compare_corpora(run, tmp_path: Path, home: Path) -> None:  # type: ignore[no-untyped-def]
    """Generated → ingested → centres → one eval table comparing corpus selections."""
    hand = tmp_path / "hand.jsonl"
    hand.write_text("".join(json.dumps({"category": c, "text": t}) + "\n" for c, ts in {
        "owl": ["An owl is a nocturnal bird of prey with large forward-facing eyes.", "Owls hoot at night in the woods."],
        "red fox": ["A red fox is a small wild canine with orange fur and a bushy tail.", "Foxes hunt mice in fields."],
        "goldfish": ["A goldfish is a small orange fish kept in bowls and ponds.", "Goldfish swim in an aquarium."],
    }.items() for t in ts))
    assert run("ingest", str(hand), "--name", "hand", "--encoder", "minilm")[0] == 0
    code, text, err = run("kb", "generate", "--from-corpus", "hand", "--llm", "waffle", "--ingest", "--name", "waffle",
                          "--samples", "2", "--min-per-category", "0", "--json")
    assert code == 0, err
    assert json.loads(text)["ingested"] == {"name": "waffle", "n_descriptions": json.loads(text)["records"], "n_categories": 3}
    out = tmp_path / "never.jsonl"  # a taken name is found before any request, and no --out file is left
    code, text, err = run("kb", "generate", "--from-corpus", "hand", "--llm", "waffle", "--ingest", "--name", "hand",
                          "--out", str(out))
    assert code == 3 and "corpus 'hand' already exists" in err and "--replace" in err and not out.exists()
    queries = tmp_path / "q.jsonl"
    queries.write_text("".join(json.dumps({"text": t, "label": c}) + "\n" for c, t in [
        ("owl", "a bird that hunts at night"), ("red fox", "an orange wild dog"), ("goldfish", "a pet fish in a bowl")]))
    code, text, err = run("eval", "recognition", "--queries", str(queries), "--strategies", "knowledge,all",
                          "--corpus", "hand", "--corpus", "waffle", "--corpus", "hand,waffle", "--json")
    assert code == 0, err
    rows = json.loads(text)
    assert [(r["corpus"], r["strategy"]) for r in rows] == [
        ("hand", "knowledge"), ("hand", "all"), ("waffle", "knowledge"), ("waffle", "all"),
        ("hand,waffle", "knowledge"), ("hand,waffle", "all")]
    assert all(r["categories"] == 3 and r["queries"] == 3 for r in rows)
    # the comparison docs/knowledge.md recommends, drawn: the corpora side by side, and one corpus's confusions
    (tmp_path / "eval.json").write_text(text)
    code, out_text, err = run("plot", "accuracy", "--from", str(tmp_path / "eval.json"), "--out", str(tmp_path / "a.png"))
    assert code == 0 and "top-1 / top-5 of 2 strategies on 3 corpora" in out_text, err
    assert (tmp_path / "a.png").read_bytes().startswith(b"\x89PNG")
    code, out_text, err = run("plot", "confusions", "--from", str(tmp_path / "eval.json"), "--kb", "waffle",
                              "--strategy", "all", "--out", str(tmp_path / "c.png"))
    assert code == 0 and "all on corpus waffle" in out_text, err
    code, _, err = run("plot", "confusions", "--from", str(tmp_path / "eval.json"), "--kb", "wafle",
                       "--out", str(tmp_path / "n.png"))
    assert code == 2 and "no rows for corpus 'wafle' (corpus: hand, waffle, hand,waffle)" in err, err
    code, text, _ = run("eval", "recognition", "--queries", str(queries), "--strategies", "all", "--corpus", "hand")
    assert code == 0 and "corpus" not in text.splitlines()[0]  # one selection: the table as before


def test_no_top_ups_at_temperature_zero(minilm, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A model that repeats itself (DCLIP's temperature 0) is not asked round after round for nothing new."""
    from unibind.indexer.knowledge.request import LLM

    class Repeater(LLM):  # a deterministic stand-in for a model at temperature 0 (not one of our components)
        spec = "repeater"

        def run(self, requests, on_result):  # type: ignore[no-untyped-def]
            for i, r in enumerate(requests):
                on_result(i, f"- long {r.category} feathers\n- sharp curved beak")

    config = GenerateConfig.from_prompts(load_prompts("dclip"), min_per_category=50, top_up_rounds=3,
                                         cleaning=CleaningConfig(near_duplicate=None))
    with ResponseCache(tmp_path / "c.sqlite") as cache:
        records, report = Generator(Repeater(), cache, config, fit=minilm.fit_text).run(["owl"])
    assert report.requests == 1 and report.short == {"owl": 2} and len(records) == 2  # no top-up at temperature 0
    assert [r["text"] for r in records] == ["owl, which has long owl feathers.", "owl, which has sharp curved beak."]


def test_a_top_up_asks_for_about_the_deficit(minilm, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """50 answers give 50 descriptions; 2 short of 52, a top-up asks each of the 5 prompts once more (5 requests,
    not another 50), and the prefetched first round counts as sent, not cached."""
    config = GenerateConfig.from_prompts(load_prompts("cupl"), min_per_category=52,
                                         cleaning=CleaningConfig(near_duplicate=None))
    with ResponseCache(tmp_path / "c.sqlite") as cache:
        records, report = Generator(WaffleBackend(), cache, config, fit=minilm.fit_text).run(["owl", "fox"])
    assert report.requests == report.sent == 2 * 55 and report.cached == 0 and not report.short
    assert sorted({r["sample"] for r in records if r["category"] == "owl"}) == list(range(11))
