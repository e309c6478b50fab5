"""``unibind plot accuracy|confusions|centre`` and the service's centre picture, on a real tiny knowledge base
(MiniLM, SQLite; the confusion counts on PostgreSQL too): the PNGs open and have sane sizes, the PCA equals a
NumPy reference, the confusions of ``evaluate()`` equal a plain count, and every bad input is one clear error
that writes nothing."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from unibind.retrieval.centres.builder import CentreSpec
from unibind.retrieval.cli.main import main
from unibind.retrieval.evaluation.accuracy import Query, confusions, evaluate
from unibind.retrieval.plots.neighbours import nearest
from unibind.retrieval.plots.projection import pca
from unibind.retrieval.recognition.recognizer import Recognizer
from unibind.retrieval.service.app import create_app
from unibind.schema import Database
from tests.corpus_samples import ANIMALS, VEHICLES, write_json
from tests.test_service import make_state

ROOT = Path(__file__).resolve().parent.parent
LABELLED = [("an orange fish in a bowl", "goldfish"), ("a vehicle that puts out fires", "fire truck"),
            ("a striped pet", "tabby cat"), ("two wheels and pedals", "bicycle"), ("a fish in a glass tank", "tench"),
            ("a pet fish", "tench"), ("a slimy fish", "goldfish"), ("a red car with a siren", "fire truck")]


def png_of(path_or_bytes: Path | bytes) -> tuple[int, int]:
    data = path_or_bytes.read_bytes() if isinstance(path_or_bytes, Path) else path_or_bytes
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(io.BytesIO(data)) as image:
        image.load()  # decodes every pixel: a truncated file fails here
        assert image.format == "PNG"
        return image.size


# -- the pieces, against plain references -------------------------------------------------------------------

def test_pca_equals_a_numpy_reference() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6)) @ np.diag([5.0, 3.0, 1.0, 0.5, 0.2, 0.1]) + 2.0
    got = pca(x)
    centred = x - x.mean(axis=0)
    values, vectors = np.linalg.eigh(np.cov(centred, rowvar=False, bias=True))  # ascending
    top = vectors[:, ::-1][:, :2]
    reference = centred @ top
    for axis in range(2):  # a principal axis is defined up to its sign
        sign = np.sign(reference[:, axis] @ got.coords[:, axis])
        np.testing.assert_allclose(got.coords[:, axis], sign * reference[:, axis], atol=1e-9)
    np.testing.assert_allclose(got.explained, values[::-1][:2] / values.sum(), rtol=1e-9)
    np.testing.assert_array_equal(pca(x).coords, got.coords)  # deterministic, signs included
    assert pca(np.ones((1, 4))).coords.tolist() == [[0.0, 0.0]]  # one point: no variance, no failure


def test_confusions_equal_a_plain_count() -> None:
    rng = np.random.default_rng(1)
    names = ["ant", "bee", "cat", "dog", "eel"]
    labels = [str(rng.choice(names)) for _ in range(300)]
    predictions = [[str(rng.choice(names)) for _ in range(3)] for _ in labels] + [[]]
    labels.append("ant")  # a query with no prediction is not counted
    counts: dict[tuple[str, str], int] = {}
    for p, y in zip(predictions, labels):
        if p and p[0] != y:
            counts[(y, p[0])] = counts.get((y, p[0]), 0) + 1
    expected = sorted(((y, p, n) for (y, p), n in counts.items()), key=lambda t: (-t[2], t[0], t[1]))
    assert list(confusions(predictions, labels)) == expected[:50]
    assert list(confusions(predictions, labels, limit=4)) == expected[:4]
    assert confusions([["a"], ["b"]], ["a", "b"]) == ()


def test_nearest_centres_by_the_cosine_of_their_means() -> None:
    vectors = np.array([[1, 0, 0], [0.8, 0.6, 0], [0, 1, 0], [0, 0, 1], [0.6, 0, 0.8]], dtype=np.float32)
    owner = np.array([0, 0, 1, 2, 2])
    got = nearest(["a", "b", "c"], vectors, owner, "a", 5)
    means = {c: vectors[owner == i].mean(0) / np.linalg.norm(vectors[owner == i].mean(0)) for i, c in enumerate("abc")}
    assert [n for n, _ in got] == sorted("bc", key=lambda c: -float(means["a"] @ means[c]))
    assert [c for _, c in got] == pytest.approx([float(means["a"] @ means[n]) for n, _ in got])


def test_evaluate_counts_the_confusions_of_its_predictions(db: Database, home: Path, tmp_path: Path,
                                                            minilm: Any) -> None:
    url = db.url.render_as_string(hide_password=False)
    assert main(["--db", url, "--home", str(home), "ingest", str(write_json(tmp_path / "kb.json", {**ANIMALS, **VEHICLES})),
                 "--name", "kb", "--encoder", "minilm"]) == 0
    queries = [Query(text, label) for text, label in LABELLED]
    rows = evaluate(db, minilm.device, queries, ["top", "prompt"], base=CentreSpec(k=2), encoder_obj=minilm)
    for row in rows:
        rec = Recognizer(db, minilm.device, spec=CentreSpec(k=2, strategy=row.strategy), encoder_obj=minilm)
        firsts = [r.labels[0] for r in rec.recognize_texts([q.text for q in queries], k=5)]
        plain = Counter((q.label, f) for q, f in zip(queries, firsts) if f != q.label)
        assert {(y, p): n for y, p, n in row.confusions} == dict(plain)
        assert [n for _, _, n in row.confusions] == sorted(plain.values(), reverse=True)
        assert sum(plain.values()) == round((1 - row.top1) * len(queries))


def test_the_parser_does_not_import_matplotlib() -> None:
    code = ("import sys\nfrom unibind.retrieval.cli.main import build_parser\nbuild_parser()\n"
            "print(sorted(m for m in ('matplotlib', 'torch', 'faiss', 'sqlalchemy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


# -- the commands, end to end ---------------------------------------------------------------------------------

@dataclass
class Kb:
    url: str
    home: Path
    root: Path
    eval_json: Path


@pytest.fixture(scope="module")
def kb(tmp_path_factory: pytest.TempPathFactory, minilm: Any) -> Kb:
    root = tmp_path_factory.mktemp("plots")
    url, home = f"sqlite:///{root / 'unibind.db'}", root / "home"
    base = ["--db", url, "--home", str(home)]
    assert main([*base, "ingest", str(write_json(root / "kb.json", {**ANIMALS, **VEHICLES})), "--name", "kb",
                 "--encoder", "minilm"]) == 0
    assert main([*base, "centres", "build", "--strategy", "all", "-K", "3"]) == 0  # the service draws them below
    queries = root / "q.jsonl"
    queries.write_text("".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in LABELLED))
    out = io.StringIO()
    sys_stdout, sys.stdout = sys.stdout, out
    try:
        assert main([*base, "eval", "recognition", "--queries", str(queries), "--strategies",
                     "top,knowledge,prompt", "-K", "2", "--json"]) == 0
    finally:
        sys.stdout = sys_stdout
    eval_json = root / "eval.json"
    eval_json.write_text(out.getvalue())
    return Kb(url, home, root, eval_json)


@pytest.fixture
def run(kb: Kb, capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    def _run(*args: str) -> tuple[int, str, str]:
        code = main(["--db", kb.url, "--home", str(kb.home), *args])
        out = capsys.readouterr()
        return code, out.out, out.err

    return _run


def test_the_eval_json_carries_the_confusions_and_the_table_does_not(kb: Kb, run) -> None:  # type: ignore[no-untyped-def]
    rows = json.loads(kb.eval_json.read_text())
    assert [r["strategy"] for r in rows] == ["knowledge", "top", "prompt"]  # the default rule first
    for r in rows:
        assert all(set(c) == {"label", "predicted", "count"} and c["count"] >= 1 for c in r["confusions"])
        assert sum(c["count"] for c in r["confusions"]) == round((1 - r["top1"]) * r["queries"])
    code, out, _ = run("eval", "recognition", "--queries", str(kb.root / "q.jsonl"), "--strategies", "top", "-K", "2")
    assert code == 0 and "confusions" not in out and out.splitlines()[0].split() == [
        "strategy", "queries", "categories", "top1", "top5"]


def test_plot_accuracy_from_a_file_and_from_stdin(kb: Kb, run, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "acc.png"
    code, text, err = run("plot", "accuracy", "--from", str(kb.eval_json), "--out", str(out))
    assert (code, err) == (0, "") and f"wrote {out}" in text
    width, height = png_of(out)
    assert 600 <= width <= 3000 and 300 <= height <= 2000
    assert out.stat().st_mode & 0o777 != 0o600  # an ordinary file, not the temporary one's private mode
    # the dev benchmark's rows, grouped by kb, on standard input
    rows = json.loads(kb.eval_json.read_text())
    dev = [{"kb": kb_name, **r} for kb_name in ("descriptions", "all") for r in rows]
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(dev)))
    code, text, _ = run("plot", "accuracy", "--from", "-", "--out", str(tmp_path / "dev.png"), "--json")
    shown = json.loads(text)
    assert code == 0 and shown["out"] == str(tmp_path / "dev.png") and "on 2 knowledge bases" in shown["shows"]
    assert png_of(tmp_path / "dev.png") == (shown["width"], shown["height"])


def test_plot_confusions_of_the_default_or_a_named_row(kb: Kb, run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rows = json.loads(kb.eval_json.read_text())
    code, text, _ = run("plot", "confusions", "--from", str(kb.eval_json), "--out", str(tmp_path / "c.png"), "--json")
    assert code == 0 and f"pairs of {rows[0]['strategy']}" in json.loads(text)["shows"]
    assert png_of(tmp_path / "c.png")[0] == 900
    prompt = next(r for r in rows if r["strategy"] == "prompt")
    code, text, _ = run("plot", "confusions", "--from", str(kb.eval_json), "--strategy", "prompt", "--top", "1",
                        "--out", str(tmp_path / "p.png"))
    assert code == 0 and f"the {min(1, len(prompt['confusions']))} most confused pairs of prompt" in text
    png_of(tmp_path / "p.png")
    dev = [{"kb": kb_name, **r} for kb_name in ("descriptions", "all") for r in rows]
    (tmp_path / "dev.json").write_text(json.dumps(dev))
    code, text, _ = run("plot", "confusions", "--from", str(tmp_path / "dev.json"), "--kb", "all", "--strategy", "top",
                        "--out", str(tmp_path / "d.png"))
    assert code == 0 and "pairs of top on kb all" in text


def test_plot_centre_builds_missing_centres_and_draws_the_neighbours(kb: Kb, run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "tench.png"
    code, text, _ = run("plot", "centre", "tench", "--strategy", "all", "--centre-size", "3", "--neighbours", "2",
                        "--out", str(out), "--json")
    shown = json.loads(text)
    assert code == 0 and "(all, K=3) and its 2 nearest centres" in shown["shows"]
    assert png_of(out) == (shown["width"], shown["height"]) == (1100, 700)
    code, _, _ = run("centres", "show", "tench", "--strategy", "all", "-K", "3")  # built as recognize builds them
    assert code == 0
    code, text, _ = run("plot", "centre", "goldfish", "--out", str(tmp_path / "g.png"))  # the defaults
    assert code == 0 and "its 4 nearest centres" in text  # 5 asked, 4 others exist
    png_of(tmp_path / "g.png")


@pytest.mark.parametrize("args,needle", [
    (["accuracy", "--from", "{root}/none.json"], "eval results file not found: {root}/none.json"),
    (["accuracy", "--from", "{bad}", "--out", "{root}/x.txt"], "must name a .png file"),
    (["accuracy", "--from", "{root}", "--out", "{root}/x.png"], "eval results file not found"),
    (["accuracy", "--from", "{bad}"], "bad.json: not the output of `unibind eval recognition|dev --json`"),
    (["confusions", "--from", "{eval}", "--strategy", "tp"], "no row for strategy 'tp'"),
    (["confusions", "--from", "{eval}", "--kb", "all"], "--kb goes with the JSON of `unibind eval dev`"),
    (["confusions", "--from", "{old}"], "has no field 'confusions'"),
    (["confusions", "--from", "{eval}", "--top", "0"], "--top must be >= 1"),
    (["centre", "tenchh"], "unknown category 'tenchh'; did you mean 'tench'"),
    (["centre", "tench", "--neighbours", "99"], "neighbours must be an integer from 0 to 12, got 99"),
    (["centre", "tench", "--out", "{root}"], "is a folder"),
    (["centre", "tench", "--method", "tsne"], "invalid choice: 'tsne'"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(kb: Kb, run, tmp_path: Path, args: list[str],  # type: ignore[no-untyped-def]
                                                         needle: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # where the default outputs would go
    (tmp_path / "bad.json").write_text(json.dumps({"strategy": "top"}))
    rows = json.loads(kb.eval_json.read_text())
    (tmp_path / "old.json").write_text(json.dumps([{k: v for k, v in r.items() if k != "confusions"} for r in rows]))
    fill = {"root": str(tmp_path), "bad": str(tmp_path / "bad.json"), "eval": str(kb.eval_json),
            "old": str(tmp_path / "old.json")}
    before = sorted(p.name for p in tmp_path.iterdir())
    code, out, err = run("plot", *[a.format(**fill) for a in args])
    assert code == 2 and out == "" and needle.format(**fill) in err
    assert len(err.strip().splitlines()) == 1 and err.startswith("unibind: error: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no PNG, no temporary file


@pytest.mark.parametrize("data,needle", [
    ("[]", "expected a non-empty JSON list of rows, got an empty list"),
    ("{nope", "invalid JSON at line 1"),
    ('[{"strategy": "top", "default": false, "top1": 0.5, "top1_ci": [0.4], "top5": 1, "top5_ci": [1, 1]}]',
     "row 0: not the output of `unibind eval recognition|dev --json`: missing field 'queries'"),
    ('[{"strategy": "top", "default": false, "top1": 0.5, "top1_ci": [0.4], "top5": 1, "top5_ci": [1, 1], '
     '"queries": 3, "categories": 2}]', "row 0: field 'top1_ci' must be a [lower, upper] pair"),
    ('[{"strategy": "top", "default": false, "top1": 1.5, "top1_ci": [0, 1], "top5": 1, "top5_ci": [1, 1], '
     '"queries": 3, "categories": 2}]', "row 0: field 'top1' must be a number in [0, 1], got 1.5"),
])
def test_eval_json_that_is_not_an_eval_names_the_field(run, tmp_path: Path, data: str, needle: str,  # type: ignore[no-untyped-def]
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(data))
    code, _, err = run("plot", "accuracy", "--from", "-", "--out", str(tmp_path / "a.png"))
    assert code == 2 and "<stdin>" in err and needle in err
    assert not (tmp_path / "a.png").exists()


# -- the service's picture ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def client(kb: Kb, minilm: Any) -> Iterator[TestClient]:
    state = make_state(kb.url, kb.home, minilm)
    with TestClient(create_app(state.config, state=state)) as c:
        yield c
    state.close()


def test_the_service_draws_a_centre(client: TestClient) -> None:
    r = client.get("/v1/categories/tabby%20cat/centre/plot.png", params={"neighbours": 2})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert png_of(r.content) == (1100, 700)
    assert client.get("/v1/categories/tabby%20cat/centre/plot.png",
                      params={"strategy": "all", "centre_size": 3}).status_code == 200  # built by the fixture
    missing = client.get("/v1/categories/tench/centre/plot.png", params={"strategy": "top", "centre_size": 7})
    assert missing.status_code == 409 and "unibind centres build" in missing.json()["detail"]
    unknown = client.get("/v1/categories/tabby/centre/plot.png")
    assert unknown.status_code == 404 and "did you mean 'tabby cat'" in unknown.json()["detail"]
    assert client.get("/v1/categories/tench/centre/plot.png", params={"neighbours": 13}).status_code == 422
    assert client.get("/v1/categories/tench/centre/plot.png", params={"centre_size": 0}).status_code == 422
    bad = client.get("/v1/categories/tench/centre/plot.png", params={"strategy": "best"})
    assert bad.status_code == 400 and "unknown centre strategy 'best'" in bad.json()["detail"]


def test_close_centre_labels_are_moved_apart_and_far_ones_stay() -> None:
    from unibind.retrieval.plots.figures import LABEL_GAP, spread_labels

    points = np.array([[0.0, 0.0], [10.0, 10.0]])  # the plot spans 10 x 10
    spots = np.array([[5.0, 5.0], [5.1, 5.0], [5.0, 5.1], [9.0, 1.0]])
    got = spread_labels(spots, points)
    step = LABEL_GAP * 10
    np.testing.assert_allclose(got, [[5.0, 5.0], [5.1, 5.0 + step], [5.0, 5.0 + 2 * step], [9.0, 1.0]])
    assert all(abs(a[1] - b[1]) >= step - 1e-9 for i, a in enumerate(got[:3]) for b in got[:i])  # none overlap


def test_label_spreading_ends_where_rounding_leaves_labels_a_hair_under_the_gap() -> None:
    """Labels a gap apart in exact arithmetic but a rounding under it in floats: the spreading stops (it once
    moved such a label to the same place forever, hanging the centre plot)."""
    from unibind.retrieval.plots.figures import LABEL_GAP, spread_labels

    rng = np.random.default_rng(0)
    for _ in range(200):
        points = rng.normal(size=(30, 2)) * rng.uniform(1e-3, 1e3)
        spots = np.repeat(points[:1], 6, axis=0) + rng.normal(size=(6, 2)) * 1e-6
        got = spread_labels(spots, points)
        span = np.ptp(points, axis=0)
        ys = np.sort(got[:, 1])
        assert np.all(np.diff(ys) >= LABEL_GAP * span[1] * (1 - 1e-6))
