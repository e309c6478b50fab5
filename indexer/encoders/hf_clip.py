"""A transformers CLIPModel with its processor (hub id or a local save_pretrained folder)."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from unibind.indexer.runtime.device import Device
from unibind.indexer.encoders.base import Encoder, load_pil
from unibind.indexer.encoders.spec import EncoderSpec
from unibind.indexer.encoders.hub import offline_unless_reachable
from unibind.schema.errors import InvalidInput, Unavailable

log = logging.getLogger(__name__)


class HFClipEncoder(Encoder):
    modalities = frozenset({"text", "image"})

    def __init__(self, spec: EncoderSpec, device: Device) -> None:
        import torch
        from transformers import CLIPModel, CLIPProcessor
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

        self.spec = str(spec)
        self.device = device
        local = os.path.isdir(spec.name)
        if not local and (spec.name.startswith((".", "/", "~")) or os.sep in spec.name.strip("/").split("/", 1)[-1]):
            raise FileNotFoundError(f"hf model folder not found: {spec.name}")
        with offline_unless_reachable() as reachable:
            try:
                model = CLIPModel.from_pretrained(spec.name)
                processor = CLIPProcessor.from_pretrained(spec.name)
            except (OSError, ValueError) as e:
                if local:
                    raise InvalidInput(f"{spec.name}: not a transformers CLIP folder ({e})") from e
                where = "the model hub is unreachable and the model is not cached" if not reachable else str(e)
                raise Unavailable(
                    f"cannot fetch transformers model {spec.name!r}: {where}. Save it with "
                    f"CLIPModel.save_pretrained / CLIPProcessor.save_pretrained on a machine with network access "
                    f"and use --encoder hf:/path/to/folder"
                ) from e
        self._model = model.to(device.torch).eval()
        self._processor = processor
        self._torch = torch
        self.dim = int(model.config.projection_dim)
        # truncate to what the text tower can take, even when the tokenizer does not say (model_max_length unset)
        self._max_tokens = int(model.config.text_config.max_position_embeddings)

    @staticmethod
    def _features(out: Any) -> Any:
        # transformers 5 returns a model output with pooler_output; older versions a tensor
        return out if hasattr(out, "shape") else out.pooler_output

    @property
    def context_length(self) -> int | None:
        return self._max_tokens

    def count_tokens(self, text: str) -> int | None:
        return len(self._processor.tokenizer(text, verbose=False)["input_ids"])

    def _text_batch(self, texts: Sequence[str]) -> np.ndarray:
        torch = self._torch
        inputs = self._processor(
            text=list(texts), return_tensors="pt", padding=True, truncation=True, max_length=self._max_tokens
        )
        inputs = {k: v.to(self.device.torch) for k, v in inputs.items()}
        with torch.inference_mode():
            feats = self._features(self._model.get_text_features(**inputs))  # [B, d]
        return feats.float().cpu().numpy()

    def _image_batch(self, images: Sequence[Any]) -> np.ndarray:
        torch = self._torch
        inputs = self._processor(images=[load_pil(im) for im in images], return_tensors="pt")
        with torch.inference_mode():
            feats = self._features(self._model.get_image_features(pixel_values=inputs["pixel_values"].to(self.device.torch)))
        return feats.float().cpu().numpy()
