"""Request and response bodies of the HTTP API (pydantic: they are the OpenAPI schema at /docs)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Query(BaseModel):
    """One kind of query per request: ``texts``, or ``features`` with their ``modality``."""

    model_config = ConfigDict(extra="forbid")

    texts: list[str] | None = Field(None, description="text queries", min_length=1)
    features: list[list[float]] | None = Field(None, description="feature vectors [B, d_in] of a feature modality",
                                               min_length=1)
    modality: str | None = Field(None, description="the modality of `features` (audio, point, ...); text for texts")

    @model_validator(mode="after")
    def _one_kind(self) -> Query:
        if (self.texts is None) == (self.features is None):
            raise ValueError("give exactly one of texts or features")
        if self.features is not None and not self.modality:
            raise ValueError("features need a modality (audio, point, ...)")
        if self.texts is not None and self.modality not in (None, "text"):
            raise ValueError(f"modality {self.modality!r} does not go with texts")
        return self

    @property
    def size(self) -> int:
        return len(self.texts if self.texts is not None else self.features or [])


class RecognizeRequest(Query):
    k: int = Field(5, ge=1, description="categories per query")
    labels: list[str] | None = Field(None, min_length=1, description="restrict the answer to these categories")


class SearchRequest(Query):
    target: str = Field("descriptions", description="`descriptions`, or a modality whose gallery to search")
    k: int = Field(10, ge=1, description="hits per query")
    label: str | None = Field(None, description="only items with this label (descriptions: this category)")
    where: dict[str, str | bool | int | float | None] = Field(
        default_factory=dict, description="metadata key = value filters, all must hold (scalars compare as JSON writes them)")

    def where_terms(self) -> tuple[tuple[str, str], ...]:
        """The filters as the search compares them: strings as they are, other scalars as JSON text."""
        from unibind.indexer.gallery.items import canonical

        return tuple((k, v if isinstance(v, str) else str(canonical(v))) for k, v in self.where.items())


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
    status: str = Field(description="complete; ingesting (its process lives); or interrupted (its process died: "
                                    "the next write removes its rows)")
    descriptions: int
    categories: int
    duplicates: int
    source: str | None
    origin: str | None
    created_at: datetime
    completed_at: datetime | None


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
    k: int
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
    state: str = Field(description="queued, running, done, failed, or interrupted (its service process stopped)")
    progress: JobProgress
    corpus: str
    error: str | None
    started_at: datetime | None
    finished_at: datetime | None


class Limits(BaseModel):
    max_batch: int = Field(description="queries per request")
    max_k: int
    max_labels: int
    max_upload_bytes: int
    max_image_pixels: int


class ModalityInfo(BaseModel):
    name: str
    kind: str = Field(description="text, image or features")
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
    status: str = "ok"


class ErrorBody(BaseModel):
    detail: Any


def json_or_image(model: type[BaseModel], extra: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI request body of a route that takes ``model`` as JSON, or a multipart image upload."""
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": model.model_json_schema()},
        "multipart/form-data": {"schema": {"type": "object", "required": ["image"], "properties": {
            "image": {"type": "string", "format": "binary"}, **extra}}},
    }}}


def corpus_upload() -> dict[str, Any]:
    """The OpenAPI request body of ``POST /v1/corpora``: a corpus file and its ingest options."""
    text = {"type": "string"}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["file"], "properties": {
            "file": {"type": "string", "format": "binary", "description": "the corpus: .json, .jsonl or .csv"},
            "name": {**text, "description": "the corpus name (default: the file name's stem)"},
            "source": {**text, "description": "where the corpus comes from (free text)"},
            "format": {"type": "string", "enum": ["json", "jsonl", "csv"], "description": "default: the extension"},
            "key": {**text, "description": "JSON only: the key holding the category table"},
            "replace": {"type": "boolean", "description": "replace a corpus of the same name"},
            "encoder": {**text, "description": "the space's encoder (default: the served space)"}}}}}}}
