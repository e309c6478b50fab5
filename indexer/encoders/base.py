"""The frozen-encoder interface: inputs in, L2-normalised float32 vectors out, in batches."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from unibind.indexer.runtime.device import Device
from unibind.indexer.runtime.vectors import normalize
from unibind.schema.errors import InvalidInput

log = logging.getLogger(__name__)

PROGRESS_MIN_ITEMS = 512  # show a progress bar when encoding at least this many inputs


def batched_encode(
    items: Sequence[Any],
    encode_batch: Callable[[Sequence[Any]], np.ndarray],
    *,
    dim: int,
    batch_size: int,
    progress: bool | None,
    desc: str,
) -> np.ndarray:
    """Run ``encode_batch`` over ``items`` in slices; returns normalised [N, dim] float32."""
    if batch_size < 1:
        raise InvalidInput(f"batch_size must be >= 1, got {batch_size}")
    out = np.empty((len(items), dim), dtype=np.float32)
    show = len(items) >= PROGRESS_MIN_ITEMS if progress is None else progress
    with tqdm(total=len(items), desc=desc, unit="item", disable=not show, leave=False) as bar:
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            out[start : start + len(chunk)] = normalize(encode_batch(chunk))
            bar.update(len(chunk))
    return out


class Encoder(ABC):
    """A frozen model for one or more modalities. Subclasses implement the ``_*_batch`` methods."""

    distributed: bool = False  # True: one call is spread over workers (Ray), so callers pass whole chunks

    spec: str
    dim: int
    device: Device
    modalities: frozenset[str] = frozenset({"text"})

    def encode_text(self, texts: Sequence[str], *, batch_size: int = 256, progress: bool | None = None) -> np.ndarray:
        """[N] strings → [N, dim] float32, unit rows."""
        return batched_encode(
            list(texts), self._text_batch, dim=self.dim, batch_size=batch_size, progress=progress, desc="encode text"
        )

    def encode_images(self, images: Sequence[Any], *, batch_size: int = 64, progress: bool | None = None) -> np.ndarray:
        """[N] PIL images (or paths) → [N, dim] float32, unit rows."""
        if "image" not in self.modalities:
            raise InvalidInput(f"encoder {self.spec} has no image tower (modalities: {', '.join(sorted(self.modalities))})")
        return batched_encode(
            list(images), self._image_batch, dim=self.dim, batch_size=batch_size, progress=progress, desc="encode images"
        )

    def count_tokens(self, text: str) -> int | None:
        """Tokens the text tower sees for ``text`` (special tokens included), or None when the encoder cannot
        say; compared with :attr:`context_length` by :meth:`fit_text`."""
        return None

    @property
    def context_length(self) -> int | None:
        """The most tokens the text tower reads (longer texts are truncated when encoded); None: unknown."""
        return None

    def fit_text(self, text: str) -> str:
        """``text`` unchanged when its tokens fit :attr:`context_length`, else its longest prefix of whole words
        that fits (what the encoder would read anyway, cut at a word instead of mid-word), trailing ``,;:`` removed.
        Knowledge-base cleaning stores this prefix, so a stored description is exactly what its vector encodes."""
        limit = self.context_length
        if limit is None:
            return text
        count = self.count_tokens(text)
        if count is None or count <= limit:
            return text
        words = text.split()
        lo, hi = 0, len(words)  # the largest n whose first n words fit: fits(lo), not fits(hi)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            n = self.count_tokens(" ".join(words[:mid]))
            if n is not None and n <= limit:
                lo = mid
            else:
                hi = mid
        return " ".join(words[:lo]).rstrip(",;:")

    @abstractmethod
    def _text_batch(self, texts: Sequence[str]) -> np.ndarray: ...

    def _image_batch(self, images: Sequence[Any]) -> np.ndarray:
        raise NotImplementedError


def load_pil(image: Any) -> Any:
    """A PIL image from a PIL image or a path; unreadable files raise InvalidInput naming the file."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(image, Image.Image):
        return image.convert("RGB")
    try:
        with Image.open(image) as im:
            return im.convert("RGB")
    except FileNotFoundError as e:
        raise FileNotFoundError(f"image file not found: {image}") from e
    except (UnidentifiedImageError, OSError) as e:
        raise InvalidInput(f"{image}: not a readable image ({e})") from e
