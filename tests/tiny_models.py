"""Tiny, seeded, randomly initialised CLIP models saved to a folder, for tests that need the real
open_clip / transformers loading code without downloading any weights.

- ``make_tiny_open_clip(folder)`` → ``open_clip:unibind-tiny@<folder>/tiny.pt`` (config ``<folder>/unibind-tiny.json``)
- ``make_tiny_hf_clip(folder)``   → ``hf:<folder>`` (a ``save_pretrained`` CLIPModel + CLIPProcessor)

Both are deterministic (same bytes of weights for the same code and library versions) and take well
under a second on CPU. Nothing touches the network.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TINY_OPEN_CLIP_ARCH = "unibind-tiny"
TINY_OPEN_CLIP_CONFIG: dict[str, Any] = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "head_width": 32, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}

TINY_HF_PROJECTION_DIM = 24
TINY_HF_IMAGE_SIZE = 32
SEED = 0


def make_tiny_open_clip(folder: Path) -> str:
    """Write ``unibind-tiny.json`` and seeded random weights ``tiny.pt`` into ``folder``; return the spec."""
    import open_clip
    import torch

    folder = Path(folder).resolve()  # the spec comes back canonical (absolute)
    folder.mkdir(parents=True, exist_ok=True)
    config_path = folder / f"{TINY_OPEN_CLIP_ARCH}.json"
    config_path.write_text(json.dumps(TINY_OPEN_CLIP_CONFIG, indent=2), encoding="utf-8")
    torch.manual_seed(SEED)
    model = open_clip.CLIP(
        embed_dim=TINY_OPEN_CLIP_CONFIG["embed_dim"],
        vision_cfg=open_clip.CLIPVisionCfg(**TINY_OPEN_CLIP_CONFIG["vision_cfg"]),
        text_cfg=open_clip.CLIPTextCfg(**TINY_OPEN_CLIP_CONFIG["text_cfg"]),
    )
    checkpoint = folder / "tiny.pt"
    torch.save(model.state_dict(), checkpoint)
    return f"open_clip:{TINY_OPEN_CLIP_ARCH}@{checkpoint}"


# --- transformers CLIP -------------------------------------------------------------------------

_WORDS = ("a", "photo", "of", "the", "cat", "dog", "kitten", "truck", "red", "blue", "green", "car")


def _bytes_to_unicode() -> dict[int, str]:
    """The reversible byte → printable-character map that CLIP's BPE works on (as in GPT-2)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def _write_tiny_bpe(folder: Path) -> tuple[int, int]:
    """A tiny CLIP BPE vocabulary: all 256 byte symbols (alone and word-final), merges that spell a
    few whole words, then the two special tokens. Returns (bos id, eos id)."""
    symbols = list(_bytes_to_unicode().values())
    vocab: list[str] = symbols + [s + "</w>" for s in symbols]
    merges: list[tuple[str, str]] = []
    for word in _WORDS:
        # merge left to right: "c a t</w>" → "ca t</w>" → "cat</w>"
        parts = list(word[:-1]) + [word[-1] + "</w>"]
        while len(parts) > 1:
            pair = (parts[0], parts[1])
            merged = parts[0] + parts[1]
            if pair not in merges:
                merges.append(pair)
            if merged not in vocab:
                vocab.append(merged)
            parts = [merged] + parts[2:]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(vocab)}), encoding="utf-8")
    (folder / "merges.txt").write_text(
        "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8"
    )
    return len(vocab) - 2, len(vocab) - 1


def make_tiny_hf_clip(folder: Path) -> str:
    """Save a seeded random transformers CLIPModel and an offline CLIPProcessor into ``folder``; return the spec."""
    import torch
    from transformers import (
        CLIPConfig,
        CLIPImageProcessor,
        CLIPModel,
        CLIPProcessor,
        CLIPTextConfig,
        CLIPTokenizer,
        CLIPVisionConfig,
    )
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    folder = Path(folder).resolve()  # the spec comes back canonical (absolute)
    folder.mkdir(parents=True, exist_ok=True)
    bos, eos = _write_tiny_bpe(folder)
    # reads vocab.json + merges.txt (in any transformers version); 77 tokens, as real CLIP tokenizers say
    tokenizer = CLIPTokenizer.from_pretrained(folder, model_max_length=77)
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": TINY_HF_IMAGE_SIZE}, crop_size={"height": TINY_HF_IMAGE_SIZE, "width": TINY_HF_IMAGE_SIZE}
    )
    processor = CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)

    text_cfg = CLIPTextConfig(
        vocab_size=eos + 1,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=77,
        bos_token_id=bos,
        eos_token_id=eos,
        pad_token_id=eos,
    )
    vision_cfg = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=TINY_HF_IMAGE_SIZE,
        patch_size=8,
    )
    config = CLIPConfig(
        text_config=text_cfg.to_dict(), vision_config=vision_cfg.to_dict(), projection_dim=TINY_HF_PROJECTION_DIM
    )
    torch.manual_seed(SEED)
    model = CLIPModel(config).eval()
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return f"hf:{folder}"
