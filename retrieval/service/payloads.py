"""Response bodies of the HTTP API (pydantic: they are the OpenAPI schema at /docs). The request bodies, whose
limits come from the service's configuration, are built in ``unibind.retrieval.service.queries``."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field


def _utc(value: datetime) -> datetime:
    """A time from the store as an RFC 3339 date-time: SQLite keeps no offset, and the store writes UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


UtcDatetime = Annotated[datetime, AfterValidator(_utc)]

BUILTIN = "builtin:"


def public_origin(origin: str | None) -> str | None:
    """Where a corpus was read from, as the API shows it: a file's base name (the store keeps the path the CLI was
    given, a path of the server), a builtin corpus's name as it is."""
    if origin is None or origin.startswith(BUILTIN):
        return origin
    name = re.split(r"[\\/]", origin.rstrip("/\\"))[-1]
    return name or origin


PublicOrigin = Annotated[str | None, AfterValidator(public_origin)]


class Recognition(BaseModel):
    query: str
    labels: list[str]
    scores: list[float]


class Hit(BaseModel):
    id: int
    score: float
    label: str | None
    uri: str | None
    text: str | None
    meta: dict[str, Any] | None


class SearchResult(BaseModel):
    query: str
    hits: list[Hit]


class CorpusInfo(BaseModel):
    name: str
    space: str
    status: Literal["complete", "ingesting", "interrupted"] = Field(description="complete; ingesting (its process lives); or interrupted (its process died: "
                                    "the next write removes its rows)")
    descriptions: int
    categories: int
    duplicates: int
    source: str | None
    origin: PublicOrigin = Field(description="the file it was read from (its base name), or builtin:NAME")
    created_at: UtcDatetime
    completed_at: UtcDatetime | None


class Deleted(BaseModel):
    deleted: str
    descriptions: int


class CentreMember(BaseModel):
    rank: int
    score: float
    text: str
    description_id: int | None


class CentreView(BaseModel):
    category: str
    strategy: str
    centre_size: int = Field(description="K: the centre's size")
    k: int = Field(deprecated=True, description="the old name of centre_size (deprecated)")
    template: str
    candidates: int
    members: list[CentreMember]


class JobAccepted(BaseModel):
    job: str
    status_url: str


class JobProgress(BaseModel):
    done: int
    total: int


class JobView(BaseModel):
    id: str
    state: Literal["queued", "running", "done", "failed", "interrupted"] = Field(
        description="queued, running, done, failed, or interrupted (its service process stopped)")
    progress: JobProgress
    corpus: str
    error: str | None
    started_at: UtcDatetime | None
    finished_at: UtcDatetime | None


class Limits(BaseModel):
    max_batch: int = Field(description="queries per request")
    max_k: int
    max_labels: int
    max_upload_bytes: int
    max_image_pixels: int


class ModalityInfo(BaseModel):
    name: str
    kind: Literal["text", "image", "features"] = Field(description="text, image or features")
    input_dim: int
    items: int = Field(description="gallery items")
    head: int | None = Field(description="the active head's version (None: zero-shot or none)")


class Info(BaseModel):
    space: str | None = Field(description="the served space's encoder (None: the knowledge base is empty)")
    dim: int | None
    corpora: int = Field(description="complete corpora of the space")
    categories: int
    image_queries: bool = Field(description="whether image uploads can be queried (an image tower or an image head)")
    modalities: list[ModalityInfo]
    limits: Limits


class CategoryInfo(BaseModel):
    name: str
    descriptions: int
    corpora: int


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class ValidationIssue(BaseModel):
    """One thing wrong with a request (FastAPI's format)."""

    type: str
    loc: list[str | int]
    msg: str
    input: Any = None
    ctx: dict[str, Any] | None = None


class ErrorBody(BaseModel):
    """Every error's body: one line, or (a 422 from the schema) the list of what is wrong."""

    detail: str | list[ValidationIssue]
