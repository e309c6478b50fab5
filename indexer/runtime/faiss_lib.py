"""FAISS, imported in one place with its CPU runtime tuned.

The faiss-gpu wheel bundles its own OpenBLAS, which misdetects some (virtual) x86 CPUs and falls
back to its slowest kernels; measured here, a flat search of 1,024 queries ran 2.5x slower than with
the right kernels. Unless the user set ``OPENBLAS_CORETYPE``, it is chosen from the CPU flags before
the library loads (NumPy's own OpenBLAS is loaded earlier and unaffected). FAISS also skips BLAS
for batches under ``distance_compute_blas_threshold`` (queries x dim < 128,000 by default); with
working kernels BLAS wins from much smaller batches, so the threshold is lowered.
"""

from __future__ import annotations

import os
import platform

BLAS_THRESHOLD = 4096


def _coretype() -> str | None:
    if platform.machine() not in ("x86_64", "AMD64"):
        return None
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return None
    if "avx512f" in flags:
        return "SkylakeX"
    if "avx2" in flags:
        return "Haswell"
    return None


if "OPENBLAS_CORETYPE" not in os.environ and (_core := _coretype()):
    os.environ["OPENBLAS_CORETYPE"] = _core

import faiss  # noqa: E402

faiss.cvar.distance_compute_blas_threshold = BLAS_THRESHOLD

__all__ = ["faiss"]
