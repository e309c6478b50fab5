"""Datasets of files: ``imagefolder:DIR`` (torchvision's layout), ``csv:FILE`` and ``jsonl:FILE`` (a path, a text or a
feature row, and a label per line)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from unibind.retrieval.evaluation.datasets.base import (
    IMAGE_SUFFIXES,
    BadSamples,
    Batch,
    LabelIndex,
    LabelledDataset,
    file_digest,
    listing_digest,
    open_image,
)
from unibind.schema.errors import InvalidInput

INPUT_FIELDS = {"image": "image", "path": "image", "filepath": "image", "text": "text", "row": "features"}
LABEL_FIELDS = ("label", "cls", "class")


class ImageFolder(LabelledDataset):
    """One sub-folder per class (sorted names = class indices, as torchvision's ``ImageFolder``); images anywhere
    below it. ``class_names``: the names of classes 0, 1, ... (the folders, sorted, are the indices)."""

    kind = "image"

    def __init__(self, root: str | Path, class_names: list[str] | None = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder not found: {self.root}")
        folders = sorted(p for p in self.root.iterdir() if p.is_dir())
        if not folders:
            raise InvalidInput(f"{self.root}: no class folders (expected one sub-folder per class)")
        if class_names is not None and len(class_names) != len(folders):
            raise InvalidInput(f"{self.root}: {len(folders)} class folders but {len(class_names)} class names")
        self.classes = class_names or [p.name for p in folders]
        self.name = self.root.name
        self.files: list[tuple[Path, int]] = []
        self.empty: list[Path] = []
        for i, folder in enumerate(folders):
            found = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not found:
                self.empty.append(folder)
            self.files += [(p, i) for p in found]

    @property
    def size(self) -> int:
        return len(self.files)

    def digest(self) -> str:
        return listing_digest([p for p, _ in self.files], self.root, extra="\n".join(self.classes))

    def batches(self, batch_size: int, bad: BadSamples) -> Iterator[Batch]:
        for folder in self.empty:
            bad.reject(f"{folder}: class folder has no images")
        for start in range(0, len(self.files), batch_size):
            images, labels = [], []
            for path, label in self.files[start : start + batch_size]:
                image = open_image(path, str(path), bad)
                if image is not None:
                    images.append(image)
                    labels.append(label)
            yield Batch(images, np.asarray(labels, dtype=np.int64))


class Table(LabelledDataset):
    """A CSV (with a header) or JSONL file: per line an ``image`` (``path``/``filepath``), a ``text`` or a feature
    ``row`` (of ``features``), and a ``label`` (``cls``/``class``): a class name, or an index with ``class_names``.
    Image paths are relative to the file's folder. Without ``class_names`` the classes are the labels, sorted."""

    def __init__(self, path: str | Path, fmt: str, class_names: list[str] | None = None,
                 features: np.ndarray | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"dataset file not found: {self.path}")
        self.fmt, self.features, self.name = fmt, features, self.path.stem
        self.input_field, self.label_field = self._fields()
        self.kind = INPUT_FIELDS[self.input_field]
        if self.kind == "features" and features is None:
            raise InvalidInput(f"{self.path}: rows of field 'row' need --features FILE.npy (the rows they index)")
        if self.kind != "features" and features is not None:
            raise InvalidInput(f"{self.path}: --features goes with a field 'row'; this file has {self.input_field!r}")
        if class_names is None:
            labels = sorted({str(r.get(self.label_field, "")).strip() for _, r in self._rows()} - {""})
            if not labels:
                raise InvalidInput(f"{self.path}: no labels")
            class_names = labels
        self.classes = class_names
        self.index = LabelIndex(self.classes, indices=True)
        self._size = sum(1 for _ in self._rows())

    def _rows(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """(line number, row) of each non-empty line; malformed lines are errors naming the line."""
        with open(self.path, encoding="utf-8-sig", newline="") as f:
            if self.fmt == "csv":
                reader = csv.DictReader(f)
                for row in reader:
                    if any(v for v in row.values() if isinstance(v, str) and v.strip()):
                        yield reader.line_num, row
                return
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise InvalidInput(f"{self.path}:{n}: invalid JSON ({e.msg})") from e
                if not isinstance(row, dict):
                    raise InvalidInput(f"{self.path}:{n}: each line must be a JSON object with an input and a label")
                yield n, row

    def _fields(self) -> tuple[str, str]:
        for _, row in self._rows():
            inputs = [k for k in INPUT_FIELDS if k in row]
            labels = [k for k in LABEL_FIELDS if k in row]
            if len(inputs) != 1 or not labels:
                raise InvalidInput(f"{self.path}: each line needs one of the fields {', '.join(INPUT_FIELDS)} and "
                                   f"a label ({', '.join(LABEL_FIELDS)}); the first has {', '.join(row) or 'none'}")
            return inputs[0], labels[0]
        raise InvalidInput(f"{self.path}: no samples")

    @property
    def size(self) -> int:
        return self._size

    def digest(self) -> str:
        return file_digest(self.path, extra="\n".join(self.classes))

    def _input(self, value: Any, where: str, bad: BadSamples) -> Any | None:
        if self.kind == "image":
            if not isinstance(value, str) or not value.strip():
                bad.reject(f"{where}: field {self.input_field!r} must be an image path")
                return None
            p = Path(value.strip())
            return open_image(p if p.is_absolute() else self.path.resolve().parent / p, f"{where}: {value}", bad)
        if self.kind == "text":
            if not isinstance(value, str) or not value.strip():
                bad.reject(f"{where}: field 'text' must be a non-empty string")
                return None
            return value.strip()
        assert self.features is not None
        n = len(self.features)
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < n:
            bad.reject(f"{where}: field 'row' must be an integer in 0..{n - 1} (the features file's rows), got {value!r}")
            return None
        return value

    def batches(self, batch_size: int, bad: BadSamples) -> Iterator[Batch]:
        inputs: list[Any] = []
        labels: list[int] = []
        for n, row in self._rows():
            where = f"{self.path}:{n}"
            label = self.index(row.get(self.label_field), where, bad)
            value = self._input(row.get(self.input_field), where, bad) if label is not None else None
            if value is None:
                continue
            inputs.append(value)
            labels.append(label)  # type: ignore[arg-type]  # not None: checked above
            if len(inputs) == batch_size:
                yield self._batch(inputs, labels)
                inputs, labels = [], []
        if inputs:
            yield self._batch(inputs, labels)

    def _batch(self, inputs: list[Any], labels: list[int]) -> Batch:
        if self.kind == "features":
            assert self.features is not None
            rows = np.asarray(inputs, dtype=np.int64)
            return Batch(np.asarray(self.features[rows], dtype=np.float32), np.asarray(labels, dtype=np.int64))
        return Batch(inputs, np.asarray(labels, dtype=np.int64))
