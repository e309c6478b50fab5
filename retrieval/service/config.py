"""The service's view of the settings: what ``unibind serve`` reads from :class:`~unibind.schema.settings.Settings`,
in the units the service works in (the upload limit in bytes). It holds no default and no rule of its own: every
value, default and check is the settings' (flag > environment > default), so the service is configured the way
every command is."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unibind.schema.errors import InvalidInput
from unibind.schema.settings import API_KEY_ENV, MAX_PORT, Settings

__all__ = ["API_KEY_ENV", "MAX_PORT", "MIB", "ServiceConfig"]

MIB = 1024 * 1024


@dataclass(frozen=True)
class ServiceConfig:
    """A view of ``settings`` for the service. Build it with :meth:`from_settings` (resolved as the CLI resolves
    them), or around a :class:`Settings` made by hand (tests, an embedding program)."""

    settings: Settings

    def __post_init__(self) -> None:
        key = self.settings.api_key  # the settings keep a secret as given; a blank one would open nothing
        if key is not None and not key.strip():
            raise InvalidInput(f"${API_KEY_ENV} must not be blank when set (unset it to serve without a key)")

    @classmethod
    def from_settings(cls, db: str | None = None, home: str | os.PathLike[str] | None = None, *,
                      settings: Settings | None = None, environ: Mapping[str, str] | None = None,
                      **flags: Any) -> ServiceConfig:
        """The view of ``settings``, or of the settings resolved from ``db``, ``home`` and ``flags`` (keywords named
        as the fields of :class:`Settings`) over the environment (``environ``: instead of ``os.environ``). A value
        that breaks a rule raises InvalidInput naming its flag or variable."""
        if settings is None:
            settings = Settings.resolve(db, home, environ=environ, **flags)
        elif db is not None or home is not None or environ is not None or flags:
            raise TypeError("give either settings or the values to resolve them from, not both")
        return cls(settings)

    # -- the fields, read from the settings ----------------------------------------------------------------
    @property
    def database_url(self) -> str:
        return self.settings.database_url

    @property
    def home(self) -> Path:
        return self.settings.home

    @property
    def vectors(self) -> str:
        return self.settings.vectors

    @property
    def device(self) -> str:
        """auto, cpu, cuda or cuda:N."""
        return self.settings.device

    @property
    def fp16(self) -> bool:
        """Vectors as float16 in FAISS GPU indexes."""
        return self.settings.fp16

    @property
    def encoder(self) -> str | None:
        """The space to serve (None: the only one)."""
        return self.settings.encoder

    @property
    def api_key(self) -> str | None:
        return self.settings.api_key

    @property
    def host(self) -> str:
        return self.settings.host

    @property
    def port(self) -> int:
        return self.settings.port

    @property
    def max_batch(self) -> int:
        """Queries per request."""
        return self.settings.max_batch

    @property
    def max_k(self) -> int:
        return self.settings.max_k

    @property
    def max_labels(self) -> int:
        return self.settings.max_labels

    @property
    def max_upload_bytes(self) -> int:
        """The largest upload (``--max-upload-mb``) in bytes."""
        return int(self.settings.max_upload_mb * MIB)

    @property
    def max_image_pixels(self) -> int:
        return self.settings.max_image_pixels

    @property
    def max_queued_uploads(self) -> int:
        """Corpus uploads queued or running at once in this process (``--max-queued-uploads``); more are a 429."""
        return self.settings.max_queued_uploads
