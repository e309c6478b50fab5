"""The package's shape as a contract: one import name, and imports that only go down the layers.

``unibind.retrieval`` may import ``unibind.indexer`` and ``unibind.schema``; ``unibind.indexer`` may import
``unibind.schema``; ``unibind.schema`` imports neither. Inside ``indexer`` and ``retrieval`` the subpackages
form layers too (each ``__init__`` docstring says what it may import). Every import counts, including
imports inside functions and under ``TYPE_CHECKING``. The bottom layers keep their narrower promises:
``unibind.schema`` imports nothing of unibind outside itself, ``indexer/readers`` and ``indexer/runtime`` nothing
but ``unibind.schema.errors`` (and only the third-party packages their docstrings name), and only
``schema/settings.py`` reads ``UNIBIND_*`` variables from the environment.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = ("schema", "indexer", "retrieval", "migrations")

# Top to bottom; a subpackage may import its own layer's modules, and any subpackage in a lower layer.
LAYERS: dict[str, list[set[str]]] = {
    "indexer": [{"training"}, {"gallery"}, {"modalities"}, {"store"}, {"index"}, {"knowledge"}, {"encoders", "readers"}, {"runtime"}],
    "retrieval": [{"cli"}, {"service"}, {"plots"}, {"evaluation"}, {"recognition", "search"}, {"centres"}],
}
TOP_ORDER = ["retrieval", "indexer", "schema"]  # migrations may import schema; nothing imports migrations


def modules() -> list[tuple[str, Path]]:
    out = []
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out.append(("unibind." + ".".join(parts), path))
    return out


def imports_of(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            found.append((node.lineno, "." * node.level + (node.module or "")))
    return found


def layer_index(top: str, sub: str) -> int | None:
    for i, group in enumerate(LAYERS.get(top, [])):
        if sub in group:
            return i
    return None


def violation(importer: str, imported: str) -> str | None:
    """Why ``importer`` may not import ``imported`` (both full ``unibind.`` names), or None."""
    a, b = importer.split(".")[1:], imported.split(".")[1:]
    if not b:
        return None
    if b[0] == "migrations" and a[0] != "migrations":
        return "nothing imports the migrations"
    if a[0] != b[0]:
        if a[0] == "migrations":
            return None if b[0] == "schema" else "migrations import only unibind.schema"
        if TOP_ORDER.index(b[0]) < TOP_ORDER.index(a[0]):
            return f"unibind.{a[0]} may not import unibind.{b[0]} (retrieval -> indexer -> schema)"
        return None
    top = a[0]
    if top not in LAYERS or len(a) < 2 or len(b) < 2:
        return None
    la, lb = layer_index(top, a[1]), layer_index(top, b[1])
    if la is None or lb is None or a[1] == b[1]:
        return None
    if lb <= la:
        return f"unibind.{top}.{a[1]} may not import unibind.{top}.{b[1]} (a sibling or a higher layer)"
    return None


def test_every_subpackage_is_in_a_layer_and_says_what_it_may_import() -> None:
    for top, layers in LAYERS.items():
        subs = {p.name for p in (ROOT / top).iterdir() if (p / "__init__.py").exists()}
        listed = set().union(*layers)
        assert subs == listed, f"unibind.{top}: subpackages {sorted(subs)} vs layers {sorted(listed)}"
        for sub in subs:
            doc = ast.get_docstring(ast.parse((ROOT / top / sub / "__init__.py").read_text()))
            assert doc and "May import" in doc, f"{top}/{sub}/__init__.py must say what lives there and what it may import"


def test_every_top_level_package_says_what_it_may_import() -> None:
    for folder in FOLDERS:
        doc = ast.get_docstring(ast.parse((ROOT / folder / "__init__.py").read_text()))
        assert doc and any(line.startswith("May import") for line in doc.splitlines()), (
            f"{folder}/__init__.py must say what lives there and have a 'May import' line")


# The narrower promises of the bottom layers' docstrings: (what they may import from unibind, besides their own
# subpackage; the third-party packages they may import, besides the standard library; None: not checked).
NARROW: dict[str, tuple[tuple[str, ...], frozenset[str] | None]] = {
    "unibind.schema": (("unibind.schema",), None),
    "unibind.indexer.readers": (("unibind.schema.errors",), frozenset({"numpy", "torch"})),
    "unibind.indexer.runtime": (("unibind.schema.errors",), frozenset({"numpy", "torch", "faiss"})),
}


def narrow_violations(package: str, allowed: tuple[str, ...], third_party: frozenset[str] | None,
                      among: list[tuple[str, Path]]) -> list[str]:
    import sys

    bad = []
    for name, path in among:
        if name != package and not name.startswith(package + "."):
            continue
        for line, imported in imports_of(path):
            top = imported.split(".")[0]
            where = f"{path.name}:{line}: {imported}"
            if top == "unibind":
                ok = [imported == a or imported.startswith(a + ".") for a in (package, *allowed)]
                if not any(ok):
                    bad.append(f"{where}: {package} may import from unibind only {', '.join(allowed)}")
            elif third_party is not None and top not in sys.stdlib_module_names and top not in third_party:
                bad.append(f"{where}: {package} may import only the standard library and {sorted(third_party)}")
    return bad


@pytest.mark.parametrize("package", list(NARROW))
def test_the_bottom_layers_import_only_what_their_docstrings_say(package: str) -> None:
    """schema imports nothing of unibind outside schema; readers and runtime nothing but unibind.schema.errors
    (and their own modules), and no third-party package their docstring does not name."""
    allowed, third_party = NARROW[package]
    own = [(name, path) for name, path in modules() if name == package or name.startswith(package + ".")]
    assert own and any(imports_of(path) for _, path in own)  # the check has something to look at
    bad = narrow_violations(package, allowed, third_party, own)
    assert not bad, "\n".join(bad)


def test_the_narrow_check_names_a_wider_import(tmp_path: Path) -> None:
    module = tmp_path / "device.py"
    module.write_text("import os\nimport numpy\nimport pandas\nfrom unibind.schema.errors import InvalidInput\n"
                      "from unibind.indexer.runtime.vectors import normalize\n"
                      "def f():\n    from unibind.schema.settings import env_value\n")
    allowed, third_party = NARROW["unibind.indexer.runtime"]
    bad = narrow_violations("unibind.indexer.runtime", allowed, third_party, [("unibind.indexer.runtime.device", module)])
    assert [b.split(": ")[1] for b in bad] == ["pandas", "unibind.schema.settings"]


def environment_reads(path: Path) -> list[tuple[int, str]]:
    """Where a module reads the environment: ``os.getenv``, ``os.environ.get`` / ``[...]`` / ``in``, or the
    settings' ``env_value``; a constant key that is not a ``UNIBIND_*`` variable is not counted (a library's own
    switch, e.g. ``OPENBLAS_CORETYPE``)."""
    def unibind_key(node: ast.AST | None) -> bool:
        return not (isinstance(node, ast.Constant) and isinstance(node.value, str)
                    and not node.value.startswith("UNIBIND_"))

    def is_environ(node: ast.AST) -> bool:
        return isinstance(node, ast.Attribute) and node.attr == "environ"

    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Name) and node.id == "env_value" or (
                isinstance(node, ast.alias) and node.name == "env_value"):
            found.append((getattr(node, "lineno", 0), "env_value"))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            f = node.func
            key = node.args[0] if node.args else None
            if (f.attr == "getenv" or (is_environ(f.value) and f.attr in ("get", "setdefault", "pop"))) and (
                    unibind_key(key)):
                found.append((node.lineno, ast.unparse(node)))
            elif is_environ(f.value) and f.attr in ("items", "keys", "values", "copy"):
                found.append((node.lineno, ast.unparse(node)))
        elif isinstance(node, ast.Subscript) and is_environ(node.value) and isinstance(node.ctx, ast.Load) \
                and unibind_key(node.slice):
            found.append((node.lineno, ast.unparse(node)))
        elif isinstance(node, ast.Compare) and any(is_environ(c) for c in node.comparators) and unibind_key(node.left):
            found.append((node.lineno, ast.unparse(node)))
    return found


def test_only_the_settings_read_the_unibind_variables() -> None:
    """``schema/settings.py`` reads every ``UNIBIND_*`` variable, once; the rest of the library (the device
    included) is handed the values, so a flag and its variable mean the same everywhere."""
    settings = ROOT / "schema" / "settings.py"
    bad = [f"{path.relative_to(ROOT)}:{line}: {what}" for _, path in modules() if path != settings
           for line, what in environment_reads(path)]
    assert not bad, "only schema/settings.py reads the environment:\n" + "\n".join(bad)


def test_the_environment_check_sees_each_way_of_reading_it(tmp_path: Path) -> None:
    module = tmp_path / "reader.py"
    module.write_text("import os\nfrom unibind.schema.settings import env_value\n"
                      "a = env_value('device')\nb = os.environ.get('UNIBIND_DEVICE')\nc = os.getenv('UNIBIND_HOME')\n"
                      "d = os.environ['UNIBIND_FP16']\ne = 'UNIBIND_PORT' in os.environ\nf = os.environ.get(name)\n"
                      "os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')\ng = 'OPENBLAS_CORETYPE' in os.environ\n")
    assert sorted({line for line, _ in environment_reads(module)}) == [2, 3, 4, 5, 6, 7, 8]


def test_one_import_name() -> None:
    """Code imports the project only as ``unibind.…``: a bare ``schema`` would collide with the PyPI package."""
    bad = []
    for name, path in modules() + [(f"tests.{p.stem}", p) for p in (ROOT / "tests").glob("*.py")] + [
            (f"bench.{p.stem}", p) for p in (ROOT / "bench").glob("*.py")]:
        for line, imported in imports_of(path):
            if imported.startswith("."):
                bad.append(f"{path.relative_to(ROOT)}:{line}: relative import {imported!r}; write unibind.…")
            elif imported.split(".")[0] in FOLDERS:
                bad.append(f"{path.relative_to(ROOT)}:{line}: import {imported!r}; write unibind.{imported}")
    assert not bad, "\n".join(bad)


def test_imports_go_down_the_layers() -> None:
    bad = []
    for name, path in modules():
        for line, imported in imports_of(path):
            if imported.startswith("unibind."):
                why = violation(name, imported)
                if why:
                    bad.append(f"{path.relative_to(ROOT)}:{line}: {imported}: {why}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("importer,imported", [
    ("unibind.schema.models", "unibind.indexer.store.ingest"),
    ("unibind.indexer.index.segments", "unibind.retrieval.cli.main"),
    ("unibind.indexer.index.segments", "unibind.indexer.store.vacuum"),
    ("unibind.indexer.runtime.device", "unibind.indexer.encoders.factory"),
    ("unibind.indexer.encoders.factory", "unibind.indexer.readers.corpus"),
    ("unibind.retrieval.centres.builder", "unibind.retrieval.recognition.engine"),
    ("unibind.retrieval.service.app", "unibind.retrieval.cli.main"),
    ("unibind.indexer.store.ingest", "unibind.migrations.env"),
])
def test_the_contract_catches_an_upward_import(importer: str, imported: str) -> None:
    assert violation(importer, imported)


@pytest.mark.parametrize("importer,imported", [
    ("unibind.retrieval.cli.main", "unibind.retrieval.service.runner"),
    ("unibind.indexer.training.from_pairs", "unibind.indexer.gallery.items"),
    ("unibind.indexer.store.ingest", "unibind.schema.models"),
    ("unibind.migrations.env", "unibind.schema.models"),
])
def test_the_contract_allows_a_downward_import(importer: str, imported: str) -> None:
    assert violation(importer, imported) is None
