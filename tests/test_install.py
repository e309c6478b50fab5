"""The optional Milvus extras leave the FAISS build that unibind installs in place: ``unibind[milvus]`` is the
client only, and milvus-lite is installed without its faiss-cpu dependency (whose wheel writes the same ``faiss/``
files as faiss-gpu and would replace the GPU build with a CPU-only one). Checked where faiss-gpu is installed (the
project's own dependency); under CI the extras are installed as the README says, so milvus-lite must be there too."""

from __future__ import annotations

import importlib.metadata as md
import os
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def installed(name: str) -> bool:
    try:
        md.distribution(name)
    except md.PackageNotFoundError:
        return False
    return True


def test_the_milvus_extras_name_no_faiss_build() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for extra in ("milvus", "milvus-lite"):
        assert not [d for d in extras[extra] if d.lower().startswith(("faiss", "milvus-lite"))], extra


def test_faiss_is_faiss_gpus_build_after_the_extras() -> None:
    if not installed("faiss-gpu"):
        pytest.skip("faiss-gpu is not installed here")
    if os.environ.get("CI") == "true":
        assert installed("pymilvus") and installed("milvus-lite"), "CI installs the Milvus extras (see .ci/run)"
    assert not installed("faiss-cpu"), ("faiss-cpu is installed beside faiss-gpu: its files replace faiss-gpu's; "
                                        "pip uninstall -y faiss-cpu && pip install --force-reinstall --no-deps faiss-gpu")
    import faiss

    assert hasattr(faiss, "StandardGpuResources")  # only faiss-gpu's build has the GPU classes
    if installed("milvus-lite"):
        import milvus_lite  # noqa: F401 - it runs on the faiss module faiss-gpu installs
