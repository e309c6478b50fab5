"""``unibind eval zero-shot`` end to end, against exact NumPy references.

An image folder, a CSV and a webdataset tar of coloured shapes are written here and encoded by a tiny seeded open_clip
model saved to a temp checkpoint; a feature modality with a trained head and text queries live in a MiniLM space.
For every classifier the top-1, top-5 and mean per-class recall equal a brute-force NumPy computation from the same
embeddings (the cached query vectors, the store's description vectors, the prompts encoded here); the default rule's
top-1 equals ``eval recognition``'s on the same queries. Bad input fails with one line naming the file."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw
from sqlalchemy import select

from unibind.indexer.encoders.base import Encoder
from unibind.indexer.encoders.factory import build_encoder
from unibind.indexer.runtime.device import Device
from unibind.indexer.runtime.vectors import from_bytes
from unibind.retrieval.centres.prompts import BASE_PROMPT, CLIP_TEMPLATES, fill
from unibind.retrieval.evaluation.classification_metrics import METRICS
from unibind.retrieval.evaluation.datasets import match_categories
from unibind.retrieval.evaluation.intervals import bootstrap_intervals
from unibind.retrieval.evaluation.zero_shot import CACHE_FOLDER, CLASSIFIERS, Coverage, classifier_table, predict
from unibind.retrieval.recognition.engine import DEFAULT_CENTRING, DEFAULT_TOP_M
from unibind.schema import Category, Database, Description
from unibind.schema.errors import InvalidInput
from tiny_models import make_tiny_open_clip
from tests.test_modalities import Cli as ModalitiesCli

# the tiny open_clip space's knowledge base; "white" has no descriptions (uncovered, scored by its base prompt)
COLOURS: dict[str, list[str]] = {
    "red": ["a bright red square", "crimson paint on a wall", "scarlet poppies in a field"],
    "blue": ["a deep blue ocean", "navy coloured fabric", "an azure summer sky"],
    "green": ["fresh green grass", "emerald leaves in the rain", "a lime painted door"],
    "yellow": ["a ripe lemon", "sunflowers at noon"],
    "purple": ["violet petals", "a plum coloured scarf", "lavender fields"],
    "dark_orange": ["a tangerine on a plate", "autumn pumpkins"],
}
RGB = {"red": (220, 20, 30), "blue": (20, 40, 220), "green": (30, 200, 40), "yellow": (240, 230, 30),
       "purple": (140, 30, 160), "dark_orange": (240, 120, 10), "white": (250, 250, 250)}
CLASSES = sorted(RGB)  # imagefolder's class order: the folder names, sorted
PER_CLASS = 3
# each classifier's scoring, from its definition: (a class scores the mean of its m best members, centred)
SCORING = {"prompt": (1, False), "templates": (1, False), "cupl": (1, False), "paper": (1, False),
           "default": (DEFAULT_TOP_M, DEFAULT_CENTRING)}
# the MiniLM space: text queries and a feature modality
ANIMALS: dict[str, list[str]] = {
    "tench": ["A freshwater fish with olive-green scales.", "A stout fish with tiny scales living in weedy lakes.",
              "Its slimy body and small red eyes mark this river fish."],
    "tabby cat": ["A small furry pet with a striped coat.", "It purrs on the sofa and chases mice.",
                  "Whiskers, pointed ears and dark stripes on grey fur."],
    "fire truck": ["A large red vehicle with ladders and hoses.", "An emergency vehicle with flashing lights.",
                   "Firefighters ride it to burning buildings."],
    "bicycle": ["Two wheels, pedals and a chain.", "A light frame with handlebars and a saddle.",
                "It leans against a wall, its spokes glinting."],
    "violin": ["A wooden string instrument played with a bow.", "Four strings tuned in fifths under the chin.",
               "Its sound holes are shaped like the letter f."],
}
TEXT_QUERIES = [("a fish in a pond", "tench"), ("a cat asleep on a rug", "tabby cat"),
                ("sirens on the way to a blaze", "fire truck"), ("ride it to work", "bicycle"),
                ("music from a string instrument", "violin"), ("scales and fins", "tench"),
                ("a pet that meows", "tabby cat"), ("a red emergency vehicle", "fire truck"),
                ("pedal along the river", "bicycle"), ("a bow drawn across strings", "violin"),
                ("a golden fish", "tench"), ("a ladder on a lorry", "fire truck")]


class Cli(ModalitiesCli):
    """The modality tests' in-process CLI; a failure here also has no traceback and one ``unibind: error:`` line."""

    def fails(self, *args: object) -> str:
        code, out, err = self(*args)
        assert code == 2 and out == "", (code, out, err)
        assert "Traceback" not in err
        line = err.rstrip("\n").rsplit("\r", 1)[-1].rsplit("\n", 1)[-1]
        assert line.startswith("unibind: error: ")
        return line


# -- the NumPy reference -----------------------------------------------------------------------------------------
def unit(x: np.ndarray) -> np.ndarray:
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def ranked(q: np.ndarray, members: dict[str, np.ndarray], top_m: int, centring: bool) -> list[list[str]]:
    """Per query the 5 best names: a class scores the mean of its top_m best cosines (centred on the mean of the
    category means first, when ``centring``); ties by name."""
    names = list(members)
    m = {n: unit(v) for n, v in members.items()}
    q = unit(q)
    if centring:
        mu = np.mean([v.mean(axis=0) for v in m.values()], axis=0)
        m = {n: unit(v - mu) for n, v in m.items()}
        q = unit(q - mu)
    scores = np.stack([np.sort(q @ m[n].T, axis=1)[:, ::-1][:, :top_m].mean(axis=1) for n in names], axis=1)
    return [[names[j] for j in sorted(range(len(names)), key=lambda j: (-row[j], names[j]))][:5] for row in scores]


def reference_members(encoder: Encoder, db: Database, display: list[str], name: str) -> dict[str, np.ndarray]:
    """The classifier's members per class name, from its definition (every knowledge base here has fewer than 50
    descriptions per category and no prompt templates, so `top` and `knowledge` keep them all)."""
    with db.session() as s:
        rows = s.execute(select(Category.name, Description.vector).join(Category,
                                                                          Description.category_id == Category.id)).all()
    dim = encoder.dim
    described: dict[str, list[np.ndarray]] = {}
    for cat, vec in rows:
        described.setdefault(cat, []).append(from_bytes([vec], dim)[0])
    out = {}
    for n in display:
        prompt = encoder.encode_text([fill(BASE_PROMPT, n)])
        if name == "templates":
            out[n] = unit(encoder.encode_text([fill(t, n) for t in CLIP_TEMPLATES]).astype(np.float64).mean(axis=0))
        elif name == "prompt" or n not in described:
            out[n] = prompt
        elif name == "cupl":
            out[n] = unit(np.mean(described[n], axis=0, dtype=np.float64))
        else:
            out[n] = np.stack(described[n])
    return out


def reference_metrics(predicted: list[list[str]], labels: list[str], classes: list[str]) -> dict[str, float]:
    top1 = np.array([p[0] == y for p, y in zip(predicted, labels)], dtype=np.float64)
    top5 = np.array([y in p[:5] for p, y in zip(predicted, labels)], dtype=np.float64)
    recalls = [top1[[y == c for y in labels]].mean() for c in classes if c in labels]
    return {"acc1": top1.mean(), "acc5": top5.mean(), "mean_per_class_recall": float(np.mean(recalls))}


def check_against_reference(records: list[dict[str, Any]], encoder: Encoder, db: Database, vectors: np.ndarray,
                            labels: list[str], classes: list[str], display: list[str],
                            api: tuple[Any, ...] | None = None) -> dict[str, list[list[str]]]:
    """Every record's metrics equal the reference's on ``vectors`` (the cached query encodings); with ``api`` (db,
    device, space, coverage), each classifier's top-5 per query equals the reference's too."""
    assert [r["classifier"] for r in records] == list(CLASSIFIERS)
    to_display = dict(zip(classes, display))
    shown = [to_display[y] for y in labels]
    predictions = {}
    by_name = {r["classifier"]: r for r in records}
    for name, clf in CLASSIFIERS.items():
        predicted = ranked(vectors, reference_members(encoder, db, display, name), *SCORING[name])
        expected = reference_metrics(predicted, shown, display)
        got = by_name[name]["metrics"]
        assert got.keys() == expected.keys()
        for m in METRICS:
            assert got[m] == pytest.approx(expected[m], abs=1e-12), (name, m)
        predictions[name] = predicted
        top1 = np.array([p[0] == y for p, y in zip(predicted, shown)], dtype=np.float64)
        assert by_name[name]["intervals"]["acc1"] == pytest.approx(list(bootstrap_intervals(top1)[0]), abs=1e-12)
        if api is not None:  # the classifier's own top-5 per query, not only its metrics
            db_, device, space, cover = api
            table = classifier_table(db_, device, space, encoder, cover, clf, corpora=None)
            class_of = {n: i for i, n in enumerate(display)}
            got_ranks = predict(table, device, clf.top_m, vectors, class_of)
            assert [[display[j] for j in row if j >= 0] for row in got_ranks] == predicted, name
    prompt_top1 = np.array([p[0] == y for p, y in zip(predictions["prompt"], shown)], dtype=np.float64)
    default_top1 = np.array([p[0] == y for p, y in zip(predictions["default"], shown)], dtype=np.float64)
    diff = by_name["default"]["difference_to_prompt"]
    assert diff["acc1"] == pytest.approx(default_top1.mean() - prompt_top1.mean(), abs=1e-12)
    assert diff["acc1_ci"] == pytest.approx(list(bootstrap_intervals(default_top1 - prompt_top1)[0]), abs=1e-12)
    assert by_name["prompt"]["difference_to_prompt"] is None
    return predictions


def cached(home: Path, before: set[Path]) -> tuple[np.ndarray, np.ndarray]:
    (new,) = set((home / CACHE_FOLDER).glob("*.npz")) - before
    with np.load(new) as saved:
        return saved["vectors"], saved["labels"]


def cache_files(home: Path) -> set[Path]:
    return set((home / CACHE_FOLDER).glob("*.npz"))


# -- the image world ----------------------------------------------------------------------------------------------
def shape(colour: str, i: int) -> Image.Image:
    rng = np.random.default_rng(hash((colour, i)) % 2**32)
    im = Image.fromarray(rng.integers(0, 60, size=(40, 44, 3), dtype=np.uint8))
    draw = ImageDraw.Draw(im)
    box = [4 + i, 4 + 2 * i, 30 + i, 34]
    (draw.ellipse if i % 2 else draw.rectangle)(box, fill=RGB[colour])
    return im


@pytest.fixture(scope="module")
def tiny_spec(tmp_path_factory: pytest.TempPathFactory) -> str:
    return make_tiny_open_clip(tmp_path_factory.mktemp("tiny_open_clip"))


@pytest.fixture(scope="module")
def image_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``folder/<class>/<i>.png``, ``images.csv`` (paths relative to it), ``shards/shard-00000{0,1}.tar`` with
    ``classnames.txt``, and ``covered.jsonl`` (the images of the described classes, for eval recognition)."""
    root = tmp_path_factory.mktemp("zero_shot_images")
    rows, covered = [], []
    for c in CLASSES:
        (root / "folder" / c).mkdir(parents=True)
        for i in range(PER_CLASS):
            path = root / "folder" / c / f"{i}.png"
            shape(c, i).save(path)
            rows.append(f"folder/{c}/{i}.png,{c}")
            if c in COLOURS:
                covered.append({"image": f"folder/{c}/{i}.png", "label": c})
    (root / "images.csv").write_text("image,label\n" + "\n".join(rows) + "\n", encoding="utf-8")
    (root / "covered.jsonl").write_text("".join(json.dumps(r) + "\n" for r in covered), encoding="utf-8")
    (root / "shards").mkdir()
    (root / "shards" / "classnames.txt").write_text("\n".join(CLASSES) + "\n", encoding="utf-8")
    samples = [(c, i) for i in range(PER_CLASS) for c in CLASSES]
    for s, part in enumerate((samples[: len(samples) // 2], samples[len(samples) // 2 :])):
        with tarfile.open(root / "shards" / f"shard-{s:06d}.tar", "w") as tar:
            for c, i in part:
                buf = io.BytesIO()
                shape(c, i).save(buf, format="PNG")
                for ext, data in (("png", buf.getvalue()), ("cls", str(CLASSES.index(c)).encode())):
                    info = tarfile.TarInfo(f"{c}_{i}.{ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    (root / "colours.json").write_text(json.dumps(COLOURS), encoding="utf-8")
    return root


@pytest.mark.slow
def test_image_datasets_against_numpy(db_url: str, home: Path, capsys: pytest.CaptureFixture[str], tiny_spec: str,
                                      image_data: Path, cpu: Device, tmp_path: Path) -> None:
    cli = Cli(db_url, home, capsys)
    cli.ok("ingest", image_data / "colours.json", "--name", "colours", "--encoder", tiny_spec)
    encoder = build_encoder(tiny_spec, cpu)
    db = Database(db_url)
    try:
        display = [c for c in CLASSES]  # every described class is named as in the store; white is its own
        labels = [c for c in CLASSES for _ in range(PER_CLASS)]
        before = cache_files(home)
        folder_records = cli.json("eval", "zero-shot", "--dataset", f"imagefolder:{image_data / 'folder'}")
        vectors, cached_labels = cached(home, before)
        assert [CLASSES[i] for i in cached_labels] == labels
        # the cached vectors are the images through the space's image tower
        from unibind.indexer.modalities.projection import load_projection
        from unibind.indexer.store.contents import find_space

        with db.session() as s:
            space = find_space(s, None)
        files = [image_data / "folder" / c / f"{i}.png" for c in CLASSES for i in range(PER_CLASS)]
        np.testing.assert_allclose(vectors, load_projection(db, space, "image", cpu, home=home).images(files), atol=1e-5)
        cover = Coverage(CLASSES, [c if c in COLOURS else None for c in CLASSES])
        check_against_reference(folder_records, encoder, db, vectors, labels, CLASSES, display, (db, cpu, space, cover))
        rec = folder_records[0]
        assert (rec["dataset"], rec["task"], rec["queries"], rec["categories"]) == ("folder", "zeroshot_classification",
                                                                                   len(labels), len(CLASSES))
        assert rec["uncovered"] == ["white"] and rec["uncovered_scored_by"] == "prompt"

        # the CSV and the webdataset shards: the same images in another order, the same metrics from their vectors
        for spec in (f"csv:{image_data / 'images.csv'}", f"webdataset:{image_data / 'shards' / 'shard-{000000..000001}.tar'}"):
            before = cache_files(home)
            records = cli.json("eval", "zero-shot", "--dataset", spec, "--batch-size", "4")
            v, y = cached(home, before)
            check_against_reference(records, encoder, db, v, [CLASSES[i] for i in y], CLASSES, display)
            for a, b in zip(records, folder_records):
                assert a["metrics"] == pytest.approx(b["metrics"], abs=1e-12)

        # the default rule's top-1 equals eval recognition's on the same queries (the described classes' images)
        (row,) = cli.json("eval", "recognition", "--queries", image_data / "covered.jsonl", "--modality", "image",
                          "--strategies", "knowledge")
        records = cli.json("eval", "zero-shot", "--dataset", f"jsonl:{image_data / 'covered.jsonl'}",
                           "--classifiers", "default,prompt")
        assert records[0]["classifier"] == "default" and records[0]["uncovered"] == []
        assert records[0]["metrics"]["acc1"] == row["top1"] and records[0]["metrics"]["acc5"] == row["top5"]

        # the table: every classifier, the uncovered class named and counted; a second run encodes nothing
        before = cache_files(home)
        out = cli.ok("eval", "zero-shot", "--dataset", f"imagefolder:{image_data / 'folder'}")
        assert cache_files(home) == before and "(query encodings from the cache)" in out
        assert "1 of 7 classes have no descriptions and are scored by the base prompt in every classifier: white" in out
        assert all(name in out for name in CLASSIFIERS) and "default (default)" in out
        line = cli.fails("eval", "zero-shot", "--dataset", f"imagefolder:{image_data / 'folder'}", "--require-kb")
        assert "1 of 7 classes have no descriptions" in line and "white" in line

        # CLIP_benchmark's layout: `clip_benchmark build` tabulates the files where it imports, else field by field
        cli.ok("eval", "zero-shot", "--dataset", f"imagefolder:{image_data / 'folder'}", "--out-dir", tmp_path / "res")
        files = sorted((tmp_path / "res").glob("*.json"))
        assert len(files) == len(CLASSIFIERS)
        check_clip_benchmark_layout(files, tmp_path / "benchmark.csv")

        # the picture of the comparison, with its intervals
        (tmp_path / "zs.json").write_text(json.dumps(folder_records), encoding="utf-8")
        out = cli.ok("plot", "accuracy", "--from", tmp_path / "zs.json", "--out", tmp_path / "zs.png")
        assert "5 strategies" in out and (tmp_path / "zs.png").stat().st_size > 0
    finally:
        db.dispose()


def check_clip_benchmark_layout(files: list[Path], csv_out: Path) -> None:
    try:
        from clip_benchmark.cli import main_build
    except ImportError:  # its dependencies (pycocoevalcap, ...) are an optional extra: the layout, field by field
        main_build = None
    for f in files:
        data = json.loads(f.read_text(encoding="utf-8"))
        for key, kind in (("dataset", str), ("model", str), ("pretrained", str), ("task", str), ("metrics", dict),
                          ("language", str)):
            assert isinstance(data[key], kind), key
        assert data["task"] == "zeroshot_classification"
        assert set(data["metrics"]) == {"acc1", "acc5", "mean_per_class_recall"}
        assert all(isinstance(v, float) and 0 <= v <= 1 for v in data["metrics"].values())
    if main_build is not None:
        import argparse
        import csv

        main_build(argparse.Namespace(files=[str(f) for f in files], output=str(csv_out)))
        with open(csv_out, newline="") as f:
            rows = list(csv.DictReader(f))
        assert sorted(r["classifier"] for r in rows) == sorted(CLASSIFIERS)
        assert all(r["acc1"] and r["mean_per_class_recall"] for r in rows)


@pytest.mark.slow
def test_bad_images_name_the_file_or_are_skipped(db_url: str, home: Path, capsys: pytest.CaptureFixture[str],
                                                 tiny_spec: str, image_data: Path, tmp_path: Path) -> None:
    cli = Cli(db_url, home, capsys)
    cli.ok("ingest", image_data / "colours.json", "--name", "colours", "--encoder", tiny_spec)
    folder = tmp_path / "folder"
    for c in ("red", "blue"):
        (folder / c).mkdir(parents=True)
        shape(c, 0).save(folder / c / "0.png")
    (folder / "blue" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot an image")
    line = cli.fails("eval", "zero-shot", "--dataset", f"imagefolder:{folder}")
    assert str(folder / "blue" / "broken.png") in line and "not a readable image" in line and "--skip-bad" in line
    assert not cache_files(home)  # nothing written
    out = cli.ok("eval", "zero-shot", "--dataset", f"imagefolder:{folder}", "--skip-bad", "--classifiers", "prompt")
    assert "2 samples, 2 classes, 1 bad samples skipped" in out

    (folder / "green").mkdir()
    line = cli.fails("eval", "zero-shot", "--dataset", f"imagefolder:{folder}", "--no-cache")
    assert str(folder / "green") in line and "class folder has no images" in line

    names = tmp_path / "names.txt"
    names.write_text("red\nblue\n", encoding="utf-8")
    shape("red", 1).save(tmp_path / "r.png")
    (tmp_path / "d.csv").write_text("image,label\nr.png,red\nr.png,mauve\n", encoding="utf-8")
    line = cli.fails("eval", "zero-shot", "--dataset", f"csv:{tmp_path / 'd.csv'}", "--class-names", names)
    assert f"{tmp_path / 'd.csv'}:3" in line and "unknown label 'mauve'" in line


# -- the MiniLM world: text queries and a feature modality ----------------------------------------------------------
@pytest.mark.slow
def test_text_and_feature_queries_against_numpy(db_url: str, home: Path, capsys: pytest.CaptureFixture[str],
                                                minilm: Encoder, tmp_path: Path) -> None:
    from unibind.indexer.store.contents import find_space

    cli = Cli(db_url, home, capsys)
    (tmp_path / "kb.json").write_text(json.dumps(ANIMALS), encoding="utf-8")
    cli.ok("ingest", tmp_path / "kb.json", "--name", "kb", "--encoder", "minilm")
    classes = sorted(ANIMALS)
    db = Database(db_url)
    try:
        # text queries, labels spelled with other case and separators
        (tmp_path / "q.jsonl").write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in TEXT_QUERIES),
                                          encoding="utf-8")
        (tmp_path / "q2.jsonl").write_text("".join(json.dumps({"text": t, "label": y.replace(" ", "_").title()}) + "\n"
                                                   for t, y in TEXT_QUERIES), encoding="utf-8")
        before = cache_files(home)
        records = cli.json("eval", "zero-shot", "--dataset", f"jsonl:{tmp_path / 'q2.jsonl'}")
        vectors, y = cached(home, before)
        np.testing.assert_allclose(vectors, minilm.encode_text([t for t, _ in TEXT_QUERIES]), atol=1e-5)
        spelled = sorted({lab.replace(" ", "_").title() for _, lab in TEXT_QUERIES})
        assert records[0]["uncovered"] == [] and records[0]["categories"] == len(classes)
        display = match_categories(spelled, classes)
        with db.session() as s:
            space = find_space(s, None)
        check_against_reference(records, minilm, db, vectors, [spelled[i] for i in y], spelled, display,  # type: ignore[arg-type]
                                (db, minilm.device, space, Coverage(spelled, display)))

        (row,) = cli.json("eval", "recognition", "--queries", tmp_path / "q.jsonl", "--strategies", "knowledge")
        (default,) = cli.json("eval", "zero-shot", "--dataset", f"jsonl:{tmp_path / 'q.jsonl'}", "--classifiers", "default")
        assert default["metrics"]["acc1"] == row["top1"]
        # the paired difference to the base prompt, even when the prompt is not asked for
        full = {r["classifier"]: r for r in records}["default"]["difference_to_prompt"]
        assert default["difference_to_prompt"]["acc1"] == pytest.approx(full["acc1"], abs=1e-12)
        assert default["difference_to_prompt"]["acc1_ci"] == pytest.approx(full["acc1_ci"], abs=1e-12)

        # a feature modality through its trained head: a fixed random map of the descriptions' embeddings, plus noise
        texts = [t for ts in ANIMALS.values() for t in ts]
        cats = [c for c, ts in ANIMALS.items() for _ in ts]
        z = minilm.encode_text(texts)
        a = np.random.default_rng(7).standard_normal((48, z.shape[1])).astype(np.float32) / np.sqrt(48)
        rng = np.random.default_rng(0)
        own = rng.integers(0, len(texts), 300)
        np.save(tmp_path / "F.npy", (z[own] @ a.T + 0.05 * rng.standard_normal((300, 48))).astype(np.float32))
        (tmp_path / "pairs.jsonl").write_text("".join(json.dumps({"input": i, "description": texts[o], "label": cats[o]})
                                                      + "\n" for i, o in enumerate(own)), encoding="utf-8")
        cli.ok("head", "train", "--modality", "audio", "--pairs", tmp_path / "pairs.jsonl", "--features",
               tmp_path / "F.npy", "--epochs", "10", "--batch-size", "256", "--lr", "0.05")
        qown = rng.integers(0, len(texts), 30)
        np.save(tmp_path / "Q.npy", (z[qown] @ a.T + 0.05 * rng.standard_normal((30, 48))).astype(np.float32))
        (tmp_path / "Q.txt").write_text("".join(f"{cats[o]}\n" for o in qown), encoding="utf-8")
        before = cache_files(home)
        records = cli.json("eval", "zero-shot", "--dataset", f"features:{tmp_path / 'Q.npy'}", "--labels",
                           tmp_path / "Q.txt", "--modality", "audio")
        vectors, y = cached(home, before)
        feature_classes = sorted(set(cats[o] for o in qown))
        check_against_reference(records, minilm, db, vectors, [feature_classes[i] for i in y], feature_classes,
                                feature_classes)
        assert records[-1]["metrics"]["acc1"] >= 0.8 and records[0]["modality"] == "audio"
    finally:
        db.dispose()


def test_class_names_match_exactly_then_without_case_or_separators_never_fuzzily() -> None:
    categories = ["tabby cat", "fire truck", "Crane", "crane bird"]
    assert match_categories(["tabby cat", "Fire_Truck", "CRANE", "crane-bird", "tabby", "fire trucks"], categories) == \
        ["tabby cat", "fire truck", "Crane", "crane bird", None, None]
    with pytest.raises(InvalidInput, match="differ only in case"):
        match_categories(["a b"], ["A b", "a_B"])
    # ImageNet's two "missile" classes: one category, the same classifier (ties go to the first)
    assert match_categories(["fire truck", "Fire-Truck"], categories) == ["fire truck", "fire truck"]
    cover = Coverage(["missile", "tench", "missile", "white"], ["missile", "tench", "missile", None])
    assert cover.names() == ["missile", "tench", "missile [class 2]", "white"]


def test_dataset_specs_read_their_samples_and_name_what_is_wrong(tmp_path: Path) -> None:
    from unibind.retrieval.evaluation.datasets import BadSamples, DatasetOptions, open_dataset

    with pytest.raises(InvalidInput, match="is not one of: imagefolder:DIR"):
        open_dataset("folder/")
    with pytest.raises(InvalidInput, match="needs --dataset-root DIR"):
        open_dataset("clip_benchmark:cifar10")
    np.save(tmp_path / "f.npy", np.arange(12, dtype=np.float32).reshape(4, 3))
    with pytest.raises(InvalidInput, match="needs --labels FILE"):
        open_dataset(f"features:{tmp_path / 'f.npy'}")
    (tmp_path / "f.txt").write_text("a\nb\na\n", encoding="utf-8")
    with pytest.raises(InvalidInput, match=r"f\.txt: 3 labels for the 4 rows"):
        open_dataset(f"features:{tmp_path / 'f.npy'}", DatasetOptions(labels=str(tmp_path / "f.txt")))
    (tmp_path / "f.txt").write_text("a\nb\na\nb\n", encoding="utf-8")
    rows = open_dataset(f"features:{tmp_path / 'f.npy'}", DatasetOptions(labels=str(tmp_path / "f.txt")))
    got = list(rows.batches(3, BadSamples()))
    assert rows.classes == ["a", "b"] and [b.labels.tolist() for b in got] == [[0, 1, 0], [1]]
    np.testing.assert_array_equal(np.concatenate([b.inputs for b in got]), np.load(tmp_path / "f.npy"))
    (tmp_path / "q.jsonl").write_text('{"text": "a fish", "name": "tench"}\n', encoding="utf-8")
    with pytest.raises(InvalidInput, match=r"q\.jsonl: each line needs one of the fields image, path"):
        open_dataset(f"jsonl:{tmp_path / 'q.jsonl'}")

    # webdataset: cls or txt labels, streamed across shards; a sample of metadata only is not a sample
    (tmp_path / "shards").mkdir()
    samples = [("a", {"png": "red", "cls": b"1"}), ("b", {"png": "blue", "txt": b"red"}),
               ("c", {"json": b"{}"}), ("d", {"jpg": "green", "txt": b"mauve"})]
    for s, part in enumerate((samples[:2], samples[2:])):
        with tarfile.open(tmp_path / "shards" / f"{s:06d}.tar", "w") as tar:
            for key, entries in part:
                for ext, value in entries.items():
                    data = value
                    if isinstance(value, str):
                        buf = io.BytesIO()
                        Image.new("RGB", (8, 8), value).save(buf, format="PNG" if ext == "png" else "JPEG")
                        data = buf.getvalue()
                    info = tarfile.TarInfo(f"{key}.{ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    pattern = str(tmp_path / "shards" / "{000000..000001}.tar")
    with pytest.raises(InvalidInput, match="no classnames.txt beside the shards"):
        open_dataset(f"webdataset:{pattern}")
    with pytest.raises(FileNotFoundError, match="000002.tar"):
        open_dataset(f"webdataset:{tmp_path / 'shards' / '{000000..000002}.tar'}")
    (tmp_path / "shards" / "classnames.txt").write_text("blue\nred\n", encoding="utf-8")
    wds = open_dataset(f"webdataset:{pattern}")
    with pytest.raises(InvalidInput, match=r"000001\.tar:d: unknown label 'mauve'"):
        list(wds.batches(8, BadSamples()))
    bad = BadSamples(skip=True)
    got = list(wds.batches(8, bad))
    assert [b.labels.tolist() for b in got] == [[1, 1]] and bad.count == 1
    assert [im.getpixel((0, 0)) for im in got[0].inputs] == [(255, 0, 0), (0, 0, 255)]
