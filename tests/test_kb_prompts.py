"""Prompt sets for ``unibind kb generate``: the builtin sets, rendering with articles, template files, seeds."""

from __future__ import annotations

from pathlib import Path

import pytest

from unibind.indexer.knowledge.prompts import (
    CUPL,
    DCLIP,
    PROMPT_SETS,
    PromptSet,
    article,
    load_prompts,
    render,
    request_seed,
)
from unibind.schema.errors import InvalidInput

MODALITIES = ("audio", "point", "depth", "event", "thermal", "video")


def test_the_builtin_names() -> None:
    assert set(PROMPT_SETS) == {"cupl", "dclip", *(f"modality:{m}" for m in MODALITIES)}
    for name, prompt_set in PROMPT_SETS.items():
        assert prompt_set.name == name
        assert load_prompts(name) is prompt_set


@pytest.mark.parametrize("name", sorted(PROMPT_SETS))
def test_every_builtin_set_renders_with_the_right_article(name: str) -> None:
    prompt_set = PROMPT_SETS[name]
    for template in prompt_set.templates:
        assert "{}" in template
        for category, expected in (("owl", "an owl"), ("dog", "a dog"), ("Eagle", "an Eagle"), ("umbrella", "an umbrella")):
            text = render(template, category)
            assert "{}" not in text and "{a}" not in text
            if "{a} {}" in template:
                assert expected in text, (template, text)
    assert prompt_set.system is None


def test_the_cupl_set_is_cupls_five_questions_and_settings() -> None:
    assert CUPL.render("goldfish") == [
        "Describe what a goldfish looks like",
        "How can you identify a goldfish?",
        "What does a goldfish look like?",
        "Describe an image from the internet of a goldfish",
        "A caption of an image of a goldfish:",
    ]
    assert (CUPL.form, CUPL.samples, CUPL.temperature, CUPL.max_tokens, CUPL.stop) == ("sentences", 10, 0.99, 50, (".",))


def test_the_dclip_set_is_a_greedy_few_shot_bullet_prompt() -> None:
    assert (DCLIP.form, DCLIP.samples, DCLIP.temperature, DCLIP.max_tokens, DCLIP.stop) == ("bullets", 1, 0.0, 100, ())
    (text,) = DCLIP.render("owl")
    assert text.count("Q: ") == 3
    assert text.endswith("Q: What are useful features for distinguishing an owl in a photo?\n"
                         "A: There are several useful visual features to tell there is an owl in a photo:\n-")
    assert "a lemur in a photo" in text and "a television in a photo" in text


@pytest.mark.parametrize("modality,word", [("audio", "sound"), ("point", "point cloud"), ("depth", "depth"),
                                           ("event", "event camera"), ("thermal", "thermal"), ("video", "video")])
def test_the_modality_sets_are_worded_for_their_sensor(modality: str, word: str) -> None:
    prompt_set = PROMPT_SETS[f"modality:{modality}"]
    assert 4 <= len(prompt_set.templates) <= 5
    assert any(word in t for t in prompt_set.templates)
    assert (prompt_set.form, prompt_set.samples, prompt_set.temperature, prompt_set.max_tokens, prompt_set.stop) == (
        "sentences", 10, 0.99, 50, (".",))


def test_article_and_plain_replacement() -> None:
    assert [article(c) for c in ("apple", "Owl", "igloo", "ember", "Umbrella", "dog", "yak", "", "3d printer")] == [
        "an", "an", "an", "an", "an", "a", "a", "a", "a"]
    # other braces stay as written: this is not str.format
    assert render("{a} {} in {braces} and {0}", "ox") == "an ox in {braces} and {0}"


def test_a_template_file(tmp_path: Path) -> None:
    path = tmp_path / "mine.txt"
    path.write_text("# my prompts\n\nWhat colour is {a} {}?\n   \n  # indented comment\nDraw {} {with braces}  \n",
                    encoding="utf-8")
    prompt_set = load_prompts(str(path))
    assert prompt_set == PromptSet(name="mine.txt", templates=("What colour is {a} {}?", "Draw {} {with braces}"),
                                   form="sentences", samples=10, temperature=0.99, max_tokens=50, stop=(".",))
    assert prompt_set.render("emu") == ["What colour is an emu?", "Draw emu {with braces}"]


def test_a_template_without_the_placeholder_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_text("Describe {a} {}\n# fine\nDescribe a thing\n", encoding="utf-8")
    with pytest.raises(InvalidInput, match=rf"{path}:3: a template must contain '\{{\}}'"):
        load_prompts(str(path))


@pytest.mark.parametrize("content", ["", "\n\n", "# only a comment\n\n# and another\n"])
def test_an_empty_template_file(tmp_path: Path, content: str) -> None:
    path = tmp_path / "empty.txt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InvalidInput, match=rf"{path}: no templates") as info:
        load_prompts(str(path))
    assert "\n" not in str(info.value)


def test_a_non_utf8_template_file_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes("Describe {a} {}\n# comment\nWhat does a {} look like in Zürich?\n".encode("latin-1"))
    with pytest.raises(InvalidInput, match=rf"{path}:3: invalid UTF-8") as info:
        load_prompts(str(path))
    assert "\n" not in str(info.value)


def test_a_utf8_bom_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "bom.txt"
    path.write_bytes(b"\xef\xbb\xbfDescribe {a} {}\n")
    assert load_prompts(str(path)).templates == ("Describe {a} {}",)


def test_a_missing_file_or_unknown_name(tmp_path: Path) -> None:
    missing = tmp_path / "nope.txt"
    with pytest.raises(FileNotFoundError, match="nope.txt") as info:
        load_prompts(str(missing))
    assert "\n" not in str(info.value)
    with pytest.raises(FileNotFoundError, match=r"'kupl' is neither a builtin \(cupl, dclip, modality:audio"):
        load_prompts("kupl")


@pytest.mark.parametrize("changes,field", [
    ({"templates": ()}, "templates"), ({"templates": ("no placeholder",)}, "template"), ({"form": "prose"}, "form"),
    ({"samples": 0}, "samples"), ({"max_tokens": 0}, "max_tokens"), ({"temperature": -1.0}, "temperature"),
])
def test_a_prompt_set_checks_its_fields(changes: dict, field: str) -> None:
    kwargs = {"name": "x", "templates": ("Describe {}",), **changes}
    with pytest.raises(InvalidInput, match=field):
        PromptSet(**kwargs)


def test_request_seed_is_stable_distinct_and_31_bit() -> None:
    a = request_seed(0, "owl", CUPL.templates[0], 0)
    assert a == request_seed(0, "owl", CUPL.templates[0], 0)
    assert a == 1530966952  # pinned: a rerun (another process, another machine) derives the same seed
    seeds = {request_seed(s, c, t, k) for s in (0, 1) for c in ("owl", "dog", "owl ") for t in CUPL.templates
             for k in range(10)}
    assert len(seeds) == 2 * 3 * 5 * 10
    assert all(0 <= x < 2**31 for x in seeds)
    # the fields are separated: moving text between category and template changes the seed
    assert request_seed(0, "ab", "c{}", 0) != request_seed(0, "a", "bc{}", 0)


def test_a_repeated_template_is_asked_once(tmp_path: Path) -> None:
    f = tmp_path / "q.txt"
    f.write_text("What does {a} {} look like?\nWhat does {a} {} look like?\nDescribe {a} {}.\n")
    assert load_prompts(str(f)).templates == ("What does {a} {} look like?", "Describe {a} {}.")
