"""What every labelled dataset reader shares: batches of inputs with class indices, bad samples, class-name files,
and matching a dataset's class names to the knowledge base's categories."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from unibind.schema.errors import InvalidInput

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp"})  # torchvision's
KINDS = ("image", "text", "features")
DIGEST_CHUNK = 1 << 20


@dataclass(frozen=True)
class Batch:
    """Samples of one kind: PIL images, texts, or feature rows ([b, d] array); ``labels`` are class indices."""

    inputs: list[Any] | np.ndarray
    labels: np.ndarray  # [b] int64


@dataclass
class BadSamples:
    """Where bad samples go: one clear error (the default), or counted and skipped (``--skip-bad``)."""

    skip: bool = False
    count: int = 0
    first: str | None = None
    seen: list[str] = field(default_factory=list, repr=False)

    def reject(self, message: str) -> None:
        """Raise ``message`` as the error, or count it when skipping."""
        if not self.skip:
            raise InvalidInput(f"{message} (--skip-bad counts and skips such samples)")
        self.count += 1
        self.first = self.first or message
        log.debug("skipped: %s", message)


class LabelledDataset(ABC):
    """A labelled dataset read as a stream of batches; only a batch's inputs are in memory at a time."""

    kind: str  # one of KINDS
    name: str  # how results name it (CLIP_benchmark's "dataset" field)
    classes: list[str]  # class index -> name

    @abstractmethod
    def digest(self) -> str:
        """A hex digest that changes when the dataset's files do (keys the cache of its encodings)."""

    @abstractmethod
    def batches(self, batch_size: int, bad: BadSamples) -> Iterator[Batch]:
        """The samples in a fixed order, ``batch_size`` at a time (fewer where bad ones were skipped)."""

    @property
    def size(self) -> int | None:
        """The number of samples, where known before reading (None for a stream)."""
        return None


def open_image(source: Any, where: str, bad: BadSamples) -> Any | None:
    """A PIL RGB image from a path or bytes, or None (counted) when it is unreadable and bad samples are skipped."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as im:
            return im.convert("RGB")
    except FileNotFoundError:
        bad.reject(f"{where}: image file not found")
    except (UnidentifiedImageError, OSError, ValueError) as e:
        bad.reject(f"{where}: not a readable image ({e})")
    return None


def file_digest(*paths: Path, extra: str = "") -> str:
    """sha256 over files' contents (and ``extra``)."""
    h = hashlib.sha256(extra.encode())
    for path in paths:
        h.update(str(path.name).encode() + b"\0")
        with open(path, "rb") as f:
            while chunk := f.read(DIGEST_CHUNK):
                h.update(chunk)
    return h.hexdigest()


def listing_digest(paths: Sequence[Path], root: Path, extra: str = "") -> str:
    """sha256 over files' relative paths, sizes and modification times: cheap for 50,000 images or large shards."""
    h = hashlib.sha256(extra.encode())
    for p in paths:
        st = p.stat()
        h.update(f"{p.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def read_class_names(path: str | Path) -> list[str]:
    """Class names by index: a text file with one name per line (line 1 = class 0), or a JSON list."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"class names file not found: {p}")
    text = p.read_text(encoding="utf-8-sig")
    if p.suffix == ".json":
        try:
            names = json.loads(text)
        except json.JSONDecodeError as e:
            raise InvalidInput(f"{p}: invalid JSON at line {e.lineno} ({e.msg})") from e
        if not isinstance(names, list) or not all(isinstance(n, str) and n.strip() for n in names):
            raise InvalidInput(f"{p}: expected a JSON list of non-empty class names")
        names = [n.strip() for n in names]
    else:
        names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise InvalidInput(f"{p}: no class names")
    return names


class LabelIndex:
    """Labels of samples → class indices: a class name, or an integer index when class names were given."""

    def __init__(self, classes: Sequence[str], *, indices: bool) -> None:
        self.classes = list(classes)
        self.position: dict[str, int] = {}
        self.repeated: set[str] = set()
        for i, c in enumerate(self.classes):
            if c in self.position:
                self.repeated.add(c)
            self.position.setdefault(c, i)
        self.indices = indices

    def __call__(self, value: Any, where: str, bad: BadSamples) -> int | None:
        if self.indices and (isinstance(value, int) and not isinstance(value, bool) or
                             isinstance(value, str) and value.strip().isdigit()):
            i = int(value)
            if 0 <= i < len(self.classes):
                return i
            bad.reject(f"{where}: class index {i} is not in 0..{len(self.classes) - 1}")
            return None
        if isinstance(value, str) and value.strip() in self.repeated:
            bad.reject(f"{where}: label {value.strip()!r} names more than one class: give its class index")
            return None
        if isinstance(value, str) and value.strip() in self.position:
            return self.position[value.strip()]
        if value is None or (isinstance(value, str) and not value.strip()):
            bad.reject(f"{where}: no label (every sample needs one)")
            return None
        bad.reject(f"{where}: unknown label {value!r} (not one of the {len(self.classes)} class names)")
        return None


def name_key(name: str) -> str:
    """A class name without case or separators: "Golden_Retriever" and "golden retriever" have the same key."""
    return re.sub(r"[\s_\-]+", " ", name.casefold()).strip()


def match_categories(classes: Sequence[str], categories: Sequence[str]) -> list[str | None]:
    """Each class's category of the knowledge base: the same name, else the one category whose name differs only
    in case and separators (space, ``_``, ``-``), else None (uncovered). Never a fuzzy match; a class that would
    match two categories is an error naming them. Two classes may match one category (ImageNet names two classes
    "missile" and two "sunglasses"): they get the same classifier."""
    exact = set(categories)
    by_key: dict[str, list[str]] = defaultdict(list)
    for c in categories:
        by_key[name_key(c)].append(c)
    out: list[str | None] = []
    for cls in classes:
        if cls in exact:
            out.append(cls)
            continue
        found = by_key.get(name_key(cls), [])
        if len(found) > 1:
            raise InvalidInput(f"class {cls!r} matches the categories {' and '.join(map(repr, found))}, which differ "
                               "only in case or separators: rename the class (--class-names) to the one meant")
        out.append(found[0] if found else None)
    return out
