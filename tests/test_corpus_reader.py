"""Tests for unibind.indexer.readers.corpus: every format, dedup, line numbers, and the error messages."""

from __future__ import annotations

import codecs
import hashlib
import importlib.metadata
import json
import re
from pathlib import Path

import pytest

from unibind.indexer.readers.builtin import find_builtin_cupl
from unibind.indexer.readers.corpus import (
    CorpusData,
    CorpusError,
    Record,
    read_corpus,
    read_corpus_bytes,
)
from unibind.indexer.readers.text import normalise_text, text_hash
from unibind.schema.errors import InvalidInput, NotFound, Unavailable


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return p


def error_of(path: Path, **kw: object) -> str:
    with pytest.raises(CorpusError) as excinfo:
        read_corpus(path, **kw)  # type: ignore[arg-type]
    msg = str(excinfo.value)
    assert str(path) in msg, msg
    return msg


# --------------------------------------------------------------------------- helpers


def test_normalise_text_and_hash() -> None:
    assert normalise_text("  A\tPhoto\n of   a\u00a0CAT ") == "a photo of a cat"
    assert normalise_text("\uff21\uff22") == "ab"  # NFKC folds full-width letters
    assert normalise_text("Straße") == "strasse"  # casefold, not lower
    h = text_hash("a photo of a cat")
    assert h == hashlib.sha1(b"a photo of a cat").hexdigest() and len(h) == 40
    assert text_hash(" A  PHOTO of a cat\n") == h


# --------------------------------------------------------------------------- happy paths

FLAT = """{
  "tench": [
    "a fish",
    "A  Fish ",
    "a green fish"
  ],
  "goldfish": ["a fish", "an orange fish"]
}
"""


def test_json_flat(tmp_path: Path) -> None:
    data = read_corpus(write(tmp_path, "c.json", FLAT))
    assert isinstance(data, CorpusData)
    assert data.format == "json" and data.path == str(tmp_path / "c.json")
    assert data.categories == ["tench", "goldfish"]
    assert [(r.category, r.text) for r in data.records] == [
        ("tench", "a fish"), ("tench", "a green fish"),
        ("goldfish", "a fish"), ("goldfish", "an orange fish"),
    ]
    assert data.n_duplicates == 1  # "A  Fish " normalises to "a fish" in the same category
    assert [r.line for r in data.records] == [2, 2, 7, 7]  # the line of the category key
    assert all(r.meta is None for r in data.records)
    assert data.records[0] == Record("tench", "a fish", text_hash("a fish"), None, 2)
    assert data.file_sha256 == hashlib.sha256(FLAT.encode()).hexdigest()


def test_json_nested_with_key(tmp_path: Path) -> None:
    doc = {"cifar10": {"cat": ["a cat"]}, "imagenet1k": {"tench": ["a fish"], "cat": ["x", "y"]}}
    p = write(tmp_path, "nested.json", json.dumps(doc, indent=2))
    data = read_corpus(p, key="imagenet1k")
    assert data.categories == ["tench", "cat"]
    assert [r.text for r in data.records] == ["a fish", "x", "y"]
    lines = p.read_text().split("\n")
    # the "cat" inside imagenet1k, not the one under cifar10
    assert all(lines[r.line - 1].strip().startswith(f'"{r.category}"') for r in data.records)
    assert data.records[1].line > lines.index('  "imagenet1k": {') + 1


def test_jsonl_meta_blank_lines_and_line_numbers(tmp_path: Path) -> None:
    p = write(tmp_path, "c.jsonl", "\n".join([
        '{"category": "dog", "text": " a dog ", "source": "cupl", "rank": 1}',
        "",
        '{"category": "dog", "text": "a puppy"}',
        "   ",
        '{"category": "cat", "text": "A DOG"}',
        '{"category": "dog", "text": "a  dog", "source": "other"}',
    ]) + "\n")
    data = read_corpus(p)
    assert data.format == "jsonl"
    assert [(r.category, r.text, r.line) for r in data.records] == [
        ("dog", "a dog", 1), ("dog", "a puppy", 3), ("cat", "A DOG", 5)]
    assert data.records[0].meta == {"source": "cupl", "rank": 1}
    assert data.records[1].meta is None
    assert data.n_duplicates == 1
    assert data.categories == ["dog", "cat"]


def test_ndjson_extension_and_format_override(tmp_path: Path) -> None:
    body = '{"category": "a", "text": "b"}\n'
    assert read_corpus(write(tmp_path, "c.ndjson", body)).format == "jsonl"
    assert read_corpus(write(tmp_path, "c.txt", body), format="jsonl").records[0].text == "b"


def test_csv_extra_columns_multiline_field(tmp_path: Path) -> None:
    p = write(tmp_path, "c.csv",
              ' text , category ,source\r\n'
              'a red car,car,web\r\n'
              '"a car,\nparked",car,book\r\n'
              '\r\n'
              'A RED  car,car,dup\r\n'
              'a red car,truck,web\r\n')
    data = read_corpus(p)
    assert data.format == "csv"
    assert [(r.category, r.text, r.line) for r in data.records] == [
        ("car", "a red car", 2), ("car", "a car,\nparked", 4), ("truck", "a red car", 7)]
    assert data.records[0].meta == {"source": "web"}
    assert data.n_duplicates == 1


def test_csv_without_extra_columns_has_no_meta(tmp_path: Path) -> None:
    data = read_corpus(write(tmp_path, "c.csv", "category,text\ncar,a car\n"))
    assert data.records[0].meta is None


@pytest.mark.parametrize("name,body", [
    ("b.json", '{"tench": ["a fish"]}'),
    ("b.jsonl", '{"category": "tench", "text": "a fish"}\n'),
    ("b.csv", "category,text\ntench,a fish\n"),
])
def test_bom_tolerated(tmp_path: Path, name: str, body: str) -> None:
    raw = codecs.BOM_UTF8 + body.encode()
    data = read_corpus(write(tmp_path, name, raw))
    assert [(r.category, r.text) for r in data.records] == [("tench", "a fish")]
    assert data.file_sha256 == hashlib.sha256(raw).hexdigest()


def test_read_corpus_bytes_uses_label(tmp_path: Path) -> None:
    data = read_corpus_bytes(b'{"a": ["b"]}', label="builtin:test", format="json")
    assert data.path == "builtin:test" and data.records[0].text == "b"
    with pytest.raises(CorpusError, match=r"^builtin:test: unknown format 'xml'"):
        read_corpus_bytes(b"<a/>", label="builtin:test", format="xml")


# --------------------------------------------------------------------------- bad files


def test_missing_file_raises_file_not_found(tmp_path: Path) -> None:
    p = tmp_path / "nope.json"
    with pytest.raises(FileNotFoundError, match=re.escape(str(p))):
        read_corpus(p)


def test_invalid_utf8_names_line_and_offset(tmp_path: Path) -> None:
    raw = b'{"category": "a", "text": "ok"}\n{"category": "b", "text": "caf\xe9"}\n'
    msg = error_of(write(tmp_path, "latin1.jsonl", raw))
    assert f"latin1.jsonl:2: invalid UTF-8 (byte 0xe9 at byte offset {raw.index(0xE9)})" in msg


def test_invalid_utf8_offset_counts_the_bom(tmp_path: Path) -> None:
    raw = codecs.BOM_UTF8 + b"category,text\n\nx,\xff\n"
    msg = error_of(write(tmp_path, "c.csv", raw))
    assert f"c.csv:3: invalid UTF-8 (byte 0xff at byte offset {raw.index(0xFF)})" in msg


def test_json_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    msg = error_of(write(tmp_path, "c.json", '{\n  "a": ["x"],\n  "b": ["y",]\n}\n'))
    assert re.search(r"c\.json:3: invalid JSON: .*\(column \d+\)", msg), msg


def test_json_lines_in_a_json_file_hint(tmp_path: Path) -> None:
    msg = error_of(write(tmp_path, "c.json", '{"a": ["x"]}\n{"b": ["y"]}\n'))
    assert "c.json:2: invalid JSON: Extra data" in msg and ".jsonl" in msg


def test_json_top_level_list(tmp_path: Path) -> None:
    msg = error_of(write(tmp_path, "c.json", '\n["a", "b"]'))
    assert "c.json:2: top level must be an object" in msg and "(got array)" in msg


def test_json_nested_without_key_lists_keys(tmp_path: Path) -> None:
    msg = error_of(write(tmp_path, "c.json", '{"imagenet1k": {"a": ["x"]}, "cifar10": {}}'))
    assert '"imagenet1k", "cifar10"' in msg and "--key" in msg


def test_json_unknown_key_lists_at_most_ten(tmp_path: Path) -> None:
    doc = {f"set{i:02d}": {"a": ["x"]} for i in range(15)}
    msg = error_of(write(tmp_path, "c.json", json.dumps(doc)), key="imagenet")
    assert 'key "imagenet" not found' in msg and '"set09"' in msg
    assert '"set10"' not in msg and "5 more" in msg


def test_json_key_on_flat_file(tmp_path: Path) -> None:
    msg = error_of(write(tmp_path, "c.json", FLAT), key="imagenet1k")
    assert 'key "imagenet1k" was given but the file is flat' in msg


def test_key_on_non_json_format(tmp_path: Path) -> None:
    msg = error_of(write(tmp_path, "c.csv", "category,text\na,b\n"), key="x")
    assert "--key only applies to .json" in msg


def test_json_non_string_description(tmp_path: Path) -> None:
    msg = error_of(write(tmp_path, "c.json",
                         '{\n "goldfish": ["x"],\n "tench": ["a", "b", "c", null]\n}'))
    assert 'c.json:3: category "tench", item 3: description must be a non-empty string ' \
           '(got null)' in msg


def test_json_empty_description(tmp_path: Path) -> None:
    msg = error_of(write(tmp_path, "c.json", '{"tench": ["a fish", "   "]}'))
    assert 'c.json:1: category "tench", item 1: description must be a non-empty string' in msg


def test_json_value_not_a_list(tmp_path: Path) -> None:
    msg = error_of(write(tmp_path, "c.json", '{"tench": "a fish"}'))
    assert 'category "tench": value must be an array' in msg and "(got string)" in msg


def test_json_category_without_descriptions(tmp_path: Path) -> None:
    msg = error_of(write(tmp_path, "c.json", '{"a": ["x"],\n"tench": []}'))
    assert 'c.json:2: category "tench": has no descriptions' in msg


def test_json_empty_category(tmp_path: Path) -> None:
    msg = error_of(write(tmp_path, "c.json", '{"a": ["x"],\n"  ": ["y"]}'))
    assert "c.json:2:" in msg and "category must be a non-empty string" in msg


def test_json_duplicate_category_key(tmp_path: Path) -> None:
    msg = error_of(write(tmp_path, "c.json", '{"a": ["x"], "a": ["y"]}'))
    assert 'duplicate key "a"' in msg


def test_json_nan_rejected(tmp_path: Path) -> None:
    msg = error_of(write(tmp_path, "c.jsonl", '{"category": "a", "text": "b", "score": NaN}\n'))
    assert "c.jsonl:1: invalid JSON: NaN is not valid JSON" in msg


def test_jsonl_non_object_line(tmp_path: Path) -> None:
    msg = error_of(write(tmp_path, "c.jsonl",
                         '{"category": "a", "text": "b"}\n\n["a", "b"]\n'))
    assert "c.jsonl:3: each line must be a JSON object" in msg and "(got array)" in msg


def test_jsonl_missing_text_field(tmp_path: Path) -> None:
    msg = error_of(write(tmp_path, "c.jsonl",
                         '{"category": "a", "text": "b"}\n{"category": "a", "txt": "c"}\n'))
    assert 'c.jsonl:2: missing required field "text"' in msg


def test_jsonl_syntax_error_line(tmp_path: Path) -> None:
    msg = error_of(write(tmp_path, "c.jsonl",
                         '{"category": "a", "text": "b"}\n\n{"category": "a", "text": }\n'))
    assert re.search(r"c\.jsonl:3: invalid JSON: .*\(column 27\)", msg), msg


def test_jsonl_non_string_text(tmp_path: Path) -> None:
    msg = error_of(write(tmp_path, "c.jsonl", '{"category": "a", "text": 5}\n'))
    assert "c.jsonl:1: text must be a non-empty string (got number)" in msg


def test_jsonl_nul_character(tmp_path: Path) -> None:
    msg = error_of(write(tmp_path, "c.jsonl", '{"category": "a", "text": "b\\u0000c"}\n'))
    assert "c.jsonl:1: text contains a NUL character" in msg


def test_jsonl_lone_surrogate_in_meta(tmp_path: Path) -> None:
    msg = error_of(write(tmp_path, "c.jsonl", '{"category": "a", "text": "b", "x": "\\ud800"}\n'))
    assert "c.jsonl:1: an extra field holds" in msg and "surrogate" in msg


def test_csv_missing_column(tmp_path: Path) -> None:
    msg = error_of(write(tmp_path, "c.csv", "category,description\na,b\n"))
    assert 'c.csv:1: header has no "text" column' in msg and '"description"' in msg


def test_csv_column_names_are_case_sensitive(tmp_path: Path) -> None:
    msg = error_of(write(tmp_path, "c.csv", "Category,text\na,b\n"))
    assert 'c.csv:1: header has no "category" column' in msg


def test_csv_ragged_row(tmp_path: Path) -> None:
    msg = error_of(write(tmp_path, "c.csv", "category,text\na,b\n\nc,d,e\n"))
    assert "c.csv:4: row has 3 fields, the header has 2" in msg


def test_csv_empty_category(tmp_path: Path) -> None:
    msg = error_of(write(tmp_path, "c.csv", "category,text\na,b\n  ,d\n"))
    assert "c.csv:3: category must be a non-empty string (got empty string)" in msg


def test_csv_malformed_quotes(tmp_path: Path) -> None:
    msg = error_of(write(tmp_path, "c.csv", 'category,text\na,"b"x\n'))
    assert "c.csv:2: malformed CSV" in msg


def test_csv_repeated_header_column(tmp_path: Path) -> None:
    msg = error_of(write(tmp_path, "c.csv", "category,text,text\na,b,c\n"))
    assert 'c.csv:1: header repeats column "text"' in msg


def test_csv_header_only_has_no_records(tmp_path: Path) -> None:
    msg = error_of(write(tmp_path, "c.csv", "category,text\n"))
    assert "no records" in msg


@pytest.mark.parametrize("name,body", [
    ("e.json", ""), ("e.jsonl", "\n \n"), ("e.csv", codecs.BOM_UTF8), ("e.json", "{}"),
])
def test_empty_file(tmp_path: Path, name: str, body: str | bytes) -> None:
    assert "no records" in error_of(write(tmp_path, name, body))


def test_unknown_extension_lists_formats(tmp_path: Path) -> None:
    msg = error_of(write(tmp_path, "corpus.txt", "category,text\na,b\n"))
    assert "'.txt'" in msg and ".json" in msg and ".jsonl" in msg and ".csv" in msg


def test_overlong_text(tmp_path: Path) -> None:
    body = json.dumps({"category": "a", "text": "x" * 20_001})
    msg = error_of(write(tmp_path, "c.jsonl", '{"category": "a", "text": "ok"}\n' + body + "\n"))
    assert "c.jsonl:2: text is 20001 characters long; the limit is 20000" in msg
    assert read_corpus(write(tmp_path, "ok.jsonl",
                             json.dumps({"category": "a", "text": "x" * 20_000}))).records


def test_overlong_category(tmp_path: Path) -> None:
    msg = error_of(write(tmp_path, "c.csv", f"category,text\n{'c' * 501},a\n"))
    assert "c.csv:2: category is 501 characters long; the limit is 500" in msg


# --------------------------------------------------------------------------- builtin corpus


def _clip_benchmark_installed() -> bool:
    for dist in ("clip-benchmark", "clip_benchmark"):
        try:
            importlib.metadata.distribution(dist)
            return True
        except importlib.metadata.PackageNotFoundError:
            pass
    return False


def test_find_builtin_cupl() -> None:
    if not _clip_benchmark_installed():
        with pytest.raises(Unavailable, match=r"pip install --no-deps clip-benchmark"):
            find_builtin_cupl()
        return
    path = find_builtin_cupl()
    assert path.is_file() and path.name == "cupl_prompts.json"
    doc = json.loads(path.read_text(encoding="utf-8"))
    classes = doc["imagenet1k"]
    assert len(classes) >= 998
    assert all(len(v) == 150 and all(isinstance(s, str) for s in v) for v in classes.values())
    with pytest.raises(CorpusError, match="pass --key"):
        read_corpus(path)


@pytest.mark.skipif(not _clip_benchmark_installed(), reason="clip-benchmark not installed")
def test_read_builtin_cupl() -> None:
    path = find_builtin_cupl()
    data = read_corpus(path, key="imagenet1k")
    assert len(data.categories) == 998
    assert len(data.records) + data.n_duplicates == 998 * 150
    lines = path.read_text(encoding="utf-8").split("\n")
    for r in data.records[:: len(data.records) // 50]:
        assert r.line is not None and f'"{r.category}"' in lines[r.line - 1]


# --------------------------------------------------------------------------- typed errors, suffix table


def test_a_bad_corpus_file_is_invalid_input(tmp_path: Path) -> None:
    """Every reader's error is an InvalidInput (CLI exit 2, HTTP 400), not a bare ValueError."""
    with pytest.raises(CorpusError) as excinfo:
        read_corpus(write(tmp_path, "c.json", '{"tench": [1]}'))
    assert isinstance(excinfo.value, InvalidInput)
    assert type(excinfo.value).exit_code == 2 and type(excinfo.value).http_status == 400


def test_unknown_builtin_is_not_found() -> None:
    from unibind.indexer.readers.builtin import load_builtin

    with pytest.raises(NotFound, match=r"unknown builtin corpus 'nope'; builtins: cupl-imagenet") as excinfo:
        load_builtin("nope")
    assert type(excinfo.value).http_status == 404


def test_suffix_table_names_every_format() -> None:
    from unibind.indexer.readers.corpus import FORMATS, SUFFIXES, format_of

    assert set(SUFFIXES.values()) == set(FORMATS)
    assert [format_of(n) for n in ("a.JSON", "b.jsonl", "c.ndjson", "d.csv", "e.txt", "f")] == \
        ["json", "jsonl", "jsonl", "csv", None, None]
