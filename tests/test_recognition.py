"""Recognition end to end with the real MiniLM: both engines against a NumPy brute force over the stored
centres, label subsets, the CLI, evaluation files and the dev benchmark split."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from unibind.indexer.readers.corpus import read_corpus
from unibind.indexer.encoders.base import Encoder
from unibind.indexer.store.ingest import IngestConfig, ingest
from unibind.retrieval.centres.builder import CentreSpec
from unibind.retrieval.centres.strategies import DEFAULT_STRATEGY
from unibind.retrieval.cli.main import main
from unibind.retrieval.evaluation.dev_benchmark import make_split, mask_class_name
from unibind.retrieval.evaluation.accuracy import accuracy, read_queries
from unibind.retrieval.recognition.recognizer import DEFAULT_TOP_M, Recognizer
from unibind.schema import Corpus, Database
from tests.corpus_samples import ANIMALS, VEHICLES, write_json

QUERIES = ["an orange fish in a bowl", "a vehicle that puts out fires", "a striped pet", "two wheels and pedals"]


@pytest.fixture
def kb(db: Database, home: Path, tmp_path: Path, minilm: Encoder) -> Database:
    data = read_corpus(write_json(tmp_path / "kb.json", {**ANIMALS, **VEHICLES}))
    ingest(db, data, IngestConfig(name="kb", encoder="minilm"), home=home, device=minilm.device, encoder=minilm)
    return db


def brute_force(
    names: list[str], vectors: np.ndarray, owner: np.ndarray, q: np.ndarray, k: int, top_m: int = 1,
    centring: bool = False,
) -> list[list[str]]:
    """Per category the mean of its top_m best cosines (1: the max); top k names, ties by name. ``centring``:
    members and queries minus the mean of the category means of the raw members, renormalised, first."""
    vectors, q = vectors.astype(np.float64), q.astype(np.float64)
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    if centring:
        mu = np.mean([vectors[owner == c].mean(axis=0) for c in range(len(names))], axis=0)
        vectors, q = vectors - mu, q - mu
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        q /= np.linalg.norm(q, axis=1, keepdims=True)
    sims = q @ vectors.T  # [B, M]
    out = []
    for row in sims:
        best = {names[c]: np.sort(row[owner == c])[::-1][:top_m].mean() for c in range(len(names))}
        out.append(sorted(best, key=lambda n: (-best[n], n))[:k])
    return out


@pytest.mark.parametrize("strategy", ["top", "informative", "all", "prompt", "knowledge"])
def test_engines_equal_brute_force(kb: Database, minilm: Encoder, strategy: str) -> None:
    rec = Recognizer(kb, minilm.device, spec=CentreSpec(strategy=strategy, k=2), encoder_obj=minilm, top_m=1,
                     centring=False)
    assert rec.table.mean is None
    q = minilm.encode_text(QUERIES)
    ref = brute_force(rec.table.names, rec.table.vectors, rec.table.owner, q, 3)
    faiss_out = rec.recognize_vectors(q, k=3, engine="faiss")
    dense_out = rec.recognize_vectors(q, k=3, engine="dense")
    assert [r.labels for r in faiss_out] == ref == [r.labels for r in dense_out]
    assert [r.scores for r in faiss_out] == [r.scores for r in dense_out]
    if strategy != "prompt":
        assert [r.labels[0] for r in faiss_out] == ["goldfish", "fire truck", "tabby cat", "bicycle"]


@pytest.mark.parametrize("strategy", ["knowledge", "informative", "all", "prompt"])
def test_default_rule_equals_brute_force(kb: Database, minilm: Encoder, strategy: str) -> None:
    """The default rule (mean of the 3 best members, centred space) against an independent NumPy reference
    that centres the raw members itself."""
    rec = Recognizer(kb, minilm.device, spec=CentreSpec(strategy=strategy, k=2), encoder_obj=minilm)
    raw = Recognizer(kb, minilm.device, spec=CentreSpec(strategy=strategy, k=2), encoder_obj=minilm, centring=False)
    assert rec.top_m == DEFAULT_TOP_M == 3 and rec.centring and rec.table.mean is not None
    q = minilm.encode_text(QUERIES + ["a cat", "fish", "a fast red machine"])
    ref = brute_force(raw.table.names, raw.table.vectors, raw.table.owner, q, 4, top_m=3, centring=True)
    faiss_out, dense_out = rec.recognize_vectors(q, k=4, engine="faiss"), rec.recognize_vectors(q, k=4, engine="dense")
    assert [r.labels for r in faiss_out] == ref == [r.labels for r in dense_out]
    assert [r.scores for r in faiss_out] == [r.scores for r in dense_out]
    # the centring changes the answer's scores, not the fact that it is exact
    paper = raw.recognize_vectors(q, k=4)
    assert [r.scores for r in paper] != [r.scores for r in faiss_out]


def test_mean_of_top_2_equals_brute_force(kb: Database, minilm: Encoder) -> None:
    rec = Recognizer(kb, minilm.device, spec=CentreSpec(strategy="top", k=3), encoder_obj=minilm, top_m=2)
    assert rec.top_m == 2 and all(engine.top_m == 2 for engine in (rec.engine("faiss"), rec.engine("dense")))
    q = minilm.encode_text(QUERIES)
    raw = Recognizer(kb, minilm.device, spec=CentreSpec(strategy="top", k=3), encoder_obj=minilm, centring=False)
    ref = brute_force(raw.table.names, raw.table.vectors, raw.table.owner, q, 4, top_m=2, centring=True)
    faiss_out, dense_out = rec.recognize_vectors(q, k=4, engine="faiss"), rec.recognize_vectors(q, k=4, engine="dense")
    assert [r.labels for r in faiss_out] == ref == [r.labels for r in dense_out]
    assert [r.scores for r in faiss_out] == [r.scores for r in dense_out]
    with pytest.raises(ValueError, match="top_m must be an integer >= 1"):
        Recognizer(kb, minilm.device, encoder_obj=minilm, top_m=0)


def test_labels_subset_and_unknown_label(kb: Database, minilm: Encoder) -> None:
    rec = Recognizer(kb, minilm.device, spec=CentreSpec(k=3), encoder_obj=minilm)
    out = rec.recognize_texts(["an orange fish in a bowl"], k=5, labels=["tench", "bicycle"])[0]
    assert sorted(out.labels) == ["bicycle", "tench"] and out.labels[0] == "tench"
    with pytest.raises(ValueError, match="unknown label 'goldfsh'.*'goldfish'"):
        rec.recognize_texts(["x"], labels=["goldfsh"])
    assert rec.recognize_texts([]) == []


def test_cli_centres_recognize_eval(kb: Database, home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--db", kb.url.render_as_string(hide_password=False), "--home", str(home)]
    assert main([*base, "centres", "build", "--strategy", "top", "-k", "2"]) == 0
    assert "5 categories, 5 built, 0 reused" in capsys.readouterr().out
    assert main([*base, "centres", "show", "tench", "--strategy", "top", "-k", "2", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [m["rank"] for m in shown["members"]] == [1, 2] and shown["candidates"] == 4
    assert main([*base, "recognize", "--text", "a red truck with ladders", "--text", "a small orange fish", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [o["labels"][0] for o in out] == ["fire truck", "goldfish"] and len(out[0]["labels"]) == 5
    assert main([*base, "recognize", "--text", "a red truck", "--labels", "tench,bicycle", "-k", "1", "--engine", "dense"]) == 0
    text = capsys.readouterr().out
    assert "bicycle" in text and "fire truck" not in text
    assert main([*base, "recognize", "--text", "x", "--labels", "bicycel"]) == 2
    assert "did you mean 'bicycle'" in capsys.readouterr().err
    paper = [*base, "recognize", "--text", "a red truck with ladders", "--no-centring", "--json"]
    assert main([*paper, "--top-m", "1"]) == 0
    top1 = json.loads(capsys.readouterr().out)[0]
    assert main([*paper, "--top-m", "2"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["scores"][0] <= top1["scores"][0] + 1e-9  # the max >= the mean of 2
    assert main([*base, "recognize", "--text", "x", "--top-m", "0"]) == 2
    assert "top_m must be an integer >= 1" in capsys.readouterr().err
    queries = tmp_path / "q.jsonl"
    queries.write_text("\n".join(json.dumps({"text": t, "label": lab}) for t, lab in zip(QUERIES, ["goldfish", "fire truck", "tabby cat", "bicycle"])))
    assert main([*base, "eval", "recognition", "--queries", str(queries), "--strategies", "top,prompt", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["strategy"] for r in rows] == ["top", "prompt"] and rows[0]["top1"] == 1.0 and rows[0]["queries"] == 4
    assert [r["default"] for r in rows] == [False, False] and rows[0]["top1_ci"] == [1.0, 1.0]
    # the default rule is listed first and marked; every accuracy carries its bootstrap interval
    assert main([*base, "eval", "recognition", "--queries", str(queries), "--strategies", f"top,prompt,{DEFAULT_STRATEGY}", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["strategy"], r["default"]) for r in rows] == [(DEFAULT_STRATEGY, True), ("top", False), ("prompt", False)]
    for r in rows:
        for k in ("top1", "top5"):
            lo, hi = r[f"{k}_ci"]
            assert 0 <= lo <= r[k] <= hi <= 1
    assert main([*base, "eval", "recognition", "--queries", str(queries), "--strategies", f"top,{DEFAULT_STRATEGY}", "--top-m", "2", "--json"]) == 0
    assert [(r["strategy"], r["default"]) for r in json.loads(capsys.readouterr().out)] == [("top", False), (DEFAULT_STRATEGY, False)]
    assert main([*base, "eval", "recognition", "--queries", str(queries), "--strategies", f"top,{DEFAULT_STRATEGY}"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[2].startswith(f"{DEFAULT_STRATEGY} (default)") and table[3].startswith("top ")
    assert "100.00 % [100.00, 100.00]" in table[3] and "bootstrap 95 % interval" in table[-1]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a fish", "label": "tench"}\n{"text": "x", "label": "unicorn"}\n')
    assert main([*base, "eval", "recognition", "--queries", str(bad)]) == 2
    assert "bad.jsonl:2: label 'unicorn' is not a category" in capsys.readouterr().err


def test_read_queries_errors(tmp_path: Path) -> None:
    for content, needle in [('{"text": "a"}\n', "q.jsonl:1: field 'label'"), ("[1]\n", "q.jsonl:1: each line must be a JSON object"),
                            ("{bad\n", "q.jsonl:1: invalid JSON"), ("\n\n", "q.jsonl: no queries")]:
        (tmp_path / "q.jsonl").write_text(content)
        with pytest.raises(ValueError, match=re.escape(needle)):
            read_queries(tmp_path / "q.jsonl")
    with pytest.raises(FileNotFoundError, match="queries file not found"):
        read_queries(tmp_path / "none.jsonl")


def test_accuracy() -> None:
    assert accuracy([["a", "b"], ["b", "a"], ["c"]], ["a", "a", "a"]) == (1 / 3, 2 / 3)


def test_dev_split_never_names_the_class_and_holds_out() -> None:
    split = make_split(classes=5, holdout=7, seed=3)
    assert len(split.queries) == 5 * 7
    for q in split.queries:
        words = [w for w in re.findall(r"[A-Za-z]+", q.label) if len(w) >= 3]
        assert not any(re.search(rf"(?i)\b{w}", q.text) for w in words), q.text
        assert q.text not in split.descriptions[q.label]
    assert all(len(t) == 80 for t in split.templates.values())
    assert make_split(classes=5, holdout=7, seed=3) == split  # seeded
    assert mask_class_name("Great white sharks hunt. The shark!", "great white shark") == "it hunt. The it!"


@pytest.mark.slow
def test_dev_benchmark_small(db_url: str, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--db", db_url, "--home", str(home)]
    assert main([*base, "eval", "dev", "--classes", "4", "--holdout", "5", "--encoder", "minilm", "--strategies", "top,knowledge", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["kb"], r["strategy"]) for r in rows] == [("descriptions", "knowledge"), ("descriptions", "top"), ("all", "knowledge"), ("all", "top")]
    assert all(r["top_m"] == 3 and r["centring"] is True for r in rows)
    assert all(r["queries"] == 20 and r["categories"] == 4 for r in rows)
    assert [r["default"] for r in rows] == [r["strategy"] == DEFAULT_STRATEGY for r in rows] == [True, False, True, False]
    assert all(r[f"{k}_ci"][0] <= r[k] <= r[f"{k}_ci"][1] for r in rows for k in ("top1", "top5"))
    # the user's store is left as it was (no dev corpora join its centres); the benchmark's own store has them
    user = Database(db_url)
    try:
        with user.session() as session:
            assert session.scalars(select(Corpus.name)).all() == []
    finally:
        user.dispose()
    dev = home / "dev-benchmark"
    assert main(["--db", f"sqlite:///{dev / 'unibind.db'}", "--home", str(dev), "corpus", "list", "--json"]) == 0
    names = {r["name"] for r in json.loads(capsys.readouterr().out)}
    assert names == {"dev-cupl-descriptions-c4-h5-s0", "dev-cupl-templates-c4-h5-s0"}


def test_auto_engine_is_dense_for_few_queries_and_faiss_for_batches(kb: Database, minilm: Encoder) -> None:
    from unibind.retrieval.recognition.engine import AUTO_DENSE_BELOW

    rec = Recognizer(kb, minilm.device, encoder_obj=minilm)
    assert rec.default_engine == "auto" and set(rec._engines) == {"dense"}  # the single-query engine, built at once
    rec.recognize_vectors(minilm.encode_text(QUERIES[0])[0], k=2)  # one 1-D query
    rec.recognize_vectors(minilm.encode_text(QUERIES * 7), k=2)  # 28 queries
    assert set(rec._engines) == {"dense"}  # neither needed FAISS
    assert rec.engine(batch=1).name == "dense" and rec.engine(batch=AUTO_DENSE_BELOW - 1).name == "dense"
    assert rec.engine(batch=AUTO_DENSE_BELOW).name == "faiss"
    q = minilm.encode_text((QUERIES * 10)[: AUTO_DENSE_BELOW + 3])  # a batch: FAISS
    auto = rec.recognize_vectors(q, k=4)
    assert set(rec._engines) == {"dense", "faiss"}  # the batch went to FAISS
    assert auto == rec.recognize_vectors(q, k=4, engine="dense") == rec.recognize_vectors(q, k=4, engine="faiss")
    assert [rec.recognize_vectors(row, k=4)[0] for row in q[:3]] == auto[:3]  # one query at a time: dense
    with pytest.raises(ValueError, match="unknown recognition engine 'fast'; engines: auto, faiss, dense"):
        Recognizer(kb, minilm.device, encoder_obj=minilm, engine="fast")
