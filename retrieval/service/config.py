"""The service's configuration: where the data is, the device, the request limits and the optional API key."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

API_KEY_ENV = "UNIBIND_API_KEY"
MAX_PORT = 65535


@dataclass(frozen=True)
class ServiceConfig:
    """Validated at construction; ``from_settings`` fills the data locations the CLI way."""

    database_url: str
    home: Path
    device: str | None = None  # auto, cpu, cuda, cuda:N (None: $UNIBIND_DEVICE or auto)
    encoder: str | None = None  # the space to serve (None: the only one)
    max_batch: int = 64  # queries per request
    max_k: int = 100
    max_labels: int = 1000
    max_upload_bytes: int = 10 * 1024 * 1024
    max_image_pixels: int = 25_000_000
    api_key: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000

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
    def from_settings(cls, db: str | None = None, home: str | os.PathLike[str] | None = None, **overrides: Any) -> ServiceConfig:
        """Data locations as the CLI resolves them; the API key from ``$UNIBIND_API_KEY`` unless given.
        Unknown keys fail."""
        from unibind.schema.settings import Settings

        known = {f.name for f in fields(cls)} - {"database_url", "home"}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown service setting(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        settings = Settings.resolve(db=db, home=home)
        overrides.setdefault("api_key", os.environ.get(API_KEY_ENV) or None)
        return cls(database_url=settings.database_url, home=settings.home, **overrides)
