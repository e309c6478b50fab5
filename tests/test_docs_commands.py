"""Docs that cannot rot: the commands README.md and docs/cli.md show are typed, and the settings page is the code's.

Each page's ```bash blocks are read as a user reads them and typed in order, as one session, in a folder that holds
the small files the commands name, against a scratch store (MiniLM, offline). A command that needs what a test
machine lacks (a running server, a hub model, an LLM) is checked against the command-line parser
instead, and ``PARSE_ONLY`` says why, one rule per reason; a rule that no command needs any more fails too.

docs/configuration.md's table of settings is checked against ``unibind.schema.settings``: every variable and flag
it names is a setting's, every setting has its row, and each row's default is the code's.
"""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.corpus_samples import ANIMALS, VEHICLES, write_json

ROOT = Path(__file__).resolve().parent.parent
WALKED = ("README.md", "docs/cli.md")  # every command on these pages runs, or is parse-checked with a reason

# (pattern, reason): a command that matches is checked against the parser and not run
PARSE_ONLY: tuple[tuple[str, str], ...] = (
    (r"(^|\s)unibind serve\b", "runs until stopped; tests/test_service.py and tests/test_web_page.py run the service"),
    (r"--images?\b|--files\b|--modality image\b|--target image\b|imagefolder:|--image-encoder\b|open_clip:",
     "needs an image model (open_clip or CLIP weights from the hub)"),
    (r"--llm (openai|hf):", "needs an LLM server or a local LLM"),
    (r"\bgen\.jsonl\b|--corpus gen\b", "reads the corpus the LLM command before it writes"),
)
# programs other than unibind that the pages show; none of them is run here
OTHER_PROGRAMS = {
    "source": "the shell's; the test calls unibind directly",
    "make": "the Makefile's targets (tests/test_docs.py checks the unibind lines of its recipes)",
    "curl": "calls of a running service (tests/test_service.py makes them)",
    "pip": "installs",
    "docker": "the compose file (tests/test_docs.py checks it)",
}
PIPE_FILTERS = {"tee", "head", "tail"}  # what may sit between and after unibind in a pipeline


@dataclass(frozen=True)
class Shown:
    """One command line of a page: where it is, its text (continuations joined, comment cut)."""

    page: str
    line: int
    text: str

    def __str__(self) -> str:
        return f"{self.page}:{self.line}: {self.text}"


def bash_commands(page: str, text: str | None = None) -> list[Shown]:
    """The command lines of a page's ```bash blocks, in order."""
    text = (ROOT / page).read_text() if text is None else text
    found: list[Shown] = []
    inside, pending, start = False, "", 0
    for n, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("```"):
            inside = stripped == "```bash" if not inside else False
            continue
        if not inside or (not pending and (not stripped or stripped.startswith("#"))):
            continue
        start = start if pending else n
        body = without_comment(stripped)
        if body.endswith("\\"):
            pending += body[:-1].rstrip() + " "
            continue
        found.append(Shown(page, start, (pending + body).strip()))
        pending = ""
    return found


def without_comment(line: str) -> str:
    """The line up to a ``#`` that starts a shell comment (after a blank, outside quotes)."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line


def parse_only_reason(command: str) -> str | None:
    for pattern, reason in PARSE_ONLY:
        if re.search(pattern, command):
            return reason
    return None


def words_of(stage: str) -> tuple[dict[str, str], list[str]]:
    """(VAR=value settings before the program, the words from the program on)."""
    words = shlex.split(stage)
    env = {}
    while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    return env, words


def check_parses(shown: Shown, argv: list[str]) -> None:
    from unibind.retrieval.cli.main import build_parser

    try:
        args = build_parser().parse_args(argv)
    except Exception as e:  # noqa: BLE001 - InvalidInput names what argparse refused
        pytest.fail(f"{shown}\n  does not parse: {e}")
    assert callable(args.func), str(shown)


# -- the small files the pages' commands name --------------------------------------------------------------------
FEATURE_DIM = 16
CATEGORIES = {**ANIMALS, **VEHICLES}


def _prototypes() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {c: rng.normal(size=FEATURE_DIM) for c in CATEGORIES}


def _clip(proto: np.ndarray, rng: np.random.Generator) -> list[float]:
    return [float(x) for x in (proto + 0.1 * rng.normal(size=FEATURE_DIM)).astype(np.float32)]


def write_workspace(folder: Path) -> Path:
    """The repository's examples/ (the README's walk reads them), and descriptions.json, prompts.json, queries.jsonl
    and the audio features, pairs and captions that docs/cli.md names."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ROOT / "examples", folder / "examples")
    write_json(folder / "descriptions.json", CATEGORIES)
    (folder / "prompts.json").write_text(json.dumps({"imagenet1k": CATEGORIES, "other": {"owl": ["An owl."]}}))
    queries = [("A fish with olive-green scales and red eyes lives in weedy lakes.", "tench"),
               ("A small orange pet fish swims in a glass bowl.", "goldfish"),
               ("A large grey shark with rows of sharp teeth.", "great white shark")]
    (folder / "queries.jsonl").write_text("".join(json.dumps({"text": t, "label": c}) + "\n" for t, c in queries))

    protos, rng, names = _prototypes(), np.random.default_rng(1), list(CATEGORIES)
    pairs, audio = [], []
    for i in range(40):
        category = names[i % len(names)]
        texts = CATEGORIES[category]
        pairs.append({"input": i, "description": texts[(i // len(names)) % len(texts)], "label": category})
        audio.append(_clip(protos[category], rng))
    (folder / "pairs.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs))
    np.save(folder / "audio.npy", np.asarray(audio, dtype=np.float32))
    (folder / "captions.jsonl").write_text("".join(
        json.dumps({"row": p["input"], "caption": p["description"], "label": p["label"]}) + "\n" for p in pairs))

    clip_labels = ["tench", "goldfish", "tabby cat", "tabby cat", "fire truck", "bicycle"]
    clips = [_clip(protos[c], rng) for c in clip_labels]
    np.save(folder / "clips.npy", np.asarray(clips, dtype=np.float32))
    meta = [{"uri": f"clips/{i}.wav", "label": c, "split": "test" if i % 2 else "train", "year": 2024}
            for i, c in enumerate(clip_labels)]
    (folder / "clips-meta.jsonl").write_text("".join(json.dumps(m) + "\n" for m in meta))
    (folder / "clips.jsonl").write_text("".join(json.dumps({"vector": v, **m, "uri": f"more/{i}.wav"}) + "\n"
                                                for i, (v, m) in enumerate(zip(clips, meta, strict=True))))
    (folder / "audio-queries.jsonl").write_text("".join(json.dumps({"row": i, "label": c}) + "\n"
                                                        for i, c in enumerate(clip_labels)))
    return folder


# -- typing a page ------------------------------------------------------------------------------------------------
def run_unibind(shown: Shown, argv: list[str], env: dict[str, str], stdin: str | None,
                capsys: pytest.CaptureFixture[str]) -> str:
    """Run one ``unibind`` command in this process (the encoder loads once); its standard output."""
    from unibind.retrieval.cli.main import main

    if argv and argv[0] == "serve":  # a PARSE_ONLY rule missed it: the service would run until stopped
        pytest.fail(f"{shown}\n  would start the service; it must be parse-only")
    saved_env = {k: os.environ.get(k) for k in env}
    saved_stdin = sys.stdin
    os.environ.update(env)
    if stdin is not None:
        sys.stdin = io.StringIO(stdin)
    try:
        capsys.readouterr()
        code = main(argv)
        out, err = capsys.readouterr()
    finally:
        sys.stdin = saved_stdin
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    if code != 0:
        pytest.fail(f"{shown}\n  exited {code}: {err.strip()[-2000:]}")
    return out


def type_command(shown: Shown, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> str:
    """Type one command line: run it, or check it against the parser; returns what was done."""
    if re.search(r"\s\[--?[\w-]+", shown.text):
        pytest.fail(f"{shown}\n  is a synopsis ([optional] parts): show a command a user can type")
    first = shlex.split(shown.text)[0]
    if first == "export":
        name, _, value = shown.text.split(None, 1)[1].partition("=")
        monkeypatch.setenv(name, shlex.split(value)[0] if value else "")
        return "set"
    stages = [s.strip() for s in shown.text.split(" | ")]
    env0, words0 = words_of(stages[0])
    if words0[0] != "unibind":
        if words0[0] not in OTHER_PROGRAMS:
            pytest.fail(f"{shown}\n  runs {words0[0]!r}: run it in this test, or add it to OTHER_PROGRAMS with why not")
        return "other"
    unibind_stages = [words_of(s) for s in stages if words_of(s)[1][0] == "unibind"]
    reason = parse_only_reason(shown.text)
    if reason:
        for _, words in unibind_stages:
            check_parses(shown, words[1:])
        return "parsed"
    piped: str | None = None
    for stage in stages:
        env, words = words_of(stage)
        if words[0] == "unibind":
            piped = run_unibind(shown, words[1:], env, piped, capsys)
        elif words[0] == "tee":
            Path(words[1]).write_text(piped or "")
        elif words[0] in ("head", "tail"):
            n = int(words[words.index("-n") + 1]) if "-n" in words else 10
            lines = (piped or "").splitlines(keepends=True)
            piped = "".join(lines[:n] if words[0] == "head" else lines[-n:])
        else:
            pytest.fail(f"{shown}\n  pipes into {words[0]!r}, which this test cannot type")
    return "ran"


def walk(page: str, workspace: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
         text: str | None = None) -> dict[str, list[Shown]]:
    """Type every command of ``page`` in order in ``workspace``, against a scratch store; what was done to each."""
    for name in list(os.environ):
        if name.startswith("UNIBIND_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("UNIBIND_HOME", str(workspace / "unibind-data"))
    monkeypatch.setenv("UNIBIND_DEVICE", "cpu")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(workspace)
    done: dict[str, list[Shown]] = {}
    for shown in bash_commands(page, text):
        done.setdefault(type_command(shown, capsys, monkeypatch), []).append(shown)
    return done


# -- the tests ----------------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("page", WALKED)
def test_every_command_of_the_page_runs_in_order(page: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A user who types the page's commands in order, in a folder with the files they name, gets no error."""
    done = walk(page, write_workspace(tmp_path / "work"), capsys, monkeypatch)
    assert len(done.get("ran", [])) >= 5, f"{page} shows too few commands that run: {done}"
    assert len(done["ran"]) > len(done.get("parsed", [])), f"{page}: most commands must run, not only parse"


@pytest.mark.parametrize("page", WALKED)
def test_every_command_of_the_page_parses(page: str) -> None:
    """Cheap and always on: every unibind command of the page parses in current spellings."""
    commands = [s for s in bash_commands(page) if "unibind " in s.text]
    assert commands, f"{page} shows no unibind command in a ```bash block"
    for shown in commands:
        for stage in shown.text.split(" | "):
            env, words = words_of(stage)
            if words and words[0] == "unibind":
                check_parses(shown, words[1:])


def test_every_parse_only_rule_is_still_needed() -> None:
    """A rule that no command of the walked pages matches is dead, and could hide a new command from running."""
    commands = [s.text for page in WALKED for s in bash_commands(page)]
    unused = [reason for pattern, reason in PARSE_ONLY if not any(re.search(pattern, c) for c in commands)]
    assert not unused, f"PARSE_ONLY rules no command needs: {unused}"


def test_the_reader_sees_what_the_test_types() -> None:
    """The block reader joins continuations, cuts comments, and keeps only ```bash blocks."""
    page = "\n".join(["```bash", "unibind corpus list   # a comment", "# a whole comment",
                      "unibind search --text \"a # not a comment\" \\", "  -k 3", "```", "```", "unibind not-bash",
                      "```", "```json", "unibind neither", "```"])
    assert [s.text for s in bash_commands("x.md", page)] == [
        "unibind corpus list", 'unibind search --text "a # not a comment" -k 3']


# -- docs/configuration.md against the settings object -----------------------------------------------------------
CONFIG_PAGE = ROOT / "docs" / "configuration.md"


def settings_rows() -> list[list[str]]:
    """The cells of the table under "## The settings"."""
    text = CONFIG_PAGE.read_text().split("## The settings", 1)[1].split("\n## ", 1)[0]
    rows = [[c.strip() for c in re.split(r"(?<!\\)\|", line.strip()[1:-1])] for line in text.splitlines()
            if line.startswith("|")]
    header, rows = rows[0], rows[2:]
    assert header == ["setting", "environment", "flag", "default"], header
    return rows


def all_cli_options() -> set[str]:
    """Every option string of every command of the CLI."""
    import argparse

    from unibind.retrieval.cli.main import build_parser

    found: set[str] = set()
    todo: list[argparse.ArgumentParser] = [build_parser()]
    while todo:
        parser = todo.pop()
        for action in parser._actions:
            found.update(action.option_strings)
            if isinstance(action, argparse._SubParsersAction):
                todo.extend(action.choices.values())
    return found


def shown_defaults(value: object) -> set[str]:
    """How the settings table may write a code default (empty: the row explains it in words)."""
    if value is None:
        return set()
    if isinstance(value, bool):
        return {"on" if value else "off"}
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int):
        return {f"{value:,}", str(value)}
    return {str(value)}


def test_every_setting_has_its_row_and_every_row_is_a_setting() -> None:
    from unibind.schema.settings import SPECS

    by_env = {s.env: s for s in SPECS}
    rows = settings_rows()
    envs = [re.fullmatch(r"`(UNIBIND_[A-Z0-9_]+)`", env) for _, env, _, _ in rows]
    assert all(envs), f"each row names one variable: {[r[1] for r in rows]}"
    documented = [m[1] for m in envs if m]
    assert len(documented) == len(set(documented)), "a variable has two rows"
    assert set(documented) == set(by_env), (f"undocumented: {sorted(set(by_env) - set(documented))}; "
                                            f"not settings: {sorted(set(documented) - set(by_env))}")
    for (_, env, flag, _), name in zip(rows, documented, strict=True):
        flags = re.findall(r"`(--[\w-]+)`", flag)
        expected = [by_env[name].flag] if by_env[name].flag else []
        assert flags == expected, f"{name}: the table's flag {flags}, the code's {expected}"


def test_every_default_in_the_table_is_the_code_s() -> None:
    from unibind.schema.settings import DEFAULT_ENCODER, DEFAULT_HOME, SPECS, Settings

    defaults = Settings(home=Path(DEFAULT_HOME), database_url="")
    by_env = {s.env: s for s in SPECS}
    for _, env, _, default in settings_rows():
        spec = by_env[env.strip("`")]
        cell = default.replace("`", "")
        fixed = {"home": DEFAULT_HOME, "encoder": DEFAULT_ENCODER,
                 "database_url": "sqlite:///$UNIBIND_HOME/unibind.db"}.get(spec.name)
        expected = {fixed} if fixed else shown_defaults(getattr(defaults, spec.name))
        if not expected:
            assert not re.search(r"\d", cell) or spec.name == "milvus_nlist", f"{spec.env}: the code has no default"
            continue  # no value: the cell says in words what applies (none, the server's default, ...)
        assert any(re.search(rf"(?<![\w,.]){re.escape(e)}(?![\w,]|\.\d)", cell) for e in expected), \
            f"{spec.env}: the table says {default!r}, the code's default is {' or '.join(sorted(expected))}"


def test_every_variable_and_flag_on_the_page_exists() -> None:
    """The prose too: a variable the page names is a setting's (or one it explains, OPENAI_*); a flag is the CLI's."""
    from unibind.schema.settings import SPECS

    text = CONFIG_PAGE.read_text()
    known_env = {s.env for s in SPECS} | {"OPENAI_API_KEY", "OPENAI_BASE_URL"}
    unknown_env = sorted({v for v in re.findall(r"\$?\b((?:UNIBIND|OPENAI)_[A-Z0-9_]+)", text)} - known_env)
    assert not unknown_env, f"docs/configuration.md names variables that are no setting: {unknown_env}"
    options = all_cli_options()
    unknown_flags = sorted({f for f in re.findall(r"(?<![\w-])(--[a-z][\w-]*)", text)} - options)
    assert not unknown_flags, f"docs/configuration.md names flags no command takes: {unknown_flags}"


def test_the_settings_check_sees_a_missing_row() -> None:
    """The table check is not vacuous: it found every spec's variable, so a spec without a row would fail it."""
    from unibind.schema.settings import SPECS

    rows = settings_rows()
    assert len(rows) == len(SPECS) >= 20
