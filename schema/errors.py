"""What can go wrong for a user, as types, each carrying its CLI exit code and its HTTP status.

Both mappings live here, as class attributes (``exit_code``, ``http_status``): the CLI exits with
``type(err).exit_code`` and the service answers with ``type(err).http_status``, so a new error type is
mapped in one place. They subclass ``ValueError`` so code that caught a user mistake as ``ValueError``
keeps working; the reverse does not hold: a plain, untyped ``ValueError`` is the code's fault, an internal
error (HTTP 500, exit 1), so every error a user can cause is raised as one of these types.
"""

from __future__ import annotations

from typing import ClassVar


class UnibindError(ValueError):
    """A user-facing error: its message names the file, field or object and the rule broken."""

    exit_code: ClassVar[int] = 2
    http_status: ClassVar[int] = 400


class InvalidInput(UnibindError):
    """The request or file is malformed or breaks a rule (HTTP 400, exit 2)."""

    exit_code: ClassVar[int] = 2
    http_status: ClassVar[int] = 400


class NotFound(UnibindError):
    """A named corpus, category, modality, head, item or job does not exist (HTTP 404, exit 2)."""

    exit_code: ClassVar[int] = 2
    http_status: ClassVar[int] = 404


class Conflict(UnibindError):
    """The store's state does not allow it now: an empty knowledge base, several spaces and none named, a name
    taken, a corpus still being ingested, a centre not built yet, an index that disagrees with the store (HTTP 409,
    exit 3)."""

    exit_code: ClassVar[int] = 3
    http_status: ClassVar[int] = 409


class Busy(UnibindError):
    """Another writer holds what this needs; trying again later will work (HTTP 503 with Retry-After, exit 75)."""

    exit_code: ClassVar[int] = 75
    http_status: ClassVar[int] = 503


class Unavailable(UnibindError):
    """A needed service or file is out of reach: the database, a model's weights (HTTP 503, exit 69)."""

    exit_code: ClassVar[int] = 69
    http_status: ClassVar[int] = 503
