"""One factory builds an encoder from a spec string on a given device, and caches it per process.

This is the process's one cache of loaded encoders: every caller (ingest, recognition, search, the service)
asks :func:`build_encoder`, so a model is loaded once however many parts use it. An encoder loaded some other
way (a test fixture, an embedding process) joins the cache with :func:`adopt_encoder`.
"""

from __future__ import annotations

import logging
import threading

from unibind.indexer.runtime.device import Device
from unibind.indexer.encoders.base import Encoder
from unibind.indexer.encoders.spec import EncoderSpec, parse_encoder_spec

log = logging.getLogger(__name__)

_cache: dict[tuple[str, Device], Encoder] = {}
_lock = threading.Lock()


def adopt_encoder(encoder: Encoder, device: Device | None = None) -> None:
    """Serve ``encoder`` for its spec on ``device`` (default: its own) from now on, instead of loading one."""
    key = (str(parse_encoder_spec(encoder.spec)), device or encoder.device)
    with _lock:
        _cache[key] = encoder


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
