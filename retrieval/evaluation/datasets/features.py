"""``features:FILE.npy`` with ``--labels FILE``: rows of a feature modality's vectors (read memory-mapped, a batch at a
time) and one label per line (a class name, or an index with ``--class-names``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from unibind.retrieval.evaluation.datasets.base import BadSamples, Batch, LabelIndex, LabelledDataset, file_digest
from unibind.schema.errors import InvalidInput


class FeatureRows(LabelledDataset):
    kind = "features"

    def __init__(self, path: str | Path, labels: str | Path | None, class_names: list[str] | None = None) -> None:
        self.path = Path(path)
        if labels is None:
            raise InvalidInput(f"features:{self.path} needs --labels FILE (one label per line, row i = line i + 1)")
        self.labels_path = Path(labels)
        for p in (self.path, self.labels_path):
            if not p.is_file():
                raise FileNotFoundError(f"file not found: {p}")
        try:
            self.vectors = np.load(self.path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError) as e:
            raise InvalidInput(f"{self.path}: not a NumPy .npy file ({e})") from e
        if self.vectors.ndim != 2 or not np.issubdtype(self.vectors.dtype, np.floating):
            raise InvalidInput(f"{self.path}: expected [N, d] floating-point rows, got {self.vectors.dtype} "
                               f"{self.vectors.shape}")
        self.raw = [line.strip() for line in self.labels_path.read_text(encoding="utf-8-sig").splitlines()]
        while self.raw and not self.raw[-1]:
            self.raw.pop()
        if len(self.raw) != len(self.vectors):
            raise InvalidInput(f"{self.labels_path}: {len(self.raw)} labels for the {len(self.vectors)} rows of "
                               f"{self.path}")
        self.classes = class_names or sorted(set(self.raw) - {""})
        self.index = LabelIndex(self.classes, indices=class_names is not None)
        self.name = self.path.stem

    @property
    def size(self) -> int:
        return len(self.raw)

    def digest(self) -> str:
        return file_digest(self.path, self.labels_path, extra="\n".join(self.classes))

    def batches(self, batch_size: int, bad: BadSamples) -> Iterator[Batch]:
        for start in range(0, len(self.raw), batch_size):
            rows, labels = [], []
            for i in range(start, min(start + batch_size, len(self.raw))):
                label = self.index(self.raw[i], f"{self.labels_path}:{i + 1}", bad)
                if label is not None:
                    rows.append(i)
                    labels.append(label)
            if rows:
                yield Batch(np.asarray(self.vectors[rows], dtype=np.float32), np.asarray(labels, dtype=np.int64))
