"""The one place that picks the compute device for torch and FAISS. Everything else receives a Device.

The preference comes from the caller (the CLI and the service pass ``Settings.device``: ``--device``, else
``$UNIBIND_DEVICE``, else ``auto``); nothing here reads the environment.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from unibind.schema.errors import InvalidInput, Unavailable

log = logging.getLogger(__name__)

__all__ = ["Device", "select_device"]


@dataclass(frozen=True)
class Device:
    """Where work runs: a torch device string and, when FAISS sees a GPU, which one it uses."""

    torch: str = "cpu"  # "cpu" or "cuda:N"
    faiss_gpu: int | None = None  # GPU number for FAISS indexes, None for CPU
    faiss_fp16: bool = False  # store vectors as float16 on the GPU (halves memory)

    @property
    def is_cuda(self) -> bool:
        return self.torch.startswith("cuda")

    def describe(self) -> str:
        faiss_part = f"faiss gpu {self.faiss_gpu}{' fp16' if self.faiss_fp16 else ''}" if self.faiss_gpu is not None else "faiss cpu"
        return f"torch {self.torch}, {faiss_part}"


def _faiss_gpus() -> int:
    try:
        from unibind.indexer.runtime.faiss_lib import faiss

        return int(faiss.get_num_gpus()) if hasattr(faiss, "get_num_gpus") else 0
    except Exception as e:  # a faiss build without GPU support, or a broken CUDA runtime
        log.debug("faiss GPU probe failed: %s", e)
        return 0


def select_device(preference: str = "auto", *, faiss_fp16: bool = False) -> Device:
    """Resolve ``auto`` / ``cpu`` / ``cuda`` / ``cuda:N``.

    ``auto`` uses the first GPU that torch sees, and FAISS's GPU indexes when faiss sees one. ``preference`` is
    the caller's (``Settings.device`` for the CLI and the service); the environment is not consulted here.
    """
    pref = preference.strip().lower()
    if pref == "cpu":
        return Device()
    if pref not in ("auto", "cuda") and not (pref.startswith("cuda:") and pref[5:].isdigit()):
        raise InvalidInput(f"device {preference!r} is not one of auto, cpu, cuda, cuda:N")
    import torch

    has_cuda = torch.cuda.is_available()
    if not has_cuda:
        if pref != "auto":
            raise Unavailable(f"device {pref!r} was asked for but torch sees no CUDA GPU")
        return Device()
    index = int(pref[5:]) if pref.startswith("cuda:") else 0
    if index >= torch.cuda.device_count():
        raise Unavailable(f"device {pref!r}: torch sees only {torch.cuda.device_count()} GPU(s)")
    n_faiss = _faiss_gpus()
    faiss_gpu = index if index < n_faiss else None
    device = Device(torch=f"cuda:{index}", faiss_gpu=faiss_gpu, faiss_fp16=faiss_fp16 and faiss_gpu is not None)
    log.info("device: %s", device.describe())
    return device
