"""The optional extras install next to the project's FAISS build without replacing it.

milvus-lite's wheel asks for faiss-cpu, whose files are the same ``faiss/`` files as faiss-gpu's: installed the
ordinary way it would silently swap the GPU build for a CPU-only one. ``unibind[milvus]`` is the client only and
``unibind[milvus-lite]`` milvus-lite's other dependencies; milvus-lite itself goes in with ``--no-deps`` (``make
extras``). This checks the result on the installed environment: no faiss-cpu, and every file of faiss-gpu's package
as faiss-gpu's wheel wrote it.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata as md
import os
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _installed(name: str) -> bool:
    try:
        md.distribution(name)
    except md.PackageNotFoundError:
        return False
    return True


def test_the_milvus_extras_leave_faiss_gpu_in_place() -> None:
    if not (_installed("pymilvus") and _installed("milvus-lite")):
        if IN_CI:
            pytest.fail("CI=true: make test installs the milvus and milvus-lite extras, but they are not installed")
        pytest.skip("the milvus extras are not installed (make extras)")
    assert not _installed("faiss-cpu"), "faiss-cpu is installed: its files replace faiss-gpu's (see docs/store.md)"
    gpu = md.distribution("faiss-gpu")
    checked = 0
    for f in gpu.files or []:
        if f.hash is None or f.hash.mode != "sha256" or not str(f).startswith("faiss"):
            continue
        data = Path(str(gpu.locate_file(f))).read_bytes()
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        assert digest == f.hash.value, f"{f} is not the file faiss-gpu installed"
        checked += 1
    assert checked > 0
    import faiss

    assert Path(faiss.__file__).resolve() == Path(str(gpu.locate_file("faiss/__init__.py"))).resolve()
    # and milvus-lite runs on that faiss module
    import milvus_lite  # noqa: F401
    from pymilvus import MilvusClient  # noqa: F401


def test_the_milvus_extra_is_the_client_only() -> None:
    """``unibind[milvus]`` (a server) needs no milvus-lite and no faiss-cpu; ``unibind[milvus-lite]`` names neither
    milvus-lite (installed without its dependencies) nor faiss-cpu."""
    requires = md.requires("unibind") or []
    extra = {r.split(";")[0].strip(): r for r in requires if "extra ==" in r}
    milvus = [r for r in requires if 'extra == "milvus"' in r]
    lite = [r for r in requires if 'extra == "milvus-lite"' in r]
    assert milvus and all(r.startswith("pymilvus") for r in milvus), milvus
    assert lite and not any(r.startswith(("milvus-lite", "milvus_lite", "faiss")) for r in lite), lite
    assert extra
