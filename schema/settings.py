"""Where the data lives: ``UNIBIND_HOME`` and the database URL, resolved in one place."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

HOME_ENV = "UNIBIND_HOME"
DATABASE_ENV = "UNIBIND_DATABASE_URL"
DEFAULT_HOME = "./unibind-data"


@dataclass(frozen=True)
class Settings:
    """Resolved locations. ``home`` holds the embedded SQLite store and the FAISS files."""

    home: Path
    database_url: str

    @classmethod
    def resolve(cls, db: str | None = None, home: str | os.PathLike[str] | None = None) -> Settings:
        """``--db`` beats ``UNIBIND_DATABASE_URL`` beats ``sqlite:///$UNIBIND_HOME/unibind.db``."""
        home_path = Path(home or os.environ.get(HOME_ENV) or DEFAULT_HOME).expanduser().resolve()
        url = db or os.environ.get(DATABASE_ENV) or f"sqlite:///{home_path / 'unibind.db'}"
        return cls(home=home_path, database_url=url)
