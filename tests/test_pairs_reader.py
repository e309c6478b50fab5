"""Tests for unibind.indexer.readers.pairs: training pairs and gallery metadata, and their error messages."""

from __future__ import annotations

import codecs
import json
import re
from pathlib import Path

import pytest

from unibind.indexer.readers.pairs import ItemMeta, Pair, PairsError, read_meta, read_pairs
from unibind.schema.errors import InvalidInput


def write(path: Path, lines: list[object]) -> Path:
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n",
                    encoding="utf-8")
    return path


def pairs_error(path: Path, **kw: object) -> str:
    kw.setdefault("kind", "features")
    with pytest.raises(PairsError) as excinfo:
        read_pairs(path, **kw)  # type: ignore[arg-type]
    msg = str(excinfo.value)
    assert str(path) in msg, msg
    return msg


def meta_error(path: Path, n: int) -> str:
    with pytest.raises(PairsError) as excinfo:
        read_meta(path, n)
    msg = str(excinfo.value)
    assert str(path) in msg, msg
    return msg


# --------------------------------------------------------------------------- pairs: good files


def test_feature_pairs(tmp_path: Path) -> None:
    p = write(tmp_path / "p.jsonl", [
        {"input": 0, "description": "  a dog barking ", "label": "dog"},
        "",
        {"input": 2, "descriptions": ["rain on a roof", " thunder "], "meta": {"src": "x"}},
        {"input": 1, "description": ["a cat", "a kitten"], "label": None},
    ])
    pairs = read_pairs(p, kind="features", n_rows=3)
    assert pairs == [
        Pair(0, ("a dog barking",), "dog", 1),
        Pair(2, ("rain on a roof", "thunder"), None, 3),
        Pair(1, ("a cat", "a kitten"), None, 4),
    ]


def test_feature_pairs_without_n_rows(tmp_path: Path) -> None:
    p = write(tmp_path / "p.jsonl", [{"input": 12345, "description": "x"}])
    assert read_pairs(p, kind="features")[0].input == 12345


def test_image_pairs_resolve_relative_to_pairs_file(tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.png").write_bytes(b"png")
    absolute = tmp_path / "b.jpg"
    absolute.write_bytes(b"jpg")
    p = write(tmp_path / "p.jsonl", [
        {"input": "img/a.png", "description": "a"},
        {"input": str(absolute), "description": "b", "label": "bee"},
    ])
    pairs = read_pairs(p, kind="image")
    assert pairs[0].input == (tmp_path / "img" / "a.png").resolve()
    assert pairs[1] == Pair(absolute, ("b",), "bee", 2)


def test_image_pairs_without_file_check(tmp_path: Path) -> None:
    p = write(tmp_path / "p.jsonl", [{"input": "missing.png", "description": "a"}])
    assert read_pairs(p, kind="image", check_files=False)[0].input == \
        tmp_path.resolve() / "missing.png"


def test_bom_and_crlf(tmp_path: Path) -> None:
    p = tmp_path / "p.jsonl"
    p.write_bytes(codecs.BOM_UTF8 + b'{"input": 0, "description": "caf\xc3\xa9"}\r\n')
    assert read_pairs(p, kind="features", n_rows=1) == [Pair(0, ("café",), None, 1)]


# --------------------------------------------------------------------------- pairs: bad files


def test_missing_pairs_file(tmp_path: Path) -> None:
    p = tmp_path / "nope.jsonl"
    with pytest.raises(FileNotFoundError, match=re.escape(f"pairs file not found: {p}")):
        read_pairs(p, kind="features")


def test_unknown_kind(tmp_path: Path) -> None:
    p = write(tmp_path / "p.jsonl", [{"input": 0, "description": "a"}])
    with pytest.raises(InvalidInput, match=r"unknown pairs kind 'audio'; use one of image, features"):
        read_pairs(p, kind="audio")  # type: ignore[arg-type]


@pytest.mark.parametrize("lines", [[], ["", "   "]])
def test_empty_pairs_file(tmp_path: Path, lines: list[str]) -> None:
    p = tmp_path / "p.jsonl"
    p.write_text("\n".join(lines))
    assert "p.jsonl: the file is empty; no pairs" in pairs_error(p)


def test_invalid_utf8_names_line_and_offset(tmp_path: Path) -> None:
    raw = b'{"input": 0, "description": "a"}\n{"input": 1, "description": "caf\xe9"}\n'
    p = tmp_path / "p.jsonl"
    p.write_bytes(raw)
    assert f"p.jsonl:2: invalid UTF-8 (byte 0xe9 at byte offset {raw.index(0xE9)})" \
        in pairs_error(p)


OK = {"input": 0, "description": "a"}


@pytest.mark.parametrize("line,rule", [
    ('{"input": 0, "description": }', r"p\.jsonl:2: invalid JSON: .*\(column \d+\)"),
    ('{"input": 0, "input": 1, "description": "a"}',
     r'p\.jsonl:2: invalid JSON: duplicate key "input"'),
    ('{"input": 0, "description": "a", "w": NaN}', r"p\.jsonl:2: invalid JSON: NaN is not valid"),
    ('[0, "a"]', r'p\.jsonl:2: each line must be a JSON object with "input" and "description" '
                 r'\(got array\)'),
    ({"input": 0, "description": "a", "caption": "b", "x": 1},
     r'p\.jsonl:2: unknown field\(s\) "caption", "x"; allowed: "input", "description"'),
    ({"description": "a"}, r'p\.jsonl:2: missing required field "input"'),
    ({"input": 0}, r'p\.jsonl:2: missing required field "description"'),
    ({"input": 0, "description": "a", "descriptions": ["b"]},
     r'p\.jsonl:2: has both "description" and "descriptions"'),
    ({"input": 0, "description": "  "},
     r'p\.jsonl:2: field "description" must be a non-empty string \(got empty string\)'),
    ({"input": 0, "description": 5},
     r'p\.jsonl:2: field "description" must be a string or an array of strings \(got number\)'),
    ({"input": 0, "descriptions": []}, r'p\.jsonl:2: field "descriptions" is an empty array'),
    ({"input": 0, "descriptions": ["a", None]},
     r'p\.jsonl:2: "descriptions" item 1 must be a non-empty string \(got null\)'),
    ({"input": 0, "description": ["a", ""]},
     r'p\.jsonl:2: "description" item 1 must be a non-empty string \(got empty string\)'),
    ({"input": 0, "description": "a\u0000b"},
     r'p\.jsonl:2: field "description" contains a NUL character'),
    ({"input": 0, "description": "a", "label": ""},
     r'p\.jsonl:2: field "label" must be a non-empty string \(got empty string\)'),
    ({"input": 0, "description": "a", "label": 3},
     r'p\.jsonl:2: field "label" must be a non-empty string \(got number\)'),
    ({"input": 0, "description": "a", "meta": [1]},
     r'p\.jsonl:2: field "meta" must be an object \(got array\)'),
    ({"input": True, "description": "a"},
     r'p\.jsonl:2: field "input": row index must be a non-negative integer \(got boolean\)'),
    ({"input": -1, "description": "a"},
     r'p\.jsonl:2: field "input": row index must be a non-negative integer \(got -1\)'),
    ({"input": "0", "description": "a"},
     r'p\.jsonl:2: field "input": row index must be a non-negative integer \(got string\)'),
    ({"input": 1.5, "description": "a"},
     r'p\.jsonl:2: field "input": row index must be a non-negative integer \(got 1\.5\)'),
    ({"input": 3, "description": "a"},
     r'p\.jsonl:2: field "input": row index 3 is out of range; the features file has 3 rows '
     r'\(0\.\.2\)'),
])
def test_bad_feature_pair_line(tmp_path: Path, line: object, rule: str) -> None:
    msg = pairs_error(write(tmp_path / "p.jsonl", [OK, line]), kind="features", n_rows=3)
    assert re.search(rule, msg), msg


@pytest.mark.parametrize("inp,rule", [
    (3, r'p\.jsonl:1: field "input" must be a non-empty image path string \(got number\)'),
    ("  ", r'p\.jsonl:1: field "input" must be a non-empty image path string'),
    ("nope.png", r'p\.jsonl:1: field "input": image file not found: .*nope\.png \(relative to '),
    ("sub", r'p\.jsonl:1: field "input": image file not found: .*sub'),  # a folder, not a file
])
def test_bad_image_input(tmp_path: Path, inp: object, rule: str) -> None:
    (tmp_path / "sub").mkdir()
    msg = pairs_error(write(tmp_path / "p.jsonl", [{"input": inp, "description": "a"}]),
                      kind="image")
    assert re.search(rule, msg), msg


def test_missing_absolute_image(tmp_path: Path) -> None:
    gone = tmp_path / "gone.png"
    msg = pairs_error(write(tmp_path / "p.jsonl", [{"input": str(gone), "description": "a"}]),
                      kind="image")
    assert msg.endswith(f'p.jsonl:1: field "input": image file not found: {gone}')


# --------------------------------------------------------------------------- gallery metadata


def test_read_meta(tmp_path: Path) -> None:
    p = write(tmp_path / "m.jsonl", [
        {"uri": "clips/a.wav", "label": "dog", "duration": 2.5, "tags": ["x"], "extra": None},
        {},
        "",
        {"label": "cat", "nested": {"a": {"b": [1, True]}}},
    ])
    assert read_meta(p, 3) == [
        ItemMeta("clips/a.wav", "dog", {"duration": 2.5, "tags": ["x"], "extra": None}, 1),
        ItemMeta(None, None, {}, 2),
        ItemMeta(None, "cat", {"nested": {"a": {"b": [1, True]}}}, 4),
    ]


def test_meta_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "m.jsonl"
    with pytest.raises(FileNotFoundError, match=re.escape(f"metadata file not found: {p}")):
        read_meta(p, 1)


@pytest.mark.parametrize("n,lines", [(3, [{}, {}]), (1, [{}, {}]), (2, [])])
def test_meta_count_mismatch(tmp_path: Path, n: int, lines: list[object]) -> None:
    p = tmp_path / "m.jsonl"
    p.write_text("\n".join(json.dumps(x) for x in lines))
    assert f"m.jsonl: has {len(lines)} metadata lines but the features have {n} rows" \
        in meta_error(p, n)


@pytest.mark.parametrize("line,rule", [
    ('"a.wav"', r"m\.jsonl:2: each line must be a JSON object \(got string\)"),
    ('{"uri": "a", "x": 1,}', r"m\.jsonl:2: invalid JSON: .*\(column \d+\)"),
    ('{"uri": "a", "uri": "b"}', r'm\.jsonl:2: invalid JSON: duplicate key "uri"'),
    ('{"score": Infinity}', r"m\.jsonl:2: invalid JSON: Infinity is not valid JSON"),
    ({"uri": 5}, r'm\.jsonl:2: field "uri" must be a non-empty string \(got number\)'),
    ({"uri": ""}, r'm\.jsonl:2: field "uri" must be a non-empty string \(got empty string\)'),
    ({"label": ["dog"]}, r'm\.jsonl:2: field "label" must be a non-empty string \(got array\)'),
    ({"note": "a\u0000b"}, r"m\.jsonl:2: a metadata field holds a string with a NUL character"),
    ('{"note": "\\ud800"}', r"m\.jsonl:2: a metadata field holds .*unpaired surrogate"),
])
def test_bad_meta_line(tmp_path: Path, line: object, rule: str) -> None:
    msg = meta_error(write(tmp_path / "m.jsonl", [{}, line]), 2)
    assert re.search(rule, msg), msg


def test_meta_invalid_utf8(tmp_path: Path) -> None:
    raw = b'{}\n{}\n{"uri": "\xff"}\n'
    p = tmp_path / "m.jsonl"
    p.write_bytes(raw)
    assert f"m.jsonl:3: invalid UTF-8 (byte 0xff at byte offset {raw.index(0xFF)})" \
        in meta_error(p, 3)
