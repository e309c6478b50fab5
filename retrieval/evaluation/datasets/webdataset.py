"""``webdataset:PATTERN``: tar shards read as a stream, as CLIP_benchmark's ``wds_*`` mirrors are laid out: per sample
an image entry and a ``cls`` (class index) or ``txt`` (class name) entry sharing the key before the first dot; the
class names from ``--class-names``, else ``classnames.txt`` beside the shards or one folder up."""

from __future__ import annotations

import glob
import re
import tarfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from unibind.retrieval.evaluation.datasets.base import (
    IMAGE_SUFFIXES,
    BadSamples,
    Batch,
    LabelIndex,
    LabelledDataset,
    listing_digest,
    open_image,
    read_class_names,
)
from unibind.schema.errors import InvalidInput

CLASS_NAMES_FILE = "classnames.txt"
_BRACES = re.compile(r"\{(\d+)\.\.(\d+)\}")


def expand_shards(pattern: str) -> list[Path]:
    """``shard-{000000..000009}.tar`` (webdataset's brace range, zero padding kept) or a glob, in order."""
    m = _BRACES.search(pattern)
    if m:
        lo, hi = m.group(1), m.group(2)
        names = [pattern[: m.start()] + str(i).zfill(len(lo)) + pattern[m.end():] for i in range(int(lo), int(hi) + 1)]
        missing = [n for n in names if not Path(n).is_file()]
        if missing:
            raise FileNotFoundError(f"shard not found: {missing[0]} ({len(missing)} of {len(names)} missing)")
        return [Path(n) for n in names]
    found = sorted(glob.glob(pattern))
    if not found:
        raise FileNotFoundError(f"no shards match {pattern}")
    return [Path(n) for n in found]


class WebDataset(LabelledDataset):
    kind = "image"

    def __init__(self, pattern: str, class_names: list[str] | None = None) -> None:
        self.shards = expand_shards(pattern)
        self.root = self.shards[0].resolve().parent
        if class_names is None:
            for folder in (self.root, self.root.parent):
                if (folder / CLASS_NAMES_FILE).is_file():
                    class_names = read_class_names(folder / CLASS_NAMES_FILE)
                    break
            else:
                raise InvalidInput(f"{pattern}: no {CLASS_NAMES_FILE} beside the shards or one folder up: give "
                                   "--class-names FILE (one class name per line, line 1 = class 0)")
        self.classes = class_names
        self.name = self.root.name
        self.index = LabelIndex(self.classes, indices=False)

    def digest(self) -> str:
        return listing_digest([s.resolve() for s in self.shards], Path("/"), extra="\n".join(self.classes))

    def _samples(self, bad: BadSamples) -> Iterator[tuple[str, dict[str, bytes]]]:
        """(where, {extension: bytes}) per sample key, streamed shard by shard."""
        for shard in self.shards:
            try:
                with tarfile.open(shard, mode="r|*") as tar:
                    key, entries = None, {}
                    for member in tar:
                        if not member.isfile():
                            continue
                        stem, _, ext = Path(member.name).name.partition(".")
                        name = str(Path(member.name).parent / stem)
                        if name != key:
                            if key is not None:
                                yield f"{shard}:{key}", entries
                            key, entries = name, {}
                        f = tar.extractfile(member)
                        entries[ext.lower()] = f.read() if f is not None else b""
                    if key is not None:
                        yield f"{shard}:{key}", entries
            except tarfile.TarError as e:
                bad.reject(f"{shard}: not a readable tar shard ({e})")

    def _label(self, where: str, entries: dict[str, bytes], bad: BadSamples) -> int | None:
        if "cls" in entries:
            text = entries["cls"].decode("utf-8", "replace").strip()
            if not text.isdigit() or not 0 <= int(text) < len(self.classes):
                bad.reject(f"{where}: cls {text!r} is not a class index in 0..{len(self.classes) - 1}")
                return None
            return int(text)
        if "txt" in entries:
            return self.index(entries["txt"].decode("utf-8", "replace").strip(), where, bad)
        bad.reject(f"{where}: no 'cls' or 'txt' entry (the label)")
        return None

    def batches(self, batch_size: int, bad: BadSamples) -> Iterator[Batch]:
        images, labels = [], []
        for where, entries in self._samples(bad):
            ext = next((e for e in entries if f".{e.rsplit('.', 1)[-1]}" in IMAGE_SUFFIXES), None)
            if ext is None:
                if set(entries) - {"json", "__key__"}:  # a sample of metadata only is not a sample
                    bad.reject(f"{where}: no image entry ({', '.join(sorted(entries))})")
                continue
            label = self._label(where, entries, bad)
            image = open_image(entries[ext], f"{where}.{ext}", bad) if label is not None else None
            if image is None:
                continue
            images.append(image)
            labels.append(label)
            if len(images) == batch_size:
                yield Batch(images, np.asarray(labels, dtype=np.int64))
                images, labels = [], []
        if images:
            yield Batch(images, np.asarray(labels, dtype=np.int64))
