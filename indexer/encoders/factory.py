"""One factory builds an encoder from a spec string on a given device, and caches it per process."""

from __future__ import annotations

import logging
import threading

from unibind.indexer.runtime.device import Device
from unibind.indexer.encoders.base import Encoder
from unibind.indexer.encoders.spec import EncoderSpec, parse_encoder_spec

log = logging.getLogger(__name__)

_cache: dict[tuple[str, Device], Encoder] = {}
_lock = threading.Lock()


def build_encoder(spec: str | EncoderSpec, device: Device) -> Encoder:
    """Build (or reuse) the encoder for ``spec`` on ``device``."""
    parsed = spec if isinstance(spec, EncoderSpec) else parse_encoder_spec(spec)
    key = (str(parsed), device)
    with _lock:
        if key in _cache:
            return _cache[key]
        log.info("loading encoder %s on %s", parsed, device.torch)
        encoder: Encoder
        if parsed.kind == "open_clip":
            from unibind.indexer.encoders.openclip import OpenClipEncoder

            encoder = OpenClipEncoder(parsed, device)
        elif parsed.kind == "hf":
            from unibind.indexer.encoders.hf_clip import HFClipEncoder

            encoder = HFClipEncoder(parsed, device)
        else:
            from unibind.indexer.encoders.sentence import SentenceEncoder

            encoder = SentenceEncoder(parsed, device)
        _cache[key] = encoder
        return encoder
