"""The package's shape as a contract: one import name, and imports that only go down the layers.

``unibind.retrieval`` may import ``unibind.indexer`` and ``unibind.schema``; ``unibind.indexer`` may import
``unibind.schema``; ``unibind.schema`` imports neither. Inside ``indexer`` and ``retrieval`` the subpackages
form layers too (each ``__init__`` docstring says what it may import). Every import counts, including
imports inside functions and under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = ("schema", "indexer", "retrieval", "migrations")

# Top to bottom; a subpackage may import its own layer's modules, and any subpackage in a lower layer.
LAYERS: dict[str, list[set[str]]] = {
    "indexer": [{"training"}, {"gallery"}, {"modalities"}, {"store"}, {"index"}, {"encoders", "readers"}, {"runtime"}],
    "retrieval": [{"cli"}, {"service"}, {"evaluation"}, {"recognition", "search"}, {"centres"}],
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
    ("unibind.indexer.index.stamped", "unibind.retrieval.cli.main"),
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
