"""A modality head: ``Linear(d_in, d)`` with bias, mapping a frozen encoder's output into the text space.

The weights live in NumPy (the query side needs no torch); training converts to and from ``torch.nn.Linear``.
On disk a head is a safetensors file with the tensors ``weight`` [d_out, d_in] and ``bias`` [d_out] (float32)
and string metadata, written atomically; its sha256 is what the metadata store records.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from unibind.indexer.index.files import write_atomically
from unibind.indexer.runtime.device import Device
from unibind.indexer.runtime.vectors import normalize
from unibind.schema.errors import Conflict, InvalidInput

if TYPE_CHECKING:
    import torch

TENSORS = ("weight", "bias")


class LinearHead:
    """``x ↦ normalize(x @ weight.T + bias)``; weight [d_out, d_in], bias [d_out], float32."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray) -> None:
        w = np.ascontiguousarray(weight, dtype=np.float32)
        b = np.ascontiguousarray(bias, dtype=np.float32)
        if w.ndim != 2 or w.shape[0] < 1 or w.shape[1] < 1:
            raise InvalidInput(f"head weight must be 2-D [d_out, d_in], got shape {w.shape}")
        if b.shape != (w.shape[0],):
            raise InvalidInput(f"head bias has shape {b.shape}, expected ({w.shape[0]},) to match weight {w.shape}")
        if not (np.isfinite(w).all() and np.isfinite(b).all()):
            raise InvalidInput("head weight or bias contains NaN or inf")
        self.weight, self.bias = w, b

    @property
    def d_in(self) -> int:
        return int(self.weight.shape[1])

    @property
    def d_out(self) -> int:
        return int(self.weight.shape[0])

    def __repr__(self) -> str:
        return f"LinearHead(d_in={self.d_in}, d_out={self.d_out})"

    @classmethod
    def init(cls, d_in: int, d_out: int, seed: int) -> LinearHead:
        """torch's default ``nn.Linear`` initialisation (U(±1/√d_in) for weight and bias) from ``seed``."""
        import torch

        if d_in < 1 or d_out < 1:
            raise InvalidInput(f"head dimensions must be >= 1, got d_in={d_in}, d_out={d_out}")
        g = torch.Generator().manual_seed(seed)
        bound = 1.0 / d_in**0.5  # kaiming_uniform_(a=√5) and the bias rule of nn.Linear.reset_parameters
        w = torch.empty(d_out, d_in).uniform_(-bound, bound, generator=g)  # [d_out, d_in]
        b = torch.empty(d_out).uniform_(-bound, bound, generator=g)  # [d_out]
        return cls(w.numpy(), b.numpy())

    def project(self, x: np.ndarray) -> np.ndarray:
        """[N, d_in] encoder features → [N, d_out] float32 unit rows (1-D input is one row)."""
        a = np.asarray(x, dtype=np.float32)
        if a.ndim == 1:
            a = a[None, :]
        if a.ndim != 2:
            raise InvalidInput(f"features must be 1-D or 2-D, got shape {a.shape}")
        if a.shape[1] != self.d_in:
            raise InvalidInput(f"features have {a.shape[1]} dimensions, the head expects {self.d_in}")
        return normalize(a @ self.weight.T + self.bias)  # [N, d_out]

    def to_torch(self, device: Device) -> torch.nn.Linear:
        """A ``torch.nn.Linear`` on ``device`` holding a copy of these weights (no RNG is consumed)."""
        import torch

        linear = torch.nn.Linear(self.d_in, self.d_out, bias=True, device="meta").to_empty(device=device.torch)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(self.weight))
            linear.bias.copy_(torch.from_numpy(self.bias))
        return linear

    @classmethod
    def from_torch(cls, linear: torch.nn.Linear) -> LinearHead:
        if linear.bias is None:
            raise ValueError("a head needs a Linear layer with bias")
        weight = linear.weight.detach().float().cpu().numpy().copy()  # [d_out, d_in]
        bias = linear.bias.detach().float().cpu().numpy().copy()  # [d_out]
        return cls(weight, bias)

    def save(self, path: Path, metadata: dict[str, str]) -> tuple[str, int]:
        """Write a safetensors file atomically (:func:`~unibind.indexer.index.files.write_atomically`).

        Returns (sha256, size) of the file written."""
        from safetensors.numpy import save

        bad = [k for k, v in metadata.items() if not (isinstance(k, str) and isinstance(v, str))]
        if bad:
            raise ValueError(f"head metadata must map str to str; not so for key(s) {', '.join(map(repr, bad))}")
        data = save({"weight": self.weight, "bias": self.bias}, metadata=dict(metadata))
        return write_atomically(Path(path), lambda tmp: tmp.write_bytes(data))

    @classmethod
    def load(cls, path: Path, *, expect_sha256: str | None = None) -> tuple[LinearHead, dict[str, str]]:
        """Read a head file; with ``expect_sha256`` the file must be the one recorded. Returns (head, metadata)."""
        from safetensors.numpy import load

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"head file not found: {path}")
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if expect_sha256 is not None and digest != expect_sha256:
            raise Conflict(f"{path}: file changed since it was recorded (sha256 {digest}, recorded {expect_sha256})")
        try:
            tensors = load(data)
            header_len = int.from_bytes(data[:8], "little")
            metadata = json.loads(data[8 : 8 + header_len]).get("__metadata__") or {}
        except Exception as e:  # safetensors raises its own SafetensorError, or ValueError/OSError on garbage
            raise InvalidInput(f"{path}: not a readable safetensors head file ({e})") from e
        missing = [t for t in TENSORS if t not in tensors]
        if missing:
            has = ", ".join(sorted(tensors)) or "none"
            raise InvalidInput(f"{path}: missing tensor(s) {', '.join(missing)} (has: {has})")
        for name in TENSORS:
            if not np.issubdtype(tensors[name].dtype, np.floating):
                raise InvalidInput(f"{path}: tensor {name} has dtype {tensors[name].dtype}, expected float32")
        try:
            head = cls(tensors["weight"], tensors["bias"])
        except ValueError as e:
            raise InvalidInput(f"{path}: {e}") from e
        return head, {str(k): str(v) for k, v in metadata.items()}
