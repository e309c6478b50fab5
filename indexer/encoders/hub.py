"""Model hub access that fails fast: no network means seconds, not a 25-second retry loop."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlparse

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 3.0


def hub_reachable(timeout: float = PROBE_TIMEOUT_S) -> bool:
    """True when the Hugging Face endpoint accepts a TCP connection (and offline mode is off)."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    parsed = urlparse(constants.ENDPOINT)
    host, port = parsed.hostname or "huggingface.co", parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError as e:
        log.info("model hub %s unreachable: %s", constants.ENDPOINT, e)
        return False


@contextmanager
def offline_unless_reachable() -> Iterator[bool]:
    """Run the body in huggingface_hub offline mode when the hub cannot be reached.

    Cached files still load; anything that would need a download raises at once. Yields whether
    the hub is reachable.
    """
    from huggingface_hub import constants

    reachable = hub_reachable()
    previous = constants.HF_HUB_OFFLINE
    if not reachable:
        constants.HF_HUB_OFFLINE = True
    try:
        yield reachable
    finally:
        constants.HF_HUB_OFFLINE = previous
