"""What can go wrong for a user, as types, each carrying its CLI exit code and its HTTP status.

Both mappings live here, as class attributes (``exit_code``, ``http_status``): the CLI exits with
``type(err).exit_code`` and the service answers with ``type(err).http_status``, so a new error type is
mapped in one place. They subclass ``ValueError`` so code that caught a user mistake as ``ValueError``
keeps working.
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
    """The store's state does not allow it now: a name taken, another process ingesting the same corpus, an index
    that disagrees with the store (HTTP 409, exit 3)."""

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
