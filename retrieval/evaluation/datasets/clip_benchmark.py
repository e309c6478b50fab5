"""``clip_benchmark:NAME --dataset-root DIR``: a dataset of CLIP_benchmark (``pip install unibind[benchmark]``), with its
own class names; offline when the root is already filled (its torchvision datasets check before they download)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from unibind.retrieval.evaluation.datasets.base import BadSamples, Batch, LabelledDataset
from unibind.schema.errors import InvalidInput, Unavailable


class ClipBenchmarkDataset(LabelledDataset):
    kind = "image"

    def __init__(self, name: str, root: str | Path | None, split: str = "test") -> None:
        if root is None:
            raise InvalidInput(f"clip_benchmark:{name} needs --dataset-root DIR (where the dataset is, or goes)")
        try:
            from clip_benchmark.datasets.builder import build_dataset
        except ImportError as e:
            raise Unavailable(f"clip_benchmark:{name} needs clip_benchmark and its dependencies "
                              f"(pip install 'unibind[benchmark]'): {e}") from e
        self.root, self.split = Path(root), split
        try:
            self.dataset: Any = build_dataset(dataset_name=name, root=str(self.root), transform=None, split=split,
                                              download=True)
        except (RuntimeError, OSError, AssertionError, ValueError) as e:  # not there and not reachable, a bad split
            raise Unavailable(f"clip_benchmark:{name} under {self.root}: {e}") from e
        classes = getattr(self.dataset, "classes", None)
        if not classes:
            raise InvalidInput(f"clip_benchmark:{name} has no class names: not a classification dataset")
        self.classes, self.name = list(classes), name

    @property
    def size(self) -> int | None:
        try:
            return len(self.dataset)
        except TypeError:
            return None

    def digest(self) -> str:
        import hashlib

        return hashlib.sha256(f"clip_benchmark\0{self.name}\0{self.split}\0{self.root.resolve()}\0{self.size}".encode()
                              ).hexdigest()

    def batches(self, batch_size: int, bad: BadSamples) -> Iterator[Batch]:
        images, labels = [], []
        for i in range(len(self.dataset)):
            try:
                image, label = self.dataset[i]
            except (OSError, ValueError) as e:
                bad.reject(f"clip_benchmark:{self.name} sample {i}: not readable ({e})")
                continue
            images.append(image.convert("RGB"))
            labels.append(int(label))
            if len(images) == batch_size:
                yield Batch(images, np.asarray(labels, dtype=np.int64))
                images, labels = [], []
        if images:
            yield Batch(images, np.asarray(labels, dtype=np.int64))
