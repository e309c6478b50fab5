"""The unibind CLI as a user drives it: tables, --json, clear errors, nothing written on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from unibind.retrieval.cli.main import main
from unibind.schema import Corpus, Database, Description
from unibind.schema.errors import Conflict, InvalidInput
from tests.corpus_samples import ANIMALS, VEHICLES, write_json, write_jsonl


@pytest.fixture
def run(db_url: str, home: Path, capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    def _run(*args: str) -> tuple[int, str, str]:
        code = main(["--db", db_url, "--home", str(home), *args])
        out = capsys.readouterr()
        return code, out.out, out.err

    return _run


def _count(db_url: str) -> tuple[int, int]:
    db = Database(db_url)
    with db.session() as s:
        counts = s.scalar(select(func.count(Corpus.id))), s.scalar(select(func.count(Description.id)))
    db.dispose()
    return counts  # type: ignore[return-value]


def test_ingest_list_show_categories_search_delete(run, db_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = run("ingest", str(write_jsonl(tmp_path / "a.jsonl", ANIMALS)), "--name", "animals", "--encoder", "minilm",
                       "--source", "hand-written")
    assert code == 0 and "ingested corpus 'animals': 10 descriptions in 3 categories" in out
    code, out, _ = run("ingest", str(write_json(tmp_path / "v.json", VEHICLES)), "--name", "vehicles")  # the only space's encoder
    assert code == 0 and "with minilm" in out
    code, out, _ = run("corpus", "list")
    assert code == 0 and "animals" in out and "vehicles" in out and "complete" in out
    code, out, _ = run("corpus", "list", "--json")
    rows = json.loads(out)
    assert [(r["name"], r["descriptions"], r["status"]) for r in rows] == [("animals", 10, "complete"), ("vehicles", 5, "complete")]
    code, out, _ = run("corpus", "show", "animals", "--json")
    assert json.loads(out)["category_counts"] == {"goldfish": 3, "tabby cat": 3, "tench": 4}
    code, out, _ = run("corpus", "show", "animals")
    assert "source" in out and "hand-written" in out and "tench" in out
    code, out, _ = run("categories")
    assert code == 0 and "fire truck" in out and "5 categories" in out
    code, out, _ = run("categories", "--corpus", "vehicles", "--json")
    assert [c["name"] for c in json.loads(out)] == ["bicycle", "fire truck"]
    code, out, _ = run("search-descriptions", "a red emergency vehicle", "-k", "3", "--json")
    hits = json.loads(out)
    assert code == 0 and len(hits) == 3 and hits[0]["category"] == "fire truck" and hits[0]["corpus"] == "vehicles"
    code, out, _ = run("search-descriptions", "a striped cat", "-k", "2")
    assert "tabby cat" in out.splitlines()[2]
    code, out, _ = run("index", "verify", "--json")
    assert code == 0 and json.loads(out)[0]["ok"] is True
    code, out, _ = run("corpus", "delete", "animals")
    assert code == 0 and "deleted corpus 'animals' (10 descriptions)" in out
    assert _count(db_url) == (1, 5)
    code, out, _ = run("index", "verify")
    assert code == 0 and out.startswith("ok")


def test_builtin_subset(run, db_url: str) -> None:  # type: ignore[no-untyped-def]
    code, out, err = run("ingest", "--builtin", "cupl-imagenet", "--classes", "2", "--variant", "descriptions", "--encoder", "minilm")
    assert code == 0, err
    assert "ingested corpus 'cupl-imagenet'" in out and "in 2 categories" in out
    code, out, _ = run("categories", "--json")
    assert [c["name"] for c in json.loads(out)] == ["goldfish", "tench"]
    assert all(c["n_descriptions"] <= 70 for c in json.loads(out))


BAD_FILES = [
    ("bad.json", b'{"tench": ["ok", 3]}', "item 1"),
    ("bad.jsonl", b'{"category": "a", "text": "fine"}\n{"category": "a"}\n', "bad.jsonl:2"),
    ("bad.csv", b"category,words\na,b\n", "text"),
    ("bad2.json", b'{"tench": ["ok", \xff"x"]}', "UTF-8"),
    ("bad3.json", b"[1, 2]", "bad3.json"),
    ("bad.txt", b"hello", "format"),
]


@pytest.mark.parametrize("name,content,needle", BAD_FILES)
def test_bad_files_leave_nothing_written(run, db_url: str, tmp_path: Path, name: str, content: bytes, needle: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / name
    path.write_bytes(content)
    code, out, err = run("ingest", str(path), "--name", "x", "--encoder", "minilm")
    assert code == 2 and err.startswith("unibind: error: ") and name in err and needle in err
    assert "Traceback" not in err and out == ""
    assert _count(db_url) == (0, 0)


@pytest.mark.parametrize(
    "args,needle",
    [
        (["ingest", "missing.json", "--name", "x", "--encoder", "minilm"], "corpus file not found: missing.json"),
        (["ingest", "--builtin", "cupl-imagenet", "--encoder", "nonsense"], "encoder spec 'nonsense' is not one of"),
        (["ingest", "--builtin", "cupl-imagenet", "--classes", "0", "--encoder", "minilm"], "--classes must be >= 1"),
        (["ingest", "--encoder", "minilm"], "give a corpus FILE or --builtin NAME"),
        (["corpus", "show", "nope"], "no corpus named 'nope'"),
        (["corpus", "delete"], "the following arguments are required: NAME (see `unibind corpus delete --help`)"),
        (["search-descriptions", "hello"], "the knowledge base is empty"),  # a Conflict with the store's state: 3
        (["index", "verify"], "the knowledge base is empty"),
        (["search", "--text", "hello", "--target", "descriptions"], "the knowledge base is empty"),
        (["ingest", "--builtin", "cupl-imagenet", "--classes", "1", "--encoder", "minilm", "--factory", "Bogus"], "factory string 'Bogus'"),
    ],
)
def test_user_errors_are_one_clear_line(run, db_url: str, args: list[str], needle: str) -> None:  # type: ignore[no-untyped-def]
    code, out, err = run(*args)
    expected = Conflict.exit_code if "the knowledge base is empty" in needle else InvalidInput.exit_code
    assert code == expected and needle in err and "Traceback" not in err
    assert _count(db_url) == (0, 0)


def test_file_without_name(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Named after the file, as an upload without a name is."""
    code, _, err = run("ingest", str(write_json(tmp_path / "animals.v2.json", ANIMALS)), "--encoder", "minilm")
    assert code == 0, err
    code, out, err = run("corpus", "list", "--json")
    assert code == 0 and [c["name"] for c in json.loads(out)] == ["animals.v2"], err


def test_progress_bars_into_a_log_file_are_throttled(tmp_path: Path) -> None:
    """stderr that is no terminal (a log file, a pipe) gets a bar line every 30 s, not ~10 redraws a second: the CLI
    sets tqdm's interval before any bar's module is imported (tqdm reads its TQDM_* variables at import)."""
    code = ("import os, sys; os.environ.pop('TQDM_MININTERVAL', None); from unibind.retrieval.cli.main import main; "
            "assert 'tqdm' not in sys.modules; code = main(['--home', sys.argv[1], 'corpus', 'list']); "
            "import io; from tqdm.auto import tqdm; print(code, tqdm(total=1, file=io.StringIO()).mininterval)")
    with open(tmp_path / "log.txt", "w") as log:  # what `unibind ... 2> log.txt` gives the process
        done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "home")], stdout=subprocess.PIPE,
                              stderr=log, text=True, check=False)
    assert done.returncode == 0, (tmp_path / "log.txt").read_text()
    assert done.stdout.splitlines()[-1] == "0 30.0", done.stdout  # tqdm alone: 0.1


def test_verbose_is_taken_after_the_command_too(run) -> None:  # type: ignore[no-untyped-def]
    """`unibind corpus list -v` as well as `unibind -v corpus list`."""
    from unibind.retrieval.cli.main import build_parser

    for argv, level in ((["corpus", "list", "-v"], 1), (["-v", "corpus", "list"], 1), (["corpus", "list", "-vv"], 2),
                        (["-vv", "corpus", "list"], 2), (["corpus", "list"], 0)):
        assert build_parser().parse_args(argv).verbose == level, argv
    code, _, err = run("corpus", "list", "-v")
    assert code == 0, err
