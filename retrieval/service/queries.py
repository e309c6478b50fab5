"""The query requests of ``POST /v1/recognize`` and ``POST /v1/search``: their bodies as pydantic models whose
limits come from the service's configuration (so the OpenAPI schema states the limits the service enforces),
and the reading of a request as JSON or as a multipart image upload.

A JSON body holds one kind of query: ``texts``, or ``features`` with their ``modality``. A multipart body holds
an image in the field ``image`` and the options as form fields. A rule the schema states is enforced by the
model itself; a broken configured limit is answered with its own status (see ``service.errors``).
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import Request
from pydantic import (AfterValidator, BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter, ValidationError,
                      field_validator, model_validator)
from starlette.datastructures import UploadFile

from unibind.indexer.modalities.registry import NAME_RE, check_name
from unibind.retrieval.service.config import ServiceConfig
from unibind.retrieval.service.errors import TooLarge, UnsupportedMediaType, as_request_error
from unibind.retrieval.service.upload import decode_image, form_options, read_form_upload
from unibind.schema.errors import InvalidInput

if TYPE_CHECKING:
    import numpy as np

    from unibind.retrieval.service.state import Snapshot

__all__ = ["JSON", "MULTIPART", "Query", "QueryRoute", "form_schema", "kind_of", "label_list", "query_vectors_of",
           "recognize_route", "search_route", "where_terms"]

JSON = "application/json"
MULTIPART = "multipart/form-data"
BUILT_IN = ("text", "image")  # modalities whose queries are texts and images, not feature vectors
WHERE_TERM = r"^[^=]*[^=\s][^=]*="  # key=value, the key not blank
LABEL_LIST = r"[^,\s]"  # comma-separated names: at least one


def kind_of(body: Any) -> str | None:
    """Which kind of query a JSON body holds (None: both or neither; a non-object is checked as texts)."""
    if not isinstance(body, Mapping):
        return "texts"
    has_texts, has_features = "texts" in body, "features" in body
    return None if has_texts == has_features else "texts" if has_texts else "features"


@dataclass(frozen=True)
class Query:
    """A parsed query: texts, feature vectors of a modality, or an uploaded image (its bytes and file name)."""

    options: Any  # the route's options (k, labels / target, label, where)
    texts: list[str] | None = None
    features: list[list[float]] | None = None
    modality: str | None = None
    image: bytes | None = None
    image_name: str = "image"

    @property
    def names(self) -> list[str]:
        """One name per query, as the answers carry them."""
        if self.texts is not None:
            return list(self.texts)
        if self.features is not None:
            return [f"features[{i}]" for i in range(len(self.features))]
        return [self.image_name]


@dataclass(frozen=True)
class QueryRoute:
    """The request models of one query route: its JSON body (a union of the two kinds) and its form."""

    json: TypeAdapter[Any]
    form: type[BaseModel]
    file_field: str = "image"

    def components(self) -> dict[str, Any]:
        """The JSON body's model schemas, for the OpenAPI document's components."""
        return dict(self.json.json_schema(ref_template=REF).get("$defs", {}))

    def openapi(self) -> dict[str, Any]:
        """The route's OpenAPI request body: JSON, or a multipart image with the form fields."""
        body = self.json.json_schema(ref_template=REF)
        body.pop("$defs", None)
        form = form_schema(self.form, self.file_field, "the query image (PNG, JPEG, ...)")
        return {"requestBody": {"required": True, "content": {JSON: {"schema": body}, MULTIPART: {"schema": form}}}}

    async def parse(self, request: Request, config: ServiceConfig) -> Query:
        """The request's query (422 for a body that breaks the schema; a broken limit answers with its status)."""
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(MULTIPART):
            data, name, form = await read_form_upload(request, self.file_field, "an image file",
                                                      config.max_upload_bytes)
            fields: dict[str, Any] = {}
            for key, value in form.multi_items():
                if key == self.file_field or isinstance(value, UploadFile):
                    continue
                if key == "where":
                    fields.setdefault("where", []).append(value)
                else:
                    fields[key] = value
            options = form_options(self.form, fields)
            return Query(options, image=data, image_name=name or self.file_field)
        if content_type and not content_type.startswith(JSON):
            raise UnsupportedMediaType(f"send the query as {JSON} or as {MULTIPART} (an image in the field "
                                       f"'{self.file_field}'), not {content_type.split(';')[0]!r}")
        try:
            body = self.json.validate_json(await request.body())
        except ValidationError as e:
            raise as_request_error(e) from e
        if isinstance(body, TextQuery):
            return Query(body, texts=body.texts)
        return Query(body, features=body.features, modality=body.modality)


REF = "#/components/schemas/{model}"


def form_schema(model: type[BaseModel], file_field: str, what: str) -> dict[str, Any]:
    """The multipart schema of a file in ``file_field`` and ``model``'s fields (a form cannot send null: an
    optional field is one left out)."""
    form = model.model_json_schema(ref_template=REF)
    properties = {}
    for name, field in form["properties"].items():
        options = [o for o in field.pop("anyOf", []) if o.get("type") != "null"]
        if len(options) == 1:
            field = {**options[0], **field}
        elif options:
            field["anyOf"] = options
        if field.get("default", ...) is None:
            del field["default"]
        properties[name] = field
    form["properties"] = {file_field: {"type": "string", "format": "binary", "minLength": 1, "description": what},
                          **properties}
    form["required"] = [file_field, *form.get("required", [])]
    return form


# -- the kinds of query ----------------------------------------------------------------------------------
class TextQuery(BaseModel):
    """Text queries."""

    model_config = ConfigDict(extra="forbid")

    texts: list[str] = Field(description="text queries", min_length=1)
    modality: Literal["text"] | None = Field(None, description="text (the default) for texts")


class FeatureQuery(BaseModel):
    """Feature vectors of a feature modality (audio, point, ...), which reach the space through its head."""

    model_config = ConfigDict(extra="forbid")

    features: list[Annotated[list[float], Field(min_length=1)]] = Field(
        description="feature vectors [B, d_in] of the modality", min_length=1)
    modality: Annotated[str, AfterValidator(check_name)] = Field(
        description="the modality of `features` (audio, point, ...); not text or image, whose queries are texts and "
                    "images", json_schema_extra={"pattern": NAME_RE.pattern, "not": {"enum": list(BUILT_IN)}})

    @model_validator(mode="before")
    @classmethod
    def _needs_modality(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and data.get("modality") is None:
            raise ValueError("features need a modality (audio, point, ...)")
        return data

    @field_validator("modality")
    @classmethod
    def _feature_modality(cls, value: str) -> str:
        if value in BUILT_IN:
            raise InvalidInput(f"modality {value!r} does not take feature vectors: send texts or an image")
        return value


def _batch(config: ServiceConfig) -> Any:
    """A validator: at most ``max_batch`` queries in one request (413)."""

    def check(value: list[Any]) -> list[Any]:
        if len(value) > config.max_batch:
            raise TooLarge(f"{len(value)} queries in one request; the limit is {config.max_batch}")
        return value

    return check


def _k(config: ServiceConfig) -> Any:
    def check(value: int) -> int:
        if value > config.max_k:
            raise InvalidInput(f"k must be between 1 and {config.max_k}, got {value}")
        return value

    return check


def _k_field(default: int, what: str, config: ServiceConfig) -> Any:
    return Field(default, ge=1, description=f"{what} (at most {config.max_k})",
                 json_schema_extra={"maximum": config.max_k})


def recognize_route(config: ServiceConfig) -> QueryRoute:
    """``POST /v1/recognize``: a query, ``k`` categories per query, optionally among ``labels`` only."""

    class RecognizeOptions(BaseModel):
        k: Annotated[int, AfterValidator(_k(config))] = _k_field(5, "categories per query", config)

    def check_labels(value: list[str] | None) -> list[str] | None:
        if value is not None and len(value) > config.max_labels:
            raise InvalidInput(f"{len(value)} labels; the limit is {config.max_labels}")
        return value

    class RecognizeTexts(TextQuery, RecognizeOptions):
        """Recognize text queries."""

        texts: Annotated[list[str], AfterValidator(_batch(config))] = Field(
            description="text queries", min_length=1, json_schema_extra={"maxItems": config.max_batch})
        labels: Annotated[list[str] | None, AfterValidator(check_labels)] = Field(
            None, min_length=1, description="restrict the answer to these categories",
            json_schema_extra={"maxItems": config.max_labels})

    class RecognizeFeatures(FeatureQuery, RecognizeOptions):
        """Recognize feature vectors of a modality."""

        features: Annotated[list[Annotated[list[float], Field(min_length=1)]], AfterValidator(_batch(config))] = Field(
            description="feature vectors [B, d_in] of the modality", min_length=1,
            json_schema_extra={"maxItems": config.max_batch})
        labels: Annotated[list[str] | None, AfterValidator(check_labels)] = Field(
            None, min_length=1, description="restrict the answer to these categories",
            json_schema_extra={"maxItems": config.max_labels})

    class RecognizeForm(RecognizeOptions):
        """Recognize an uploaded image: the form fields beside the image."""

        model_config = ConfigDict(extra="forbid")

        labels: str | None = Field(None, pattern=LABEL_LIST,
                                   description=f"comma-separated category names to restrict the answer to (at most "
                                               f"{config.max_labels})")

        @field_validator("labels")
        @classmethod
        def _split(cls, value: str | None) -> str | None:
            if value is not None:
                check_labels(label_list(value))
            return value

    return QueryRoute(_union(RecognizeTexts, RecognizeFeatures), RecognizeForm)


def label_list(raw: str | None) -> list[str] | None:
    """Comma-separated names as a list (None: no restriction)."""
    if raw is None:
        return None
    return [x.strip() for x in raw.split(",") if x.strip()] or None


def search_route(config: ServiceConfig) -> QueryRoute:
    """``POST /v1/search``: a query, ``k`` hits per query from ``target``, filtered by ``label`` and ``where``."""

    class SearchOptions(BaseModel):
        target: Annotated[str, AfterValidator(check_name)] = Field(
            "descriptions", description="`descriptions`, or a modality whose gallery to search",
            json_schema_extra={"pattern": NAME_RE.pattern})
        k: Annotated[int, AfterValidator(_k(config))] = _k_field(10, "hits per query", config)
        label: str | None = Field(None, description="only items with this label (descriptions: this category)")

    where_doc = "metadata key = value filters, all must hold (scalars compare as JSON writes them)"

    class SearchTexts(TextQuery, SearchOptions):
        """Search with text queries."""

        texts: Annotated[list[str], AfterValidator(_batch(config))] = Field(
            description="text queries", min_length=1, json_schema_extra={"maxItems": config.max_batch})
        where: dict[str, str | bool | int | float | None] = Field(default_factory=dict, description=where_doc)

    class SearchFeatures(FeatureQuery, SearchOptions):
        """Search with feature vectors of a modality."""

        features: Annotated[list[Annotated[list[float], Field(min_length=1)]], AfterValidator(_batch(config))] = Field(
            description="feature vectors [B, d_in] of the modality", min_length=1,
            json_schema_extra={"maxItems": config.max_batch})
        where: dict[str, str | bool | int | float | None] = Field(default_factory=dict, description=where_doc)

    class SearchForm(SearchOptions):
        """Search with an uploaded image: the form fields beside the image."""

        model_config = ConfigDict(extra="forbid")

        where: list[Annotated[str, Field(pattern=WHERE_TERM)]] = Field(
            default_factory=list, description="key=value metadata filters, repeatable; all must hold")

    return QueryRoute(_union(SearchTexts, SearchFeatures), SearchForm)


def where_terms(where: Mapping[str, Any] | list[str]) -> tuple[tuple[str, str], ...]:
    """The filters as the search compares them: a JSON object's strings as they are and other scalars as JSON
    text; a form's ``key=value`` terms split at the first ``=``."""
    from unibind.indexer.gallery.items import canonical

    if isinstance(where, list):
        return tuple((key.strip(), value) for key, _, value in (term.partition("=") for term in where))
    return tuple((k, v if isinstance(v, str) else str(canonical(v))) for k, v in where.items())


def _union(texts: type[BaseModel], features: type[BaseModel]) -> TypeAdapter[Any]:
    return TypeAdapter(Annotated[
        Annotated[texts, Tag("texts")] | Annotated[features, Tag("features")],
        Discriminator(kind_of, custom_error_type="query_kind",
                      custom_error_message="give exactly one of texts or features"),
    ])


def query_vectors_of(snap: Snapshot, query: Query, lock: AbstractContextManager[Any], max_image_pixels: int
                     ) -> np.ndarray:
    """[B, d] unit vectors of the space for a parsed query, through the library's one way of making them
    (blocking: call from a worker thread)."""
    from unibind.indexer.modalities.projection import query_vectors

    if query.image is not None:
        snap.check_takes_images()  # a space that takes no images says so before the upload is decoded
        image = decode_image(query.image, query.image_name, max_image_pixels)
        return query_vectors(snap.projection, images=[image], lock=lock)[1]
    return query_vectors(snap.projection, texts=query.texts, features=query.features, modality=query.modality,
                         lock=lock)[1]
