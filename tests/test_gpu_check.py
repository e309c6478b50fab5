"""bench/gpu_check.py (issue 12 item 5) runs with torch and numpy only: a quick CPU run from the repository
tree (as on the lent GPU machine, where unibind is not installed) is exact and imports neither faiss nor
SQLAlchemy."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_gpu_check_quick_cpu(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--quick", "--device", "cpu", "--from-tree"],
        check=False, cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "unibind from repository tree via" in out, out
    exact = [ln for ln in proc.stdout.splitlines() if ln.startswith("exactness:")]
    assert exact and "0 mismatch(es) vs the CPU dense engine, 0 vs the float64 NumPy brute force" in exact[0], out
    assert "imported: faiss=False sqlalchemy=False" in proc.stdout, out
    assert proc.stdout.rstrip().endswith("OK"), out
