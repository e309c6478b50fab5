"""The on-disk cache of LLM responses: one SQLite file, one row per (model, request).

A row is committed as soon as its response arrives, so an interrupted run loses at most the requests in flight
and the next run with the same parameters sends only what is missing; a run whose requests are all cached sends
nothing. The key is a sha256 of the model's identity and every field of the request (prompt, system message,
images, temperature, max_tokens, the request's own seed, stop strings), so changing any of them asks again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from unibind.indexer.knowledge.request import Request
from unibind.schema.errors import InvalidInput

log = logging.getLogger(__name__)

CACHE_FILE = "kb-cache.sqlite"  # under the data folder, unless --cache names another file
_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    category TEXT,
    prompt TEXT NOT NULL,
    text TEXT NOT NULL,
    created TEXT NOT NULL DEFAULT (datetime('now'))
)
"""


def request_key(identity: str, request: Request) -> str:
    """The cache key of ``request`` sent to the model ``identity`` (images enter as their sha256)."""
    fields: dict[str, Any] = asdict(request)
    fields["images"] = [hashlib.sha256(url.encode()).hexdigest() for url in request.images]
    blob = json.dumps({"model": identity, **fields}, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


class ResponseCache:
    """LLM responses on disk (SQLite, WAL): :meth:`get_many` for what is known, :meth:`put` commits one answer."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.exists() and not self.path.is_file():
            raise InvalidInput(f"--cache {self.path}: not a file")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # WAL: commits survive a crash of this process
            self._db.execute(_SCHEMA)
            self._db.commit()
        except sqlite3.DatabaseError as e:
            raise InvalidInput(f"--cache {self.path}: not a unibind response cache ({e})") from e
        self._lock = threading.Lock()

    def get_many(self, keys: Iterable[str]) -> dict[str, str]:
        """{key: text} of the keys that are cached."""
        keys = list(dict.fromkeys(keys))
        out: dict[str, str] = {}
        with self._lock:
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                out.update(self._db.execute(f"SELECT key, text FROM responses WHERE key IN ({marks})", chunk))
        return out

    def put(self, key: str, model: str, request: Request, text: str) -> None:
        """Store one response and commit (an answer that arrived is never asked for again)."""
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO responses (key, model, category, prompt, text) VALUES (?, ?, ?, ?, ?)",
                (key, model, request.category, request.prompt, text),
            )
            self._db.commit()

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM responses").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
