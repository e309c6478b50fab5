"""Cleaning LLM responses into description sentences: splitting, refusals, the name rule, the encoder's cut,
exact and near-duplicate removal, and a report whose counts add up."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from unibind.indexer.knowledge.cleaning import (
    CleaningConfig,
    CleaningReport,
    clean_category,
    is_refusal,
    names_category,
    near_duplicates,
    split_response,
)
from unibind.indexer.readers.text import text_hash
from unibind.schema.errors import InvalidInput


def adds_up(report: CleaningReport) -> bool:
    d = report.as_dict()
    drops = ("empty", "refusals", "unnamed", "named", "exact_duplicates", "near_duplicates")
    return d["sentences"] == sum(d[k] for k in drops) + d["kept"]


# --- splitting ------------------------------------------------------------------------------------------------

def test_sentences_markdown_bullets_numbering_quotes_and_emphasis() -> None:
    text = (
        "1. A **golden retriever** has a dense, water-repellent coat.\n"
        "2) Its ears hang down\n"
        "(3) It is friendly, e.g. with children. It is about 0.6 m tall!\n"
        "- “Feathered tail”\n"
        "* 'A wide, kind face'\n"
        "• Muscular legs, i.e. built for work\n"
        "– Carries toys etc. in its mouth\n"
        "a) Does it swim? Yes, very well.\n"
        "\n"
        '"It has a broad head. Its nose is black."\n'
    )
    assert split_response(text, "sentences", "golden retriever") == [
        "A golden retriever has a dense, water-repellent coat.",
        "Its ears hang down.",
        "It is friendly, e.g. with children.",
        "It is about 0.6 m tall!",
        "Feathered tail.",
        "A wide, kind face.",
        "Muscular legs, i.e. built for work.",
        "Carries toys etc. in its mouth.",
        "Does it swim?",
        "Yes, very well.",
        "It has a broad head.",
        "Its nose is black.",
    ]


def test_sentences_cupl_style_answers() -> None:
    # CuPL stops at the first "." so an answer usually arrives without one; a trailing colon or comma is closed too
    assert split_response(" A small bird with a red breast", "sentences", "robin") == ["A small bird with a red breast."]
    assert split_response("The photo shows a robin perched on a branch,", "sentences", "robin") == [
        "The photo shows a robin perched on a branch."]
    assert split_response('"A robin singing on a fence post".', "sentences", "robin") == [
        "A robin singing on a fence post."]
    assert split_response("Inline list: 1. red breast. 2. brown back.", "sentences", "robin") == [
        "Inline list: 1.", "red breast.", "brown back."]
    assert split_response("   \n\n  ", "sentences", "robin") == []
    assert split_response("...", "sentences", "robin") == []


def test_dclip_bullets_become_descriptor_sentences_and_stop_at_the_next_question() -> None:
    # a DCLIP answer continues after the prompt's final "-": the first line has no bullet of its own
    text = (
        " small bird of prey\n"
        "- a hooked beak\n"
        "- an upright posture\n"
        "- has large forward-facing eyes\n"
        "- often seen at night\n"
        "- typically brown or grey\n"
        "- may have ear tufts\n"
        "- can turn its head far round\n"
        "- used as a symbol of wisdom\n"
        "- soft, mottled feathers.\n"
        "\n"
        "Q: What are useful features for distinguishing a hawk in a photo?\n"
        "A: There are several useful visual features to tell there is a hawk in a photo:\n"
        "- sharp talons\n"
    )
    assert split_response(text, "bullets", "owl") == [
        "owl, which has small bird of prey.",
        "owl, which is a hooked beak.",
        "owl, which is an upright posture.",
        "owl, which has large forward-facing eyes.",
        "owl, which often seen at night.",
        "owl, which typically brown or grey.",
        "owl, which may have ear tufts.",
        "owl, which can turn its head far round.",
        "owl, which is used as a symbol of wisdom.",
        "owl, which has soft, mottled feathers.",
    ]
    # "a"/"an" are words, not prefixes: "antlers" is not "an ..."
    assert split_response("- antlers\n- animal fur", "bullets", "moose") == [
        "moose, which has antlers.", "moose, which has animal fur."]


def test_an_unknown_form() -> None:
    with pytest.raises(InvalidInput, match="form must be one of sentences, bullets"):
        split_response("text", "prose", "x")


# --- refusals and names ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("sentence", [
    "I'm sorry, but I cannot describe that.", "I am sorry, I don't know.", "As an AI, I do not see images.",
    "I cannot help with that.", "I can't see pictures.", "I am unable to view images.", "I’m not able to browse.",
    "I don't have access to the internet.", "Sure, here are some features.", "Here are five ways to spot it:",
    "Certainly! A robin is red.", "certainly! lower case too.", "A robin, as an AI language model would say, is red.",
])
def test_refusals(sentence: str) -> None:
    assert is_refusal(sentence)


@pytest.mark.parametrize("sentence", [
    "A robin has a red breast.", "Sorry-looking birds are often wet.", "It can't fly far when young.",
    "Heretics are not birds.", "The AI in the title stands for artificial insemination.",
])
def test_not_refusals(sentence: str) -> None:
    assert not is_refusal(sentence)


@pytest.mark.parametrize("sentence,category,named", [
    ("A Fox has a bushy tail.", "fox", True),
    ("Foxes live in dens.", "fox", True),
    ("Two owls sat on the wall.", "owl", True),
    ("The bowl is empty.", "owl", False),  # a word boundary, not a substring
    ("A firefox is a browser.", "fox", False),
    ("Cranes have long legs.", "crane (bird)", True),
    ("A crane (bird) stands in water.", "crane (bird)", True),
    ("A heron stands in water.", "crane (bird)", False),
    ("A golden   retriever fetches.", "golden_retriever", True),
    ("Golden retrievers fetch.", "golden_retriever", True),
    ("A retriever fetches.", "golden_retriever", False),
    ("The C++ code compiles.", "C++", True),
])
def test_names_category(sentence: str, category: str, named: bool) -> None:
    assert names_category(sentence, category) is named


# --- config ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,field", [
    ({"names": "sometimes"}, "names"), ({"near_duplicate": 0.0}, "near_duplicate"),
    ({"near_duplicate": 1.5}, "near_duplicate"), ({"near_duplicate": True}, "near_duplicate"),
    ({"min_words": -1}, "min_words"), ({"min_words": 2.5}, "min_words"),
])
def test_the_config_checks_its_fields(kwargs: dict, field: str) -> None:
    with pytest.raises(InvalidInput, match=field):
        CleaningConfig(**kwargs)


def test_the_config_defaults() -> None:
    assert CleaningConfig() == CleaningConfig(names="any", near_duplicate=0.95, min_words=3)
    assert CleaningConfig(near_duplicate=None).near_duplicate is None
    assert CleaningConfig(near_duplicate=1.0).near_duplicate == 1.0


# --- near duplicates ------------------------------------------------------------------------------------------

def reference_keep(vectors: np.ndarray, threshold: float) -> np.ndarray:
    """The plain O(N^2) greedy loop, in float64."""
    v = vectors.astype(np.float64)
    kept = np.empty_like(v)  # the kept rows so far, in order
    n_kept = 0
    keep = np.zeros(len(v), dtype=bool)
    for i in range(len(v)):
        if not np.any(kept[:n_kept] @ v[i] >= threshold):
            kept[n_kept] = v[i]
            n_kept += 1
            keep[i] = True
    return keep


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def planted(seed: int, n: int, d: int, copies: int) -> np.ndarray:
    """Random unit rows, with ``copies`` near-duplicates (cosines spread over 0.85..0.999) of earlier rows
    planted at random later positions, some of them of rows that are themselves near-duplicates."""
    rng = np.random.default_rng(seed)
    rows = list(unit(rng.standard_normal((n, d))))
    for _ in range(copies):
        src = int(rng.integers(len(rows)))
        cos = rng.uniform(0.85, 0.999)
        noise = rng.standard_normal(d)
        noise -= (noise @ rows[src]) * rows[src]
        noise /= np.linalg.norm(noise)
        new = unit(cos * rows[src] + np.sqrt(1 - cos**2) * noise)
        rows.insert(int(rng.integers(src + 1, len(rows) + 1)), new)
    return np.stack(rows)


@pytest.mark.parametrize("seed,n,d,copies,block", [(0, 2000, 64, 600, 1024), (1, 1000, 384, 300, 128),
                                                    (2, 700, 16, 300, 50), (3, 50, 8, 40, 7)])
@pytest.mark.parametrize("threshold", [0.9, 0.95, 0.99])
def test_near_duplicates_equal_the_reference_loop(seed: int, n: int, d: int, copies: int, block: int,
                                                  threshold: float) -> None:
    vectors = planted(seed, n, d, copies)
    expected = reference_keep(vectors, threshold)
    assert (~expected).sum() > 0  # the planted rows do drop
    np.testing.assert_array_equal(near_duplicates(vectors, threshold, block=block), expected)
    np.testing.assert_array_equal(near_duplicates(vectors, threshold), expected)


def test_near_duplicates_compare_with_kept_rows_only() -> None:
    # a ~ b and b ~ c at 0.96, a ~ c at 0.843: b is dropped (a is kept), so c survives: it is near only b
    angle = np.arccos(0.96)
    a, b, c = (np.array([np.cos(k * angle), np.sin(k * angle), 0.0], dtype=np.float32) for k in range(3))
    vectors = np.stack([a, b, c])
    assert near_duplicates(vectors, 0.95).tolist() == [True, False, True]
    assert near_duplicates(vectors, 0.8).tolist() == [True, False, False]
    assert reference_keep(vectors, 0.95).tolist() == [True, False, True]


def test_near_duplicates_edges() -> None:
    assert near_duplicates(np.empty((0, 4), dtype=np.float32), 0.9).tolist() == []
    assert near_duplicates(unit(np.ones((1, 4))), 0.9).tolist() == [True]
    with pytest.raises(InvalidInput, match="threshold"):
        near_duplicates(unit(np.ones((2, 4))), 0.0)
    with pytest.raises(ValueError, match=r"\[N, d\]"):
        near_duplicates(np.ones(4, dtype=np.float32), 0.9)


# --- the pipeline ---------------------------------------------------------------------------------------------

def first_words(n: int) -> Callable[[str], str]:
    """A real cut: keep the first ``n`` words, as a context limit would."""

    def fit(text: str) -> str:
        words = text.split()
        return text if len(words) <= n else " ".join(words[:n])
    return fit


def test_clean_category_counts_every_step() -> None:
    responses = [
        ("1. A fox has a bushy tail. 2. A fox has a bushy tail. Tiny.", {"model": "m", "prompt": 0, "sample": 0}),
        ("I'm sorry, I cannot see images. Foxes hunt mice at dusk and dawn in open fields near woods.",
         {"model": "m", "prompt": 0, "sample": 1}),
        ("- A FOX  has a bushy   tail\n- Its fur is red-orange\n- It is a small wild dog",
         {"model": "m", "prompt": 1, "sample": 0}),
        ("", {"model": "m", "prompt": 1, "sample": 1}),
        ("Sure, here are some features: ok. The fox's ears are pointed.", {"model": "m", "prompt": 2, "sample": 0}),
    ]
    report = CleaningReport()
    out = clean_category("fox", responses, form="sentences", config=CleaningConfig(names="must"),
                         fit=first_words(8), report=report)
    assert out == [
        ("A fox has a bushy tail.", {"model": "m", "prompt": 0, "sample": 0}),
        ("Foxes hunt mice at dusk and dawn in", {"model": "m", "prompt": 0, "sample": 1}),
        ("The fox's ears are pointed.", {"model": "m", "prompt": 2, "sample": 0}),
    ]
    assert report.as_dict() == {
        "responses": 5, "sentences": 10, "empty": 1, "refusals": 2, "unnamed": 2, "named": 0, "cut": 1,
        "exact_duplicates": 2, "near_duplicates": 0, "kept": 3}
    assert adds_up(report) and report.dropped == 7
    # the provenance is a copy: changing it does not change the caller's response
    out[0][1]["model"] = "changed"
    assert responses[0][1]["model"] == "m"


def test_the_name_rules() -> None:
    responses = [("Cranes wade in shallow water. They have long legs. A crane (bird) flies with its neck out.", {})]
    kept = {}
    for rule in ("any", "must", "never"):
        report = CleaningReport()
        kept[rule] = [s for s, _ in clean_category("crane (bird)", responses, form="sentences",
                                                   config=CleaningConfig(names=rule), report=report)]
        assert adds_up(report)
        assert (report.unnamed, report.named) == {"any": (0, 0), "must": (1, 0), "never": (0, 2)}[rule]
    assert kept["must"] == ["Cranes wade in shallow water.", "A crane (bird) flies with its neck out."]
    assert kept["never"] == ["They have long legs."]
    assert len(kept["any"]) == 3


def test_exact_duplicates_are_found_by_the_ingests_hash() -> None:
    variants = ["An owl hunts at night.", "an OWL hunts   at night.", "An owl hunts\tat night.", "An ｏｗｌ hunts at night."]
    assert len({text_hash(v) for v in variants}) == 1
    report = CleaningReport()
    out = clean_category("owl", [(v, {"sample": i}) for i, v in enumerate(variants)], form="sentences",
                         config=CleaningConfig(), report=report)
    assert out == [("An owl hunts at night.", {"sample": 0})]
    assert report.exact_duplicates == 3 and adds_up(report)


def test_dclip_responses_through_the_pipeline() -> None:
    responses = [(" hooked beak\n- large eyes\n- large eyes\n- ok\nQ: What are useful features", {"prompt": "dclip"})]
    report = CleaningReport()
    out = clean_category("owl", responses, form="bullets", config=CleaningConfig(names="must", min_words=5),
                         report=report)
    assert [s for s, _ in out] == ["owl, which has hooked beak.", "owl, which has large eyes."]
    assert (report.sentences, report.empty, report.exact_duplicates, report.kept) == (4, 1, 1, 2)
    assert adds_up(report)


def test_a_callable_form() -> None:
    report = CleaningReport()
    out = clean_category("owl", [("an owl flies | an owl hoots at night", {})],
                         form=lambda text, category: [p.strip() for p in text.split("|")],
                         config=CleaningConfig(), report=report)
    assert [s for s, _ in out] == ["an owl flies", "an owl hoots at night"]


def test_near_duplicates_in_the_pipeline_and_reports_add() -> None:
    rng = np.random.default_rng(7)
    base = unit(rng.standard_normal((6, 32)))
    table = {f"Sentence number {i} about a fox.": base[i] for i in range(6)}
    # sentence 5 is planted as a near-copy of sentence 1
    table["Sentence number 5 about a fox."] = unit(base[1] + 0.05 * base[5])
    responses = [(" ".join(table), {"sample": 0})]

    def embed(texts: list[str]) -> np.ndarray:
        return np.stack([table[t] for t in texts])

    total = CleaningReport()
    for threshold, dropped in ((0.95, 1), (None, 0)):
        report = CleaningReport()
        out = clean_category("fox", responses, form="sentences", config=CleaningConfig(near_duplicate=threshold),
                             embed=embed, report=report)
        assert report.near_duplicates == dropped and len(out) == 6 - dropped and adds_up(report)
        if dropped:
            assert "Sentence number 5 about a fox." not in [s for s, _ in out]
        total.add(report)
    assert total.responses == 2 and total.sentences == 12 and total.kept == 11 and adds_up(total)


@pytest.mark.slow
def test_near_duplicates_with_the_real_minilm_encoder() -> None:
    from sentence_transformers import SentenceTransformer

    from unibind.indexer.encoders.sentence import minilm_path

    model = SentenceTransformer(str(minilm_path()), device="cpu", local_files_only=True)

    def embed(texts: list[str]) -> np.ndarray:
        return model.encode(texts, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False)

    sentences = [
        "A dog is running in the park.",
        "The stock market fell sharply today.",
        "A dog runs in the park.",  # a paraphrase of the first
        "The owl has large, round eyes.",
        "A red fire truck is parked by the station.",
        "An owl has big round eyes.",  # a paraphrase of the fourth
    ]
    vectors = embed(sentences)
    keep = near_duplicates(vectors, 0.9)
    assert keep.tolist() == [True, True, False, True, True, False]
    np.testing.assert_array_equal(keep, reference_keep(vectors, 0.9))

    report = CleaningReport()
    out = clean_category("dog", [(" ".join(sentences), {"model": "waffle"})], form="sentences",
                         config=CleaningConfig(near_duplicate=0.9), embed=embed, report=report)
    assert [s for s, _ in out] == [sentences[i] for i in (0, 1, 3, 4)]
    assert report.near_duplicates == 2 and adds_up(report)


def test_control_characters_and_replacement_characters_are_removed() -> None:
    """A sampling model can emit byte tokens that are control characters or not UTF-8 (decoded as U+FFFD)."""
    assert split_response(" black 3 2 of\x07 legs\ufffd tail. Next one\x1b here", "sentences", "owl") == [
        "black 3 2 of legs tail.", "Next one here."]
    assert split_response("- long\x00 tail\n- red\ufffd eyes", "bullets", "owl") == [
        "owl, which has long tail.", "owl, which has red eyes."]
