"""The repository explains itself: README, docs and docstrings point only at files that exist in it.

Every relative Markdown link in README.md and docs/ resolves to a file of the repository; every source path the
prose names (``indexer/runtime/device.py``, ``retrieval/service/``, ``tests/test_x.py``, ...) exists, so a module
that moves cannot leave its old path behind; and nothing refers to files outside the repository.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SOURCE_FOLDERS = ("schema", "indexer", "retrieval", "migrations")
PATH_ROOTS = (*SOURCE_FOLDERS, "bench", "tests", "docs", "examples")
# a repository path as prose writes it: a known top folder, then folders, then perhaps a file name
PATH = re.compile(rf"(?<![\w./$<-])((?:{'|'.join(PATH_ROOTS)})/(?:[\w-]+/)*(?:[\w-]+(?:\.\w+)?)?)(?![\w/<*-])")
LINK = re.compile(r"\]\(([^)\s]+)\)")
OUTSIDE = ("../shared", "shared/", "DESIGN.md")


def python_files() -> list[Path]:
    found = [p for folder in (*SOURCE_FOLDERS, "bench") for p in sorted((ROOT / folder).rglob("*.py"))]
    return [p for p in found if "__pycache__" not in p.parts]


DOC_PAGES = ("docs/cli.md", "docs/service.md", "docs/configuration.md", "docs/scaling.md", "docs/recognition.md",
             "docs/method.md", "docs/architecture.md", "docs/store.md", "docs/knowledge.md", "docs/evaluation.md",
             "docs/plots.md", "docs/development.md")


def test_the_documentation_pages_exist_and_the_readme_links_them() -> None:
    """The README is a tour: the reference lives in docs/, and the README links every page of it."""
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250, "README.md is a tour of at most 250 lines: move reference to docs/"
    assert {p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md")} == set(DOC_PAGES)
    for page in DOC_PAGES:
        assert (ROOT / page).is_file(), f"{page} is missing"
        assert f"]({page})" in readme, f"README.md does not link {page}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve_inside_the_repository(doc: Path) -> None:
    bad = []
    for n, line in enumerate(doc.read_text().splitlines(), 1):
        for target in LINK.findall(line):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue  # a URL or an anchor of the same page
            path = (doc.parent / target.split("#")[0]).resolve()
            if not path.is_relative_to(ROOT):
                bad.append(f"{doc.name}:{n}: {target} points outside the repository")
            elif not path.exists():
                bad.append(f"{doc.name}:{n}: {target} does not exist")
    assert not bad, "\n".join(bad)


def heading_anchors(page: Path) -> set[str]:
    """The anchors GitHub gives a Markdown page's headings: lower case, punctuation dropped, spaces as hyphens."""
    headings = re.findall(r"^#+\s+(.+?)\s*$", page.read_text(), flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_anchors_of_links_name_a_heading(doc: Path) -> None:
    """A link to a section (``page.md#a-heading``, or ``#a-heading`` on the same page) names a heading that exists."""
    bad = []
    for n, line in enumerate(doc.read_text().splitlines(), 1):
        for target in LINK.findall(line):
            if re.match(r"[a-z]+:", target) or "#" not in target:
                continue
            path, anchor = target.split("#", 1)
            page = (doc.parent / path).resolve() if path else doc
            if page.suffix == ".md" and page.is_file() and anchor not in heading_anchors(page):
                bad.append(f"{doc.name}:{n}: {target}: no heading of {page.name} has that anchor")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_source_paths_in_the_docs_exist(doc: Path) -> None:
    bad = []
    for n, line in enumerate(doc.read_text().splitlines(), 1):
        for path in PATH.findall(line):
            if not (ROOT / path).exists():
                bad.append(f"{doc.name}:{n}: {path} does not exist (moved? name its new path)")
    assert not bad, "\n".join(bad)


def test_source_paths_in_docstrings_and_comments_exist() -> None:
    bad = []
    for py in python_files():
        for n, line in enumerate(py.read_text().splitlines(), 1):
            for path in PATH.findall(line):
                if path.endswith(".py") and not (ROOT / path).exists():
                    bad.append(f"{py.relative_to(ROOT)}:{n}: {path} does not exist (moved? name its new path)")
    assert not bad, "\n".join(bad)


def test_nothing_points_outside_the_repository() -> None:
    bad = []
    for f in [*DOCS, *python_files()]:
        for n, line in enumerate(f.read_text().splitlines(), 1):
            for word in OUTSIDE:
                if word in line:
                    bad.append(f"{f.relative_to(ROOT)}:{n}: {word!r}: the repository must explain itself")
    assert not bad, "\n".join(bad)


def test_the_method_page_states_the_code_s_defaults() -> None:
    """docs/method.md quotes the defaults of the code it describes; each quote is checked against the constant."""
    import math

    from unibind.indexer.training.infonce import MAX_LOGIT_SCALE, HeadTrainConfig
    from unibind.retrieval.centres.builder import DEFAULT_K
    from unibind.retrieval.centres.prompts import BASE_PROMPT, CLIP_TEMPLATES
    from unibind.retrieval.centres.strategies import DEFAULT_STRATEGY, STRATEGIES, TEMPLATE_MIN_SHARE
    from unibind.retrieval.recognition.engine import CENTRING_MIN_NORM, DEFAULT_CENTRING, LOW_PRECISION_NEAR_TIE, NEAR_TIE
    from unibind.retrieval.recognition.recognizer import DEFAULT_TOP_M
    from unibind.retrieval.search.cross_modal import DEFAULT_NPROBE

    page = " ".join((ROOT / "docs" / "method.md").read_text().split())  # line breaks do not matter
    c = HeadTrainConfig()
    quotes = {
        "default $K = 50$": DEFAULT_K == 50,
        "A photo of a } c\\text{.”": BASE_PROMPT == "A photo of a {}.",
        "CLIP's 80 templates": len(CLIP_TEMPLATES) == 80,
        "`knowledge` (default)": DEFAULT_STRATEGY == "knowledge",
        "\\max(2, \\lceil 0.1\\,|C| \\rceil)": TEMPLATE_MIN_SHARE == 0.1,
        "The default is $m = 3$": DEFAULT_TOP_M == 3,
        "By default unibind scores in the space centred on $\\mu$": DEFAULT_CENTRING,
        "a member within $10^{-3}$ of $\\mu$": CENTRING_MIN_NORM == 1e-3,
        "$\\epsilon = 10^{-4}$": NEAR_TIE == 1e-4,
        "$4 \\cdot 10^{-3}$": LOW_PRECISION_NEAR_TIE == 4e-3,
        "temperature $\\tau$ (default 0.07)": c.temperature == 0.07 and not c.learn_temperature,
        "$\\lambda \\le \\log 100$": MAX_LOGIT_SCALE == math.log(100.0),
        "learning rate $10^{-3}$, weight decay 0.01": c.lr == 1e-3 and c.weight_decay == 0.01,
        "batches of $B$ (default 256)": c.batch_size == 256,
        "By default the loss is $\\mathcal{L}_{v \\to t}$": not c.symmetric,
        "validation split (10 %": c.val_fraction == 0.1,
        "5 epochs without improvement (at most 100)": c.patience == 5 and c.max_epochs == 100,
        "IVF probes 8 lists": DEFAULT_NPROBE == 8,
    }
    for name in STRATEGIES:
        quotes[f"| `{name}`"] = True
    missing = [q for q in quotes if q not in page]
    wrong = [q for q, holds in quotes.items() if not holds]
    assert not missing, f"docs/method.md no longer says: {missing}"
    assert not wrong, f"docs/method.md says what the code no longer does: {wrong}"


def test_the_architecture_page_describes_every_subpackage() -> None:
    page = (ROOT / "docs" / "architecture.md").read_text()
    missing = [f"{top}/{p.name}" for top in ("indexer", "retrieval") for p in sorted((ROOT / top).iterdir())
               if (p / "__init__.py").exists() and f"| `{p.name}` |" not in page]
    assert not missing, f"docs/architecture.md has no row for {missing}"


# -- the command lines the README, the docs and the Makefile show ------------------------------------------------
MAKE_VARIABLE = re.compile(r"^([A-Z_]+)\s*[?:]?=\s*(.*)$")
COMMAND_LINE = re.compile(r"^\s*(?:[A-Z_]+=\S*\s+)*unibind\s")  # unibind ..., perhaps after VAR=value


def fenced_lines(doc: Path) -> list[tuple[int, str]]:
    """(line number, text) of the lines inside the page's fenced code blocks."""
    lines, inside = [], False
    for n, line in enumerate(doc.read_text().splitlines(), 1):
        if line.lstrip().startswith("```"):
            inside = not inside
        elif inside:
            lines.append((n, line))
    return lines


def makefile_lines() -> list[tuple[int, str]]:
    """(line number, text) of the Makefile's recipe lines, continuations joined and its variables expanded."""
    text = (ROOT / "Makefile").read_text()
    variables = {m[1]: m[2].strip() for line in text.splitlines() if (m := MAKE_VARIABLE.match(line))}
    variables["UNIBIND"] = "unibind"  # $(BIN)/unibind: the command itself
    joined: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for n, line in enumerate(text.splitlines(), 1):
        start, so_far = pending if pending else (n, "")
        so_far += " " + line.strip().removesuffix("\\")
        pending = (start, so_far) if line.rstrip().endswith("\\") else None
        if pending is None:
            joined.append((start, re.sub(r"\$\((\w+)\)", lambda m: variables.get(m[1], m[0]), so_far).strip()))
    return joined


def command_lines() -> list[tuple[str, list[str]]]:
    """(where, argv) of every ``unibind …`` command line a user may copy: fenced in README.md and docs/, and the
    Makefile's recipes. Lines in ``[optional]`` notation are left out: they are a synopsis, not a command."""
    import shlex

    found = []
    sources = [(doc.relative_to(ROOT).as_posix(), fenced_lines(doc)) for doc in DOCS]
    sources.append(("Makefile", makefile_lines()))
    for name, lines in sources:
        for n, line in lines:
            command = line.split(" | ")[0].split("  #")[0]
            if not COMMAND_LINE.match(command) or re.search(r"\[[^\]]*\]", command):
                continue
            words = shlex.split(command)
            while re.match(r"^[A-Z_]+=", words[0]):  # VAR=value before the command
                words = words[1:]
            found.append((f"{name}:{n}", [w for w in words[1:] if w != "&"]))
    return found


COMMAND_LINES = command_lines()


def test_the_readme_and_the_makefile_show_command_lines() -> None:
    where = {w.split(":")[0] for w, _ in COMMAND_LINES}
    assert {"README.md", "docs/cli.md", "Makefile"} <= where and len(COMMAND_LINES) >= 40


@pytest.mark.parametrize("where,argv", COMMAND_LINES, ids=[w for w, _ in COMMAND_LINES])
def test_every_command_line_shown_parses_in_current_spellings(where: str, argv: list[str]) -> None:
    from unibind.retrieval.cli.main import DEPRECATED_COMMANDS, build_parser
    from unibind.retrieval.cli.parser import DEPRECATIONS

    args = build_parser().parse_args(argv)  # InvalidInput (a parse error) fails the test with argparse's message
    assert callable(args.func), where
    assert args.command not in DEPRECATED_COMMANDS, f"{where}: `unibind {args.command}` is deprecated"
    assert not getattr(args, DEPRECATIONS, None), f"{where}: {getattr(args, DEPRECATIONS)}"


# -- old spellings stay in their deprecation shims ------------------------------------------------------------------
DEPRECATED_SPELLINGS = {
    "unibind heads": re.compile(r"\bunibind heads\b"),
    "heads ACTION": re.compile(r"(?<![\w-])heads[\"']?,?\s*[\"']?(train|list|show|activate)\b"),
    "search-descriptions": re.compile(r"search-descriptions"),
    "centres … -k": re.compile(r"\bcentres\b[^\n`#]*?[\s\"']-k\b"),
}
# the shims themselves (and the sentence of docs/cli.md that names the old spellings): (file, text of the line)
SHIM_LINES = {
    ("retrieval/cli/main.py", '"search-descriptions": "unibind search --text TEXT --target descriptions",'),
    ("retrieval/cli/search.py", ('"""``unibind search``: cross-modal search of a gallery or the descriptions; '
                                 '``search-descriptions`` (deprecated)."""')),
    ("retrieval/cli/search.py", 'sp = add_leaf(sub, "search-descriptions", None, cmd_search_descriptions,'),
    ("retrieval/cli/search.py", "['unibind search-descriptions \"a freshwater fish with olive-green scales\" -k 10'],"),
    ("docs/cli.md", "`centres -k` (now `--centre-size`), `unibind heads` (now `unibind head`) and"),
    ("docs/cli.md", "`unibind search-descriptions TEXT` (now `unibind search --text TEXT --target descriptions`)."),
}


def test_old_spellings_appear_only_in_their_deprecation_shims() -> None:
    """The library's messages, the CLI, the service, the benchmarks, README, docs and the Makefile use the current
    spellings; `heads`, `search-descriptions` and `centres -k` live on only where they are kept working."""
    files = [*python_files(), *DOCS, ROOT / "Makefile"]
    bad, shims_seen = [], set()
    for f in files:
        rel = f.relative_to(ROOT).as_posix()
        for n, line in enumerate(f.read_text().splitlines(), 1):
            for name, pattern in DEPRECATED_SPELLINGS.items():
                if pattern.search(line):
                    if (rel, line.strip()) in SHIM_LINES:
                        shims_seen.add((rel, line.strip()))
                    else:
                        bad.append(f"{rel}:{n}: {name}: {line.strip()}")
    assert not bad, "old spellings outside the deprecation shims:\n" + "\n".join(bad)
    assert shims_seen == SHIM_LINES  # the check sees the shims, so it would see the spellings anywhere else


def test_the_compose_file_starts_what_the_scaling_out_section_connects_to() -> None:
    """deploy/compose.yaml is valid YAML; it starts Milvus and PostgreSQL on the ports and with the credentials that
    docs/scaling.md's settings use."""
    import yaml

    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    services = compose["services"]
    assert {"milvus", "postgres", "etcd", "minio"} <= set(services)
    assert "127.0.0.1:19530:19530" in services["milvus"]["ports"]
    assert "127.0.0.1:5432:5432" in services["postgres"]["ports"]
    env = services["postgres"]["environment"]
    page = (ROOT / "docs" / "scaling.md").read_text()
    url = f"postgresql+psycopg://{env['POSTGRES_USER']}:{env['POSTGRES_PASSWORD']}@127.0.0.1:5432/{env['POSTGRES_DB']}"
    assert f"export UNIBIND_DATABASE_URL={url}" in page
    assert "export UNIBIND_VECTORS=milvus://127.0.0.1:19530" in page
    assert "docker compose -f deploy/compose.yaml up -d" in page
