"""open_clip text and image towers (hub tags or local checkpoints)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from unibind.indexer.runtime.device import Device
from unibind.indexer.encoders.base import Encoder, load_pil
from unibind.indexer.encoders.spec import EncoderSpec
from unibind.indexer.encoders.hub import offline_unless_reachable
from unibind.schema.errors import InvalidInput, NotFound, Unavailable

log = logging.getLogger(__name__)


_builtin_models: frozenset[str] | None = None  # open_clip's own configs, before we register any


def _register_local_config(arch: str, checkpoint: Path) -> None:
    """Make ``arch`` known to open_clip from ``<arch>.json`` beside the checkpoint, if it is not built in.

    The config is (re-)registered on every load, so a name always means the JSON beside *this*
    checkpoint, not one registered earlier in the process from another folder.
    """
    import json

    import open_clip

    global _builtin_models
    if _builtin_models is None:
        _builtin_models = frozenset(open_clip.list_models())
    if arch in _builtin_models:
        return
    config = checkpoint.parent / f"{arch}.json"
    if not config.is_file():
        raise InvalidInput(
            f"open_clip model {arch!r} is neither built in nor described by {config} "
            f"(built-in names: open_clip.list_models(); or put the model config JSON there)"
        )
    # check before registering: open_clip re-reads every registered file on each registration
    try:
        cfg = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InvalidInput(f"{config}: not a readable open_clip model config ({e})") from e
    if not isinstance(cfg, dict) or not all(k in cfg for k in ("embed_dim", "vision_cfg", "text_cfg")):
        raise InvalidInput(f"{config}: an open_clip model config needs the keys embed_dim, vision_cfg and text_cfg")
    open_clip.add_model_config(config)


class OpenClipEncoder(Encoder):
    modalities = frozenset({"text", "image"})

    def __init__(self, spec: EncoderSpec, device: Device) -> None:
        import open_clip
        import torch

        self.spec = str(spec)
        self.device = device
        if spec.checkpoint:
            checkpoint = Path(spec.checkpoint)
            if not checkpoint.is_file():
                raise FileNotFoundError(f"open_clip checkpoint not found: {checkpoint}")
            _register_local_config(spec.name, checkpoint)
            pretrained = str(checkpoint)
            model, _, preprocess = open_clip.create_model_and_transforms(spec.name, pretrained=pretrained, device=device.torch)
        else:
            if spec.name not in open_clip.list_models():
                raise NotFound(f"open_clip has no model {spec.name!r}; see open_clip.list_models()")
            tags = open_clip.list_pretrained_tags_by_model(spec.name)
            if spec.pretrained not in tags:
                raise NotFound(
                    f"open_clip model {spec.name!r} has no pretrained tag {spec.pretrained!r}; known tags: {', '.join(tags) or 'none'}"
                )
            with offline_unless_reachable() as reachable:
                try:
                    model, _, preprocess = open_clip.create_model_and_transforms(
                        spec.name, pretrained=spec.pretrained, device=device.torch
                    )
                except Exception as e:
                    where = "the model hub is unreachable and the weights are not cached" if not reachable else str(e)
                    raise Unavailable(
                        f"cannot fetch open_clip weights {spec.name}/{spec.pretrained}: {where}. Download the checkpoint "
                        f"on a machine with network access and use --encoder open_clip:{spec.name}@/path/to/checkpoint.bin"
                    ) from e
        model.eval()
        self._model = model
        self._preprocess = preprocess
        self._tokenizer = open_clip.get_tokenizer(spec.name)
        self._torch = torch
        with torch.no_grad():
            probe = model.encode_text(self._tokenizer(["probe"]).to(device.torch))
        self.dim = int(probe.shape[-1])

    @property
    def context_length(self) -> int | None:
        return int(getattr(self._tokenizer, "context_length", 77))

    def count_tokens(self, text: str) -> int | None:
        inner = getattr(self._tokenizer, "tokenizer", None)  # open_clip's HFTokenizer wraps a transformers one
        if inner is not None:
            return len(inner(text)["input_ids"])
        encode = getattr(self._tokenizer, "encode", None)  # SimpleTokenizer (CLIP BPE): + start and end tokens
        return len(encode(text)) + 2 if encode is not None else None

    def _text_batch(self, texts: Sequence[str]) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            tokens = self._tokenizer(list(texts)).to(self.device.torch)  # [B, L]
            feats = self._model.encode_text(tokens)  # [B, d]
        return feats.float().cpu().numpy()

    def _image_batch(self, images: Sequence[Any]) -> np.ndarray:
        torch = self._torch
        pixels = torch.stack([self._preprocess(load_pil(im)) for im in images]).to(self.device.torch)  # [B, 3, H, W]
        with torch.inference_mode():
            feats = self._model.encode_image(pixels)  # [B, d]
        return feats.float().cpu().numpy()
