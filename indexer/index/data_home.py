"""Where a store's derived files live: ``$UNIBIND_HOME/indexes/<store id>/`` and ``$UNIBIND_HOME/heads/<store id>/``.

The store id is the UUID kept in the database (``unibind.schema.store_state``), so every URL that reaches one database
(``localhost`` or ``127.0.0.1``, another driver name, a moved SQLite file) finds the same folders and the same
locks, and a copy of the data folder (or a restored backup) works where it lands. Paths kept in the store are
relative to the data folder.

Folders made before stores had an identity were named by a hash of the database URL and their paths kept
absolute: the first use under the same URL renames such a folder and rewrites its paths (``adopt``).
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path

from sqlalchemy import select

from unibind.schema import Database, Head, Segment

log = logging.getLogger(__name__)

_adopted: set[tuple[str, str]] = set()  # (store id, data folder) checked in this process


class DataHome:
    """The data folder of one store: its index and head folders, and the paths the store keeps."""

    def __init__(self, db: Database, home: Path) -> None:
        self.root = Path(home).expanduser().resolve()
        self.store_id = db.identity
        if (self.store_id, str(self.root)) not in _adopted:
            adopt(db, self)
            _adopted.add((self.store_id, str(self.root)))

    @property
    def index_dir(self) -> Path:
        return self.root / "indexes" / self.store_id

    @property
    def heads_dir(self) -> Path:
        return self.root / "heads" / self.store_id

    def relative(self, path: Path) -> str:
        """How the store keeps ``path`` (a path under the data folder, as built from it): relative to the data
        folder, POSIX separators. Symbolic links below the data folder are kept, not resolved."""
        return Path(os.path.abspath(path)).relative_to(self.root).as_posix()

    def resolve(self, stored: str) -> Path:
        """The file a stored path names (an absolute path, from an older store, is taken as it is)."""
        path = Path(stored)
        return path if path.is_absolute() else self.root / path


def adopt(db: Database, data: DataHome) -> None:
    """Move the folders of an older store (named by a URL hash) to the store id and make its paths relative."""
    with db.session() as session:
        absolute = [(Segment, i, p) for i, p in session.execute(select(Segment.id, Segment.path)) if Path(p).is_absolute()]
        absolute += [(Head, i, p) for i, p in session.execute(select(Head.id, Head.path)) if Path(p).is_absolute()]
    if not absolute:
        return
    data.root.mkdir(parents=True, exist_ok=True)
    with open(data.root / ".adopt.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for kind in ("indexes", "heads"):
            old, new = data.root / kind / db.legacy_key, data.root / kind / data.store_id
            if old.is_dir() and not new.exists():
                os.replace(old, new)
                log.warning("moved %s to %s (folders are now named by the store's identity)", old, new)
        updates: list[tuple[type, int, str]] = []
        for model, row_id, stored in absolute:
            kind = "indexes" if model is Segment else "heads"
            path = Path(stored)
            candidates = [path, data.root / kind / data.store_id / path.name]
            found = next((c for c in candidates if c.is_file() and Path(os.path.abspath(c)).is_relative_to(data.root)),
                         None)
            if found is not None:
                updates.append((model, row_id, data.relative(found)))
        with db.transaction() as session:
            for model, row_id, rel in updates:
                row = session.get(model, row_id)
                if row is not None and Path(row.path).is_absolute():
                    row.path = rel
    if updates:
        log.warning("the store now keeps %d file paths relative to %s", len(updates), data.root)
