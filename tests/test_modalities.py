"""Modalities end to end through the CLI and the Python API: images through the open_clip tower (zero-shot in a
space that shares it, through a trained head otherwise or when one is active), feature modalities (a well-known
name and a registered one) through versioned heads, and the bad inputs that must fail cleanly.

Everything is tiny and real: a seeded 32-d open_clip model saved to a temp checkpoint, PIL images of the common
formats generated here, the real MiniLM text encoder, SQLite and PostgreSQL. Every score is checked against an
exact NumPy reference: image embeddings from open_clip's own building blocks (no unibind code), the head's weights
read back from its safetensors file, and S(M, C) = max_j cos(q, z_C^j) written out by brute force.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw
from sqlalchemy import func, select

from conftest import fresh_pg_schema  # tests/ is on sys.path (pytest's default import mode)
from unibind.indexer.store.contents import find_space
from unibind.indexer.runtime.device import Device
from unibind.indexer.encoders.base import Encoder
from unibind.indexer.modalities.head import LinearHead
from unibind.indexer.modalities.projection import load_projection
from unibind.retrieval.centres.builder import CentreSpec, load_centres
from unibind.retrieval.cli.main import main
from unibind.retrieval.recognition.engine import DEFAULT_TOP_M
from unibind.schema import Centre, CentreMember, Corpus, Database, Description, Head, Item, Modality, Space
from tiny_models import TINY_OPEN_CLIP_CONFIG, make_tiny_open_clip

ATOL = 1e-5
FORMATS = ("png", "jpg", "webp", "bmp", "tiff")
N_IMAGES = 10

# the knowledge base of the tiny open_clip space: no prompt templates, fewer than K=50 per category, so every
# description is a centre member and the reference can use them all
COLOURS: dict[str, list[str]] = {
    "red": ["a bright red square", "crimson paint on a wall", "scarlet poppies in a field"],
    "blue": ["a deep blue ocean", "navy coloured fabric", "an azure summer sky"],
    "green": ["fresh green grass", "emerald leaves in the rain", "a lime painted door"],
}

# the knowledge base of the MiniLM space for the feature modality: five categories, three descriptions each
ANIMALS_AND_THINGS: dict[str, list[str]] = {
    "tench": ["A freshwater fish with olive-green scales.", "A stout fish with tiny scales living in weedy lakes.",
              "Its slimy body and small red eyes mark this river fish."],
    "tabby cat": ["A small furry pet with a striped coat.", "It purrs on the sofa and chases mice.",
                  "Whiskers, pointed ears and dark stripes on grey fur."],
    "fire truck": ["A large red vehicle with ladders and hoses.", "An emergency vehicle with flashing lights and a siren.",
                   "Firefighters ride it to burning buildings."],
    "bicycle": ["Two wheels, pedals and a chain.", "A light frame with handlebars and a saddle.",
                "It leans against a wall, its spokes glinting."],
    "violin": ["A wooden string instrument played with a bow.", "Four strings tuned in fifths under the chin.",
               "Its sound holes are shaped like the letter f."],
}


# -- helpers ------------------------------------------------------------------------------------------------
@dataclass
class Cli:
    """``unibind --db URL --home HOME --device cpu ...`` in-process, with its exit code, stdout and stderr (on CPU,
    like the references, so scores agree to ATOL on a machine with a GPU too)."""

    url: str
    home: Path
    capsys: pytest.CaptureFixture[str]

    def __call__(self, *args: object) -> tuple[int, str, str]:
        code = main(["--db", self.url, "--home", str(self.home), "--device", "cpu", *map(str, args)])
        out = self.capsys.readouterr()
        return code, out.out, out.err

    def ok(self, *args: object) -> str:
        code, out, err = self(*args)
        assert code == 0, err
        return out

    def json(self, *args: object) -> Any:
        return json.loads(self.ok(*args, "--json"))

    def fails(self, *args: object, code: int = 2) -> str:
        """Exit ``code`` (2: a user mistake, 3: a conflict with the store), nothing on stdout, one error line on
        stderr; returns that line."""
        expected = code
        code, out, err = self(*args)
        assert code == expected, (code, out, err)
        assert out == ""
        return error_line(err)


def error_line(err: str) -> str:
    """The single line a user error prints (progress bars, redrawn with carriage returns, may come before it)."""
    assert "Traceback" not in err
    assert err.endswith("\n") and err.count("\n") == 1, f"expected one line on stderr, got {err!r}"
    line = err.rsplit("\r", 1)[-1].rstrip("\n")
    assert line.startswith("unibind: error: "), line
    return line


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def np_normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[None, :]
    return x / np.sqrt((x * x).sum(axis=1, keepdims=True))


def reference_scores(query: np.ndarray, centres: dict[str, np.ndarray], top_m: int = DEFAULT_TOP_M) -> dict[str, float]:
    """The default rule by brute force in float64, from its definition: members and query minus mu (the mean of the
    category means of the unit members), renormalised (with two categories or more); per category the mean of its
    top_m best cosines."""
    q = np_normalize(query)[0].astype(np.float64)  # [d]
    members = {c: np_normalize(v).astype(np.float64) for c, v in centres.items()}
    if len(members) >= 2:
        mu = np.mean([v.mean(axis=0) for v in members.values()], axis=0)
        members = {c: (v - mu) / np.linalg.norm(v - mu, axis=1, keepdims=True) for c, v in members.items()}
        q = (q - mu) / np.linalg.norm(q - mu)
    return {c: float(np.sort(v @ q)[::-1][:top_m].mean()) for c, v in members.items()}


def assert_recognition(result: dict[str, Any], expected: dict[str, float]) -> None:
    """A ``recognize --json`` result ranks every category by its reference score, scores to ATOL."""
    ranked = sorted(expected, key=lambda c: -expected[c])
    assert result["labels"] == ranked[: len(result["labels"])]
    np.testing.assert_allclose(result["scores"], [expected[c] for c in result["labels"]], atol=ATOL)


def table_counts(db: Database) -> dict[str, int]:
    with db.session() as s:
        return {m.__tablename__: int(s.scalar(select(func.count()).select_from(m)) or 0)
                for m in (Modality, Head, Item, Corpus, Description, Centre, CentreMember)}


def files_under(home: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(home)): (p.stat().st_size, p.stat().st_mtime_ns) for p in home.rglob("*") if p.is_file()}


def space_of(db: Database) -> Space:
    with db.session() as session:
        return find_space(session, None)


# -- module fixtures: the tiny model, its reference, the images ----------------------------------------------
@pytest.fixture(scope="module")
def tiny_spec(tmp_path_factory: pytest.TempPathFactory) -> str:
    return make_tiny_open_clip(tmp_path_factory.mktemp("tiny_open_clip"))


@dataclass(frozen=True)
class OpenClipReference:
    """The tiny checkpoint loaded with open_clip's building blocks directly (no registry, no unibind code)."""

    text: Callable[[list[str]], np.ndarray]  # [N] strings → [N, 32] unit rows
    image: Callable[[Path], np.ndarray]  # a file → [1, 32] unit row


@pytest.fixture(scope="module")
def oc_ref(tiny_spec: str) -> OpenClipReference:
    import open_clip
    import torch

    cfg = TINY_OPEN_CLIP_CONFIG
    model = open_clip.CLIP(embed_dim=cfg["embed_dim"], vision_cfg=open_clip.CLIPVisionCfg(**cfg["vision_cfg"]),
                           text_cfg=open_clip.CLIPTextCfg(**cfg["text_cfg"]))
    model.load_state_dict(torch.load(tiny_spec.split("@", 1)[1], map_location="cpu", weights_only=True))
    model.eval()
    preprocess = open_clip.image_transform(cfg["vision_cfg"]["image_size"], is_train=False)

    def text(texts: list[str]) -> np.ndarray:
        with torch.no_grad():
            return np_normalize(model.encode_text(open_clip.tokenize(texts)).numpy())

    def image(path: Path) -> np.ndarray:
        with Image.open(path) as im:
            pixels = preprocess(im.convert("RGB"))[None]  # [1, 3, 32, 32]
        with torch.no_grad():
            return np_normalize(model.encode_image(pixels).numpy())

    return OpenClipReference(text, image)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of seeded images in every format (noise under shapes, sizes that need resizing and cropping),
    ``pairs.jsonl`` pairing each with two descriptions of a colour, and ``garbage.png`` (not an image)."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    pairs = []
    names = list(COLOURS)
    for i in range(N_IMAGES):
        size = (40 + 4 * i, 36 + 2 * i)
        im = Image.fromarray(rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8))
        draw = ImageDraw.Draw(im)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        draw.ellipse([4, 4, 4 + 3 * i + 10, 4 + 2 * i + 12], fill=colour)
        name = f"img_{i}.{FORMATS[i % len(FORMATS)]}"
        im.save(folder / name)
        category = names[i % len(names)]
        for j in ((i // 3) % 3, (i // 3 + 1) % 3):  # all nine descriptions are used
            pairs.append({"input": name, "description": COLOURS[category][j], "label": category})
    write_jsonl(folder / "pairs.jsonl", pairs)
    (folder / "garbage.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not an image at all")
    return folder


def image_files(images: Path) -> list[Path]:
    return [images / f"img_{i}.{FORMATS[i % len(FORMATS)]}" for i in range(len(FORMATS))]  # one of each format


# -- 1. images, zero-shot --------------------------------------------------------------------------------------
def test_image_zero_shot_in_a_shared_space(db_url: str, home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           tiny_spec: str, oc_ref: OpenClipReference, images: Path, cpu: Device) -> None:
    cli = Cli(db_url, home, capsys)
    (tmp_path / "colours.json").write_text(json.dumps(COLOURS), encoding="utf-8")
    cli.ok("ingest", tmp_path / "colours.json", "--name", "colours", "--encoder", tiny_spec)
    files = image_files(images)
    args = [a for f in files for a in ("--image", f)]
    results = cli.json("recognize", *args, "-k", "3")
    assert [r["query"] for r in results] == [str(f) for f in files]

    centres = {c: oc_ref.text(texts) for c, texts in COLOURS.items()}  # every description is a member
    for f, result in zip(files, results):
        assert_recognition(result, reference_scores(oc_ref.image(f), centres))

    # the store's centre vectors are the descriptions' (the same scores from load_centres)
    db = Database(db_url)
    try:
        space = space_of(db)
        names, vectors, owner = load_centres(db, space, CentreSpec())
        assert names == sorted(COLOURS) and vectors.shape == (9, 32)
        stored = {n: vectors[owner == i] for i, n in enumerate(names)}
        q = oc_ref.image(files[0])
        expected = reference_scores(q, centres)
        got = reference_scores(q, stored)
        assert got.keys() == expected.keys() and all(abs(got[c] - expected[c]) < ATOL for c in got)

        # the Python API: zero-shot projection of the space's own tower
        projection = load_projection(db, space, "image", cpu, home=home)
        assert projection.zero_shot and projection.describe() == "image (zero-shot)" and projection.input_dim == 32
        np.testing.assert_allclose(projection.images(files), np.concatenate([oc_ref.image(f) for f in files]), atol=ATOL)
        assert table_counts(db)["heads"] == 0 and table_counts(db)["modalities"] == 0  # a query writes no rows
    finally:
        db.dispose()

    # eval recognition with image queries (paths relative to the queries file): labelled with the reference's top-1
    write_jsonl(tmp_path / "q.jsonl", [{"image": os.path.relpath(f, tmp_path), "label": r["labels"][0]}
                                       for f, r in zip(files, results)])
    (row,) = cli.json("eval", "recognition", "--queries", tmp_path / "q.jsonl", "--modality", "image",
                      "--strategies", "informative")
    assert (row["queries"], row["categories"], row["top1"], row["top5"]) == (len(files), 3, 1.0, 1.0)

    # cross-modal search: image → descriptions, the brute-force top 3
    hits = cli.json("search", "--image", files[1], "--target", "descriptions", "-k", "3")[0]["hits"]
    texts = [t for ts in COLOURS.values() for t in ts]
    sims = oc_ref.text(texts) @ oc_ref.image(files[1])[0]  # [9]
    top = np.argsort(-sims)[:3]
    assert [h["text"] for h in hits] == [texts[i] for i in top]
    np.testing.assert_allclose([h["score"] for h in hits], sims[top], atol=ATOL)
    assert hits[0]["label"] == next(c for c, ts in COLOURS.items() if texts[top[0]] in ts)


# -- 2. image heads: train, versions, activate, tamper ---------------------------------------------------------
def test_image_head_versions_round_trip(db_url: str, home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        tiny_spec: str, oc_ref: OpenClipReference, images: Path, cpu: Device) -> None:
    cli = Cli(db_url, home, capsys)
    (tmp_path / "colours.json").write_text(json.dumps(COLOURS), encoding="utf-8")
    cli.ok("ingest", tmp_path / "colours.json", "--name", "colours", "--encoder", tiny_spec)
    query = images / "img_7.webp"
    centres = {c: oc_ref.text(texts) for c, texts in COLOURS.items()}
    zero_shot = cli.json("recognize", "--image", query)[0]

    report = cli.json("heads", "train", "--modality", "image", "--pairs", images / "pairs.jsonl", "--epochs", "3")
    assert (report["modality"], report["version"], report["active"]) == ("image", 1, True)
    assert (report["samples"], report["pairs"], report["descriptions"]) == (N_IMAGES, 2 * N_IMAGES, 9)
    rows = cli.json("heads", "list")
    assert [(r["modality"], r["version"], r["active"], r["d_in"], r["d_out"]) for r in rows] == [("image", 1, True, 32, 32)]
    assert rows[0]["val_r1"] is not None and rows[0]["untrained_val_r1"] is not None and rows[0]["epochs"] <= 3

    v1 = cli.json("heads", "show", "--modality", "image")
    assert v1["version"] == 1 and v1["hyperparams"]["max_epochs"] == 3 and v1["pairs"] == 2 * N_IMAGES
    assert len(v1["data_sha256"]) == 64 and {"val_r1", "val_loss", "untrained_val_r1", "epochs"} <= set(v1["metrics"])
    path1 = Path(v1["path"])
    assert path1.is_file() and path1.suffix == ".safetensors" and path1.is_relative_to(home)
    assert hashlib.sha256(path1.read_bytes()).hexdigest() == v1["file_sha256"]
    head1, meta = LinearHead.load(path1, expect_sha256=v1["file_sha256"])
    assert (head1.d_in, head1.d_out) == (32, 32)
    assert meta["modality"] == "image" and meta["version"] == "1" and meta["data_sha256"] == v1["data_sha256"]

    # recognition now goes through the head: the reference projects with the weights read back from the file
    raw = oc_ref.image(query)
    through_head = cli.json("recognize", "--image", query, "-k", "3")[0]
    assert_recognition(through_head, reference_scores(head1.project(raw), centres))
    assert not np.allclose(sorted(through_head["scores"]), sorted(zero_shot["scores"]), atol=1e-3)

    # a second version, not activated: v1 stays active and keeps answering
    cli.json("heads", "train", "--modality", "image", "--pairs", images / "pairs.jsonl", "--epochs", "3",
             "--seed", "1", "--no-activate")
    assert [(r["version"], r["active"]) for r in cli.json("heads", "list", "--modality", "image")] == [(1, True), (2, False)]
    assert cli.json("recognize", "--image", query, "-k", "3")[0] == through_head
    v2 = cli.json("heads", "show", "--modality", "image", "--version", "2")
    assert v2["active"] is False and v2["data_sha256"] == v1["data_sha256"]  # same data, another seed
    assert v2["hyperparams"]["seed"] == 1 and v2["path"] != v1["path"]
    head2, _ = LinearHead.load(Path(v2["path"]), expect_sha256=v2["file_sha256"])
    assert not np.allclose(head2.weight, head1.weight)

    # activate v2: exactly one active row, the queries use v2
    assert cli.json("heads", "activate", "--modality", "image", "--version", "2")["active_version"] == 2
    db = Database(db_url)
    try:
        with db.session() as s:
            active = list(s.execute(select(Head.version).where(Head.active.is_(True))))
        assert active == [(2,)]
        projection = load_projection(db, space_of(db), "image", cpu, home=home)
        assert projection.head_version == 2 and projection.describe() == "image (head v2)"
        np.testing.assert_allclose(projection.images([query]), np_normalize(head2.project(raw)), atol=ATOL)
    finally:
        db.dispose()
    assert cli.json("heads", "show", "--modality", "image")["version"] == 2  # show defaults to the active one
    assert_recognition(cli.json("recognize", "--image", query, "-k", "3")[0], reference_scores(head2.project(raw), centres))

    # a changed head file is refused, naming the file; going back to the untouched v1 works again
    data = bytearray(Path(v2["path"]).read_bytes())
    data[-1] ^= 0xFF
    Path(v2["path"]).write_bytes(bytes(data))
    line = cli.fails("recognize", "--image", query, code=3)
    rel = Path(v2["path"]).relative_to(home.resolve()).as_posix()  # named relative to the data folder
    assert f"head version 2 ({rel}) changed since it was recorded" in line and "(unibind head activate)" in line
    assert "changed since it was recorded" in cli.fails("heads", "activate", "--modality", "image", "--version", "2",
                                                        code=3)
    cli.ok("heads", "activate", "--modality", "image", "--version", "1")
    assert cli.json("recognize", "--image", query, "-k", "3")[0] == through_head


# -- 3. images into a space without an image tower --------------------------------------------------------------
def test_image_head_into_a_text_only_space(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           minilm: Encoder, tiny_spec: str, oc_ref: OpenClipReference,
                                           images: Path) -> None:
    """SQLite only: the store's side of image heads runs on both backends in the tests above and below."""
    cli = Cli(f"sqlite:///{tmp_path / 'unibind.db'}", home, capsys)
    (tmp_path / "colours.json").write_text(json.dumps(COLOURS), encoding="utf-8")
    cli.ok("ingest", tmp_path / "colours.json", "--name", "colours", "--encoder", "minilm")
    query = images / "img_3.bmp"
    for command in (["recognize", "--image", query], ["search", "--image", query, "--target", "descriptions"],
                    ["gallery", "add", "--modality", "image", "--files", query]):
        line = cli.fails(*command)  # advice this command cannot take is no advice: the head that it needs
        assert ("space minilm has no image tower and no active image head" in line
                and "unibind head train --modality image --image-encoder open_clip:ARCH@CHECKPOINT --pairs" in line), line
    line = cli.fails("heads", "train", "--modality", "image", "--pairs", images / "pairs.jsonl")
    assert "no image tower" in line and "--image-encoder" in line

    report = cli.json("heads", "train", "--modality", "image", "--image-encoder", tiny_spec,
                      "--pairs", images / "pairs.jsonl", "--epochs", "3")
    assert report["version"] == 1 and report["active"] is True
    (row,) = cli.json("heads", "list")
    assert (row["modality"], row["d_in"], row["d_out"], row["active"]) == ("image", 32, 384, True)
    mods = {m["name"]: m for m in cli.json("modality", "list")}
    assert mods["image"]["input_dim"] == 32 and mods["image"]["source"] == tiny_spec and mods["image"]["kind"] == "image"
    assert mods["text"]["input_dim"] == 384

    show = cli.json("heads", "show", "--modality", "image")
    head, _ = LinearHead.load(Path(show["path"]), expect_sha256=show["file_sha256"])
    texts = [t for ts in COLOURS.values() for t in ts]
    z = minilm.encode_text(texts)  # [9, 384]
    centres = {c: z[3 * i : 3 * i + 3] for i, c in enumerate(COLOURS)}  # three descriptions per colour
    result = cli.json("recognize", "--image", query, "-k", "3")[0]
    assert_recognition(result, reference_scores(head.project(oc_ref.image(query)), centres))
    hits = cli.json("search", "--image", query, "--target", "descriptions", "-k", "2")[0]["hits"]
    sims = z @ np_normalize(head.project(oc_ref.image(query)))[0]  # [9]
    assert [h["text"] for h in hits] == [texts[i] for i in np.argsort(-sims)[:2]]


def test_train_image_refuses_another_image_encoder(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   tiny_spec: str, images: Path) -> None:
    cli = Cli(f"sqlite:///{tmp_path / 'unibind.db'}", home, capsys)
    (tmp_path / "colours.json").write_text(json.dumps(COLOURS), encoding="utf-8")
    cli.ok("ingest", tmp_path / "colours.json", "--name", "colours", "--encoder", tiny_spec)
    cli.ok("heads", "train", "--modality", "image", "--pairs", images / "pairs.jsonl", "--epochs", "1")
    line = cli.fails("heads", "train", "--modality", "image", "--pairs", images / "pairs.jsonl", "--epochs", "1",
                     "--image-encoder", "minilm")
    assert "minilm" in line
    assert [r["version"] for r in cli.json("heads", "list")] == [1]


# -- 4. a feature modality end to end ---------------------------------------------------------------------------
@dataclass(frozen=True)
class FeatureData:
    folder: Path
    texts: list[str]
    categories: list[str]  # of each text
    vectors: np.ndarray  # [15, 384] MiniLM embeddings of the texts
    query_labels: list[str]  # of each row of Q.npy


D_FEATURES, N_SAMPLES, N_QUERIES = 48, 300, 40


@pytest.fixture(scope="module")
def feature_data(tmp_path_factory: pytest.TempPathFactory, minilm: Encoder) -> FeatureData:
    """Features of a fake audio encoder: a fixed random linear map of the MiniLM embedding of the sample's
    description, plus noise. ``F.npy`` + ``pairs.jsonl`` to train on, ``Q.npy`` + ``q.jsonl`` held out."""
    folder = tmp_path_factory.mktemp("features")
    (folder / "kb.json").write_text(json.dumps(ANIMALS_AND_THINGS), encoding="utf-8")
    texts = [t for ts in ANIMALS_AND_THINGS.values() for t in ts]
    categories = [c for c, ts in ANIMALS_AND_THINGS.items() for _ in ts]
    z = minilm.encode_text(texts)  # [15, 384]
    a = np.random.default_rng(7).standard_normal((D_FEATURES, z.shape[1])).astype(np.float32) / np.sqrt(D_FEATURES)
    rng = np.random.default_rng(0)

    def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
        own = rng.integers(0, len(texts), n)  # [n]
        return (z[own] @ a.T + 0.05 * rng.standard_normal((n, D_FEATURES))).astype(np.float32), own

    feats, own = sample(N_SAMPLES)
    np.save(folder / "F.npy", feats)
    write_jsonl(folder / "pairs.jsonl", [{"input": i, "description": texts[o], "label": categories[o]} for i, o in enumerate(own)])
    queries, qown = sample(N_QUERIES)
    np.save(folder / "Q.npy", queries)
    write_jsonl(folder / "q.jsonl", [{"row": i, "label": categories[o]} for i, o in enumerate(qown)])
    return FeatureData(folder, texts, categories, z, [categories[o] for o in qown])


def test_feature_modality_end_to_end(db_url: str, home: Path, capsys: pytest.CaptureFixture[str],
                                     feature_data: FeatureData, cpu: Device) -> None:
    cli = Cli(db_url, home, capsys)
    d = feature_data.folder
    cli.ok("ingest", d / "kb.json", "--name", "kb", "--encoder", "minilm")
    report = cli.json("heads", "train", "--modality", "audio", "--pairs", d / "pairs.jsonl", "--features", d / "F.npy",
                      "--epochs", "10", "--batch-size", "256", "--lr", "0.05")
    assert (report["version"], report["active"], report["samples"], report["descriptions"]) == (1, True, N_SAMPLES, 15)
    show = cli.json("heads", "show", "--modality", "audio")
    assert (show["d_in"], show["d_out"], show["pairs"]) == (D_FEATURES, 384, N_SAMPLES)
    m = show["metrics"]
    assert m["val_r1"] >= 0.9 and m["untrained_val_r1"] < m["val_r1"] and m["untrained_val_r1"] <= 0.5
    assert show["hyperparams"]["lr"] == 0.05 and show["hyperparams"]["batch_size"] == 256
    assert {"name": "audio", "kind": "features", "input_dim": D_FEATURES, "source": None} in cli.json("modality", "list")

    head, meta = LinearHead.load(Path(show["path"]), expect_sha256=show["file_sha256"])
    assert meta["modality"] == "audio" and (head.d_in, head.d_out) == (D_FEATURES, 384)
    queries = np.load(d / "Q.npy")
    projected = head.project(queries)  # [40, 384]
    owner = np.array(feature_data.categories)
    centres = {c: feature_data.vectors[owner == c] for c in ANIMALS_AND_THINGS}
    results = cli.json("recognize", "--features", d / "Q.npy", "--modality", "audio", "-k", "5")
    assert [r["query"] for r in results] == [f"{d / 'Q.npy'}[{i}]" for i in range(N_QUERIES)]
    for i, r in enumerate(results):
        assert_recognition(r, reference_scores(projected[i], centres))
    right = np.mean([r["labels"][0] == y for r, y in zip(results, feature_data.query_labels)])
    assert right >= 0.9

    (row,) = cli.json("eval", "recognition", "--queries", d / "q.jsonl", "--modality", "audio", "--features", d / "Q.npy",
                      "--strategies", "informative")
    assert row["strategy"] == "informative" and row["queries"] == N_QUERIES and row["categories"] == 5
    assert row["top1"] >= 0.9 and row["top1"] == pytest.approx(right) and row["top5"] == 1.0

    db = Database(db_url)
    try:
        projection = load_projection(db, space_of(db), "audio", cpu, home=home)
        assert projection.head_version == 1 and projection.describe() == "audio (head v1)"
        np.testing.assert_allclose(projection.features(queries), np_normalize(projected), atol=ATOL)
    finally:
        db.dispose()


# -- 5. a registered (not well-known) feature modality ---------------------------------------------------------
def test_registered_modality(db_url: str, home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                             tiny_spec: str) -> None:
    cli = Cli(db_url, home, capsys)
    (tmp_path / "colours.json").write_text(json.dumps(COLOURS), encoding="utf-8")
    cli.ok("ingest", tmp_path / "colours.json", "--name", "colours", "--encoder", tiny_spec)
    assert cli.json("modality", "list") == [{"name": "text", "kind": "text", "input_dim": 32, "source": tiny_spec}]
    foo = {"name": "foo", "kind": "features", "input_dim": 16, "source": "a 16-d encoder"}
    assert cli.json("modality", "add", "foo", "--dim", "16", "--source", "a 16-d encoder") == foo
    assert cli.json("modality", "list")[1:] == [foo]
    assert "foo" in cli.ok("modality", "list")
    cli.ok("modality", "add", "foo", "--dim", "16")  # the same again: nothing changes
    line = cli.fails("modality", "add", "foo", "--dim", "20", code=3)  # a name taken: a conflict, as documented
    assert "'foo'" in line and "16" in line and "20" in line and "the name is taken" in line
    for name, needle in (("text", "built in"), ("image", "built in"), ("descriptions", "reserved"), ("Audio!", "not valid")):
        line = cli.fails("modality", "add", name, "--dim", "16")
        assert repr(name) in line and needle in line

    rng = np.random.default_rng(3)
    np.save(tmp_path / "f16.npy", rng.standard_normal((12, 16)).astype(np.float32))
    np.save(tmp_path / "f20.npy", rng.standard_normal((12, 20)).astype(np.float32))
    texts = [t for ts in COLOURS.values() for t in ts]
    write_jsonl(tmp_path / "pairs.jsonl", [{"input": i, "description": texts[i % 9]} for i in range(12)])
    line = cli.fails("heads", "train", "--modality", "foo", "--pairs", tmp_path / "pairs.jsonl", "--features", tmp_path / "f20.npy")
    assert str(tmp_path / "f20.npy") in line and "20 dimensions" in line and "foo expects 16" in line
    report = cli.json("heads", "train", "--modality", "foo", "--pairs", tmp_path / "pairs.jsonl",
                      "--features", tmp_path / "f16.npy", "--epochs", "2")
    assert report["version"] == 1
    (row,) = cli.json("heads", "list", "--modality", "foo")
    assert (row["d_in"], row["d_out"]) == (16, 32)
    line = cli.fails("recognize", "--features", tmp_path / "f20.npy", "--modality", "foo")
    assert str(tmp_path / "f20.npy") in line and "20 dimensions" in line and "foo expects 16" in line
    assert len(cli.json("recognize", "--features", tmp_path / "f16.npy", "--modality", "foo")) == 12
    assert [m["name"] for m in cli.json("modality", "list")] == ["text", "foo"]


# -- 6. bad inputs: one clear line, exit code 2, nothing written -------------------------------------------------
@dataclass(frozen=True)
class World:
    """A tiny open_clip space with an image head (v1) and an audio head (8-d features), and bad input files."""

    url: str
    home: Path
    db: Database
    paths: dict[str, str]


D_AUDIO, N_AUDIO = 8, 40


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tiny_spec: str,
          images: Path) -> Iterator[World]:
    folder = tmp_path_factory.mktemp(f"world_{request.param}")
    with ExitStack() as stack:
        url = stack.enter_context(fresh_pg_schema()) if request.param == "postgres" else f"sqlite:///{folder / 'unibind.db'}"
        db = build_world(url, folder, tiny_spec, images)
        stack.callback(db.dispose)
        paths = {p.stem: str(p) for p in folder.iterdir() if p.is_file()}
        paths.update(dir=str(folder), pairs_img=str(images / "pairs.jsonl"), img0=str(images / "img_0.png"))
        yield World(url, folder / "home", db, paths)


def build_world(url: str, folder: Path, tiny_spec: str, images: Path) -> Database:
    """Fill the store at ``url`` (home ``folder/home``) and write the bad input files into ``folder``."""
    home = folder / "home"

    def run(*args: object) -> None:
        assert main(["--db", url, "--home", str(home), "--device", "cpu", *map(str, args)]) == 0, args

    (folder / "colours.json").write_text(json.dumps(COLOURS), encoding="utf-8")
    run("ingest", folder / "colours.json", "--name", "colours", "--encoder", tiny_spec)
    run("heads", "train", "--modality", "image", "--pairs", images / "pairs.jsonl", "--epochs", "2")
    rng = np.random.default_rng(5)
    feats = rng.standard_normal((N_AUDIO, D_AUDIO)).astype(np.float32)
    np.save(folder / "F.npy", feats)
    texts = [t for ts in COLOURS.values() for t in ts]
    write_jsonl(folder / "pairs.jsonl", [{"input": i, "description": texts[i % 9]} for i in range(N_AUDIO)])
    run("heads", "train", "--modality", "audio", "--pairs", folder / "pairs.jsonl", "--features", folder / "F.npy", "--epochs", "2")
    run("recognize", "--features", folder / "F.npy", "--modality", "audio")  # builds the centres

    nan = feats.copy()
    nan[3, 2] = np.nan
    np.save(folder / "nan.npy", nan)
    (folder / "inf.jsonl").write_text("".join(json.dumps([1e39 if i == 5 and j == 0 else float(x) for j, x in enumerate(row)]) + "\n"
                                              for i, row in enumerate(feats)), encoding="utf-8")
    np.save(folder / "F5.npy", feats[:, :5])
    np.save(folder / "F32.npy", rng.standard_normal((4, 32)).astype(np.float32))
    (folder / "garbage.png").write_bytes((images / "garbage.png").read_bytes())
    img0 = str(images / "img_0.png")
    write_jsonl(folder / "pairs_missing.jsonl", [{"input": img0, "description": "a red thing"},
                                                 {"input": "nowhere.png", "description": "a blue thing"}])
    write_jsonl(folder / "pairs_garbage.jsonl", [{"input": img0, "description": "a red thing"},
                                                 {"input": "garbage.png", "description": "a blue thing"}])
    write_jsonl(folder / "pairs_oob.jsonl", [{"input": 0, "description": "a"}, {"input": 1, "description": "b"},
                                             {"input": 99, "description": "c"}])
    write_jsonl(folder / "qf.jsonl", [{"row": 0, "label": "red"}])
    write_jsonl(folder / "q_oob.jsonl", [{"row": 0, "label": "red"}, {"row": N_AUDIO, "label": "red"}])
    write_jsonl(folder / "q_text.jsonl", [{"text": "red paint", "label": "red"}])
    write_jsonl(folder / "q_img_missing.jsonl", [{"image": img0, "label": "red"}, {"image": "nowhere.png", "label": "red"}])
    return Database(url)


# (arguments, substrings of the error line); {name} is a file of the world (its stem), {dir} its folder
BAD_INPUTS: dict[str, tuple[list[str], list[str]]] = {
    "train unknown modality": (["heads", "train", "--modality", "foo", "--pairs", "{pairs}", "--features", "{F}"],
                               ["unknown modality 'foo'", "unibind modality add foo --dim"]),
    "recognize unknown modality": (["recognize", "--features", "{F}", "--modality", "foo"], ["unknown modality 'foo'"]),
    "search unknown modality": (["search", "--features", "{F}", "--modality", "foo", "--target", "descriptions"],
                                ["unknown modality 'foo'"]),
    "search unknown target": (["search", "--text", "red", "--target", "foo"], ["unknown modality 'foo'"]),
    "eval unknown modality": (["eval", "recognition", "--queries", "{qf}", "--modality", "foo", "--features", "{F}",
                               "--strategies", "informative"], ["unknown modality 'foo'"]),
    "show unknown modality": (["heads", "show", "--modality", "foo"], ["unknown modality 'foo'"]),
    "train invalid name": (["heads", "train", "--modality", "Audio!", "--pairs", "{pairs}", "--features", "{F}"],
                           ["'Audio!'", "not valid"]),
    "train text": (["heads", "train", "--modality", "text", "--pairs", "{pairs}"], ["text modality", "no head"]),
    "train descriptions": (["heads", "train", "--modality", "descriptions", "--pairs", "{pairs}", "--features", "{F}"],
                           ["'descriptions'", "not a modality"]),
    "train missing image": (["heads", "train", "--modality", "image", "--pairs", "{pairs_missing}"],
                            ["{pairs_missing}:2", '"input"', "image file not found", "{dir}/nowhere.png"]),
    "train unreadable image": (["heads", "train", "--modality", "image", "--pairs", "{pairs_garbage}"],
                               ["{garbage}", "not a readable image"]),
    "recognize unreadable image": (["recognize", "--image", "{garbage}"], ["{garbage}", "not a readable image"]),
    "search unreadable image": (["search", "--image", "{garbage}", "--target", "descriptions"],
                                ["{garbage}", "not a readable image"]),
    "recognize missing image": (["recognize", "--image", "{dir}/nowhere.png"], ["image file not found", "{dir}/nowhere.png"]),
    "train NaN features": (["heads", "train", "--modality", "audio", "--pairs", "{pairs}", "--features", "{nan}"],
                           ["{nan}", "row 3", "NaN or inf"]),
    "train inf features": (["heads", "train", "--modality", "audio", "--pairs", "{pairs}", "--features", "{inf}"],
                           ["{inf}:6", "row 5", "NaN or inf"]),
    "recognize NaN features": (["recognize", "--features", "{nan}", "--modality", "audio"], ["{nan}", "row 3", "NaN or inf"]),
    "train row out of range": (["heads", "train", "--modality", "audio", "--pairs", "{pairs_oob}", "--features", "{F}"],
                               ["{pairs_oob}:3", '"input"', "99", "out of range", f"{N_AUDIO} rows"]),
    "train image with features": (["heads", "train", "--modality", "image", "--pairs", "{pairs_img}", "--features", "{F}"],
                                  ["--features is for feature modalities"]),
    "recognize 32-d features as image": (["recognize", "--features", "{F32}", "--modality", "image"],
                                         ["'image'", "does not take feature vectors"]),
    "train features missing": (["heads", "train", "--modality", "audio", "--pairs", "{pairs}"], ["'audio'", "--features FILE"]),
    "train wrong dimension": (["heads", "train", "--modality", "audio", "--pairs", "{pairs}", "--features", "{F5}"],
                              ["{F5}", "5 dimensions", f"audio expects {D_AUDIO}"]),
    "recognize wrong dimension": (["recognize", "--features", "{F5}", "--modality", "audio"],
                                  ["{F5}", "5 dimensions", f"audio expects {D_AUDIO}"]),
    "recognize features without modality": (["recognize", "--features", "{F}"], ["--features needs --modality"]),
    "recognize text with modality": (["recognize", "--text", "red", "--modality", "audio"], ["--modality audio", "--text"]),
    "recognize two kinds": (["recognize", "--text", "red", "--image", "{img0}"], ["exactly one kind"]),
    "activate missing version": (["heads", "activate", "--modality", "image", "--version", "7"],
                                 ["'image'", "no head version 7", "versions: 1"]),
    "activate without version": (["heads", "activate", "--modality", "image"], ["--version"]),
    "eval features missing": (["eval", "recognition", "--queries", "{qf}", "--modality", "audio", "--strategies", "informative"],
                              ["--modality audio", "--features"]),
    "eval features for image": (["eval", "recognition", "--queries", "{qf}", "--modality", "image", "--features", "{F}",
                                 "--strategies", "informative"], ["--features", "feature modality"]),
    "eval row out of range": (["eval", "recognition", "--queries", "{q_oob}", "--modality", "audio", "--features", "{F}",
                               "--strategies", "informative"], ["{q_oob}:2", "'row'", f"below {N_AUDIO}"]),
    "eval text where image expected": (["eval", "recognition", "--queries", "{q_text}", "--modality", "image",
                                        "--strategies", "informative"], ["{q_text}:1", "'text'", "'image'"]),
    "eval missing image": (["eval", "recognition", "--queries", "{q_img_missing}", "--modality", "image",
                            "--strategies", "informative"], ["{q_img_missing}:2", "image file not found", "nowhere.png"]),
    "add modality with another dimension": (["modality", "add", "audio", "--dim", "9"],
                                            ["'audio'", f"input dimension {D_AUDIO}, not 9"]),
}

CONFLICTS = {"add modality with another dimension"}  # a name taken: exit 3, as docs/cli.md's table says


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_fails_cleanly_and_writes_nothing(world: World, case: str, capsys: pytest.CaptureFixture[str]) -> None:
    args, needles = BAD_INPUTS[case]
    before, files = table_counts(world.db), files_under(world.home)
    code = 3 if case in CONFLICTS else 2
    line = Cli(world.url, world.home, capsys).fails(*(a.format(**world.paths) for a in args), code=code)
    for needle in needles:
        assert needle.format(**world.paths) in line, line
    assert table_counts(world.db) == before
    assert files_under(world.home) == files


def test_features_for_the_image_modality_say_so(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    line = Cli(world.url, world.home, capsys).fails("recognize", "--features", world.paths["F"], "--modality", "image")
    assert "does not take feature vectors" in line
