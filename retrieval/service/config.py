"""The service's configuration: where the data is, the device, the request limits and the optional API key."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from unibind.schema import settings as defaults
from unibind.schema.settings import API_KEY_ENV, MAX_PORT, Settings

__all__ = ["API_KEY_ENV", "MAX_PORT", "ServiceConfig"]


@dataclass(frozen=True)
class ServiceConfig:
    """Validated at construction; ``from_settings`` fills it from :class:`Settings` (flag > environment > default),
    the way every command is configured."""

    database_url: str
    home: Path
    device: str | None = None  # auto, cpu, cuda, cuda:N (None: $UNIBIND_DEVICE or auto)
    encoder: str | None = None  # the space to serve (None: the only one)
    max_batch: int = defaults.DEFAULT_MAX_BATCH  # queries per request
    max_k: int = defaults.DEFAULT_MAX_K
    max_labels: int = defaults.DEFAULT_MAX_LABELS
    max_upload_bytes: int = int(defaults.DEFAULT_MAX_UPLOAD_MB * 1024 * 1024)
    max_image_pixels: int = defaults.DEFAULT_MAX_IMAGE_PIXELS
    api_key: str | None = None
    host: str = defaults.DEFAULT_HOST
    port: int = defaults.DEFAULT_PORT

    def __post_init__(self) -> None:
        if not self.database_url:
            raise ValueError("database_url must not be empty")
        object.__setattr__(self, "home", Path(self.home))
        for name in ("max_batch", "max_k", "max_labels", "max_upload_bytes", "max_image_pixels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if self.api_key is not None and not self.api_key.strip():
            raise ValueError(f"the API key (${API_KEY_ENV}) must not be empty or blank when set")
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 0 <= self.port <= MAX_PORT:
            raise ValueError(f"port must be an integer in 0..{MAX_PORT}, got {self.port!r}")
        if not self.host:
            raise ValueError("host must not be empty")

    @classmethod
    def from_settings(cls, db: str | None = None, home: str | os.PathLike[str] | None = None, *,
                      settings: Settings | None = None, **overrides: Any) -> ServiceConfig:
        """Every field from ``settings`` (default: resolved from ``db``, ``home`` and the environment, as the CLI
        resolves them), then ``overrides``. Unknown keys fail."""
        known = {f.name for f in fields(cls)} - {"database_url", "home"}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown service setting(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        s = settings or Settings.resolve(db=db, home=home)
        values: dict[str, Any] = {
            "device": s.device, "encoder": s.encoder, "max_batch": s.max_batch, "max_k": s.max_k,
            "max_labels": s.max_labels, "max_upload_bytes": int(s.max_upload_mb * 1024 * 1024),
            "max_image_pixels": s.max_image_pixels, "api_key": s.api_key, "host": s.host, "port": s.port,
        }
        return cls(database_url=s.database_url, home=s.home, **{**values, **overrides})
