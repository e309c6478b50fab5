"""What can go wrong for a user, as types. The CLI maps them to exit codes and the service to HTTP statuses, each
in one place (``unibind.retrieval.cli.main`` and ``unibind.retrieval.service.errors``).

They subclass ``ValueError`` so code that caught a user mistake as ``ValueError`` keeps working.
"""

from __future__ import annotations


class UnibindError(ValueError):
    """A user-facing error: its message names the file, field or object and the rule broken."""


class InvalidInput(UnibindError):
    """The request or file is malformed or breaks a rule (HTTP 400, exit 2)."""


class NotFound(UnibindError):
    """A named corpus, category, modality, head, item or job does not exist (HTTP 404, exit 2)."""


class Conflict(UnibindError):
    """The store's state does not allow it now: a name taken, another process ingesting the same corpus, an index
    that disagrees with the store (HTTP 409, exit 3)."""


class Busy(UnibindError):
    """Another writer holds what this needs; trying again later will work (HTTP 503 with Retry-After, exit 75)."""


class Unavailable(UnibindError):
    """A needed service or file is out of reach: the database, a model's weights (HTTP 503, exit 69)."""
