"""Centre localisation on SQLite and PostgreSQL with the real MiniLM: NumPy reference, persistence,
reuse, invalidation on corpus changes, and the strategies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from unibind.indexer.store.removal import delete_corpus
from unibind.indexer.readers.corpus import read_corpus
from unibind.indexer.encoders.base import Encoder
from unibind.indexer.store.ingest import IngestConfig, ingest
from unibind.indexer.runtime.vectors import from_bytes
from unibind.retrieval.centres.builder import CentreBuilder, CentreNotBuilt, CentreSpec, centre_members, load_centres
from unibind.retrieval.centres.strategies import find_template_skeletons, skeleton
from unibind.retrieval.centres.prompts import CLIP_TEMPLATES
from unibind.schema import Centre, CentreMember, Corpus, Database, Description, Space
from unibind.schema.errors import InvalidInput, NotFound
from tests.corpus_samples import ANIMALS, VEHICLES, write_json

# descriptions plus filled-in prompt templates, as real knowledge bases mix them
MIXED = {c: texts + [t.format(c) for t in CLIP_TEMPLATES[:6]] for c, texts in {**ANIMALS, **VEHICLES}.items()}


def _ingest(db: Database, home: Path, table: dict[str, list[str]], name: str, enc: Encoder, tmp: Path, **kw) -> None:  # type: ignore[no-untyped-def]
    data = read_corpus(write_json(tmp / f"{name}.json", table))
    ingest(db, data, IngestConfig(name=name, encoder="minilm", **kw), home=home, device=enc.device, encoder=enc)


def _builder(db: Database, enc: Encoder) -> CentreBuilder:
    with db.session() as s:
        return CentreBuilder(db, s.scalars(select(Space)).one(), enc)


def _reference_top(db: Database, enc: Encoder, category: str, k: int) -> list[int]:
    with db.session() as s:
        rows = s.execute(select(Description.id, Description.vector).join(Description.category).where(
            Description.category.has(name=category))).all()
    ids = np.array([r[0] for r in rows])
    x = from_bytes([r[1] for r in rows], enc.dim).astype(np.float64)
    p = enc.encode_text([f"A photo of a {category}."])[0].astype(np.float64)
    order = np.lexsort((ids, -(x @ p)))
    return ids[order][:k].tolist()


def test_top_equals_numpy_reference_and_persists(db: Database, home: Path, tmp_path: Path, minilm: Encoder) -> None:
    _ingest(db, home, MIXED, "mixed", minilm, tmp_path)
    builder = _builder(db, minilm)
    report = builder.build(CentreSpec(strategy="top", k=3))
    assert (report.categories, report.built, report.reused) == (5, 5, 0)
    for cat in MIXED:
        centre, members = centre_members(db, builder.space, CentreSpec(strategy="top", k=3), cat)
        assert centre is not None and centre.n_candidates == len(MIXED[cat])
        assert [m["description_id"] for m in members] == _reference_top(db, minilm, cat, 3)
        assert [m["rank"] for m in members] == [1, 2, 3]
        assert members[0]["score"] >= members[1]["score"] >= members[2]["score"]
    again = builder.build(CentreSpec(strategy="top", k=3))
    assert (again.built, again.reused) == (0, 5)  # nothing changed: reused


def test_fewer_than_k_keeps_all_with_notice(db: Database, home: Path, tmp_path: Path, minilm: Encoder) -> None:
    _ingest(db, home, ANIMALS, "animals", minilm, tmp_path)
    report = _builder(db, minilm).build(CentreSpec(strategy="top", k=50))
    assert len(report.notices) == 3 and "fewer than K=50: all are kept" in report.notices[0]
    names, vectors, owner = load_centres(db, _builder(db, minilm).space, CentreSpec(strategy="top", k=50))
    assert names == sorted(ANIMALS) and vectors.shape[0] == sum(len(v) for v in ANIMALS.values())
    assert np.bincount(owner).tolist() == [len(ANIMALS[n]) for n in names]


def test_invalidation_on_add_replace_delete(db: Database, home: Path, tmp_path: Path, minilm: Encoder) -> None:
    _ingest(db, home, ANIMALS, "animals", minilm, tmp_path)
    _ingest(db, home, VEHICLES, "vehicles", minilm, tmp_path)
    builder = _builder(db, minilm)
    spec = CentreSpec(strategy="top", k=2)
    assert builder.build(spec).built == 5
    extra = {"tench": ["A tench rests near the muddy bottom of a pond."]}
    _ingest(db, home, extra, "more-tench", minilm, tmp_path)  # a corpus of category tench: its centres go
    with db.session() as s:
        assert s.scalar(select(func.count(Centre.id))) == 4
    report = builder.build(spec)
    assert (report.built, report.reused) == (1, 4)
    _, members = centre_members(db, builder.space, spec, "tench")
    assert len(members) == 2
    _ingest(db, home, {"bicycle": ["A bike with a basket."]}, "vehicles", minilm, tmp_path, replace=True)
    with db.session() as s:  # replacing drops the centres of the old corpus's categories and the new one's
        assert s.scalar(select(func.count(Centre.id))) == 3
    assert builder.build(spec).built == 1  # bicycle again; fire truck is gone with the old vehicles corpus
    with db.session() as s:
        animals = s.scalars(select(Corpus.id).where(Corpus.name == "animals")).one()
    delete_corpus(db, animals, home, minilm.device)
    with db.session() as s:
        assert s.scalar(select(func.count(Centre.id))) == 1  # only bicycle's
        assert s.scalar(select(func.count(CentreMember.id))) == 1
    report = builder.build(spec)
    assert report.categories == 2 and report.built == 1  # tench again (from more-tench alone)


def test_informative_drops_templates(db: Database, home: Path, tmp_path: Path, minilm: Encoder) -> None:
    _ingest(db, home, MIXED, "mixed", minilm, tmp_path)
    builder = _builder(db, minilm)
    with pytest.raises(CentreNotBuilt, match=r"no centre yet for 'tench' with top, K=3, .*: run `unibind centres build "
                                              r"--strategy top --centre-size 3`"):
        centre_members(db, builder.space, CentreSpec(strategy="top", k=3), "tench")
    builder.build(CentreSpec(strategy="top", k=3))
    builder.build(CentreSpec(strategy="informative", k=3))
    _, top_members = centre_members(db, builder.space, CentreSpec(strategy="top", k=3), "goldfish")
    _, inf_members = centre_members(db, builder.space, CentreSpec(strategy="informative", k=3), "goldfish")
    templates = {t.format("goldfish") for t in CLIP_TEMPLATES}
    assert all(m["text"] in templates for m in top_members)  # why plain top fails on messy knowledge bases
    assert not any(m["text"] in templates for m in inf_members)
    assert {m["text"] for m in inf_members} <= set(ANIMALS["goldfish"])
    # knowledge (the default): every non-template description, whatever K; a category of templates only keeps them
    report = builder.build(CentreSpec(strategy="knowledge", k=2))
    _, kn_members = centre_members(db, builder.space, CentreSpec(strategy="knowledge", k=2), "goldfish")
    assert {m["text"] for m in kn_members} == set(ANIMALS["goldfish"]) and len(kn_members) > 2
    assert [m["rank"] for m in kn_members] == list(range(1, len(kn_members) + 1))
    assert all(a["score"] >= b["score"] for a, b in zip(kn_members, kn_members[1:]))  # ranked by the base prompt
    assert not any("every description looks like a prompt template" in n for n in report.notices)


def test_template_skeletons() -> None:
    pairs = [(c, t.format(c)) for c in ("tench", "goldfish", "cat") for t in CLIP_TEMPLATES[:3]]
    pairs += [("tench", "A tench is a fish."), ("goldfish", "Goldfish are orange.")]
    found = find_template_skeletons(pairs, 3)
    assert found == {skeleton(t.format("x"), "x") for t in CLIP_TEMPLATES[:3]}
    assert skeleton("A Photo of a  TENCH.", "tench") == "a photo of a {}."


def test_prompt_templates_all(db: Database, home: Path, tmp_path: Path, minilm: Encoder) -> None:
    _ingest(db, home, MIXED, "mixed", minilm, tmp_path)
    builder = _builder(db, minilm)
    for strategy, size in (("prompt", 1), ("templates", 1), ("all", len(MIXED["tench"]))):
        builder.build(CentreSpec(strategy=strategy))
        _, members = centre_members(db, builder.space, CentreSpec(strategy=strategy), "tench")
        assert len(members) == size
    names, vectors, _ = load_centres(db, builder.space, CentreSpec(strategy="prompt"))
    np.testing.assert_allclose(vectors[names.index("tench")], minilm.encode_text(["A photo of a tench."])[0], atol=1e-6)
    names, vectors, _ = load_centres(db, builder.space, CentreSpec(strategy="templates"))
    ref = minilm.encode_text([t.format("tench") for t in CLIP_TEMPLATES]).mean(axis=0)
    np.testing.assert_allclose(vectors[names.index("tench")], ref / np.linalg.norm(ref), atol=1e-5)


def test_spec_validation(db: Database, home: Path, tmp_path: Path, minilm: Encoder) -> None:
    with pytest.raises(InvalidInput, match="exactly one"):
        CentreSpec(template="A photo.")
    with pytest.raises(InvalidInput, match="unknown centre strategy 'best'"):
        CentreSpec(strategy="best")
    for k in (0, 100_001, 2**63):  # a huge K is refused before any store sees it
        with pytest.raises(InvalidInput, match=f"K \\(the centre size\\) must be an integer from 1 to 100,000, got {k}"):
            CentreSpec(k=k)
    assert CentreSpec(k=100_000).k == 100_000
    _ingest(db, home, ANIMALS, "animals", minilm, tmp_path)
    builder = _builder(db, minilm)
    with pytest.raises(NotFound, match="no complete corpus named 'nope'"):  # an unknown corpus
        builder.build(CentreSpec(corpora=("nope",)))
    with pytest.raises(NotFound, match="unknown category 'tenhc'; did you mean 'tench'") as excinfo:
        centre_members(db, builder.space, CentreSpec(), "tenhc")
    assert type(excinfo.value).http_status == 404 and type(excinfo.value).exit_code == 2
    with pytest.raises(CentreNotBuilt, match="run `unibind centres build --strategy knowledge --centre-size 50`"):
        load_centres(db, builder.space, CentreSpec())


def test_informative_centres_follow_every_corpus(db: Database, home: Path, tmp_path: Path, minilm: Encoder) -> None:
    """The template filter looks at all categories, so adding any corpus rebuilds the default (knowledge) centres,
    and informative's."""
    _ingest(db, home, MIXED, "mixed", minilm, tmp_path)
    builder = _builder(db, minilm)
    assert builder.build(CentreSpec(k=3)).built == 5
    assert builder.build(CentreSpec(strategy="informative", k=3)).built == 5
    _ingest(db, home, {"zebra": ["A striped horse of the savanna."]}, "zebra", minilm, tmp_path)
    report = builder.build(CentreSpec(k=3))
    assert (report.categories, report.built, report.reused) == (6, 6, 0)
    informative = builder.build(CentreSpec(strategy="informative", k=3))
    assert (informative.built, informative.reused) == (6, 0)
    top = builder.build(CentreSpec(strategy="top", k=3))
    assert top.built == 6
    _ingest(db, home, {"okapi": ["A forest animal with striped legs."]}, "okapi", minilm, tmp_path)
    assert builder.build(CentreSpec(strategy="top", k=3)).built == 1  # top's centres depend on their own category only
