"""Uploads: a multipart body's one file, read with the size limit, its form fields validated by the route's model,
and images checked for their pixel count before they are decoded in full."""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.datastructures import FormData, UploadFile  # what request.form() holds (fastapi's is a subclass)

from unibind.retrieval.service.errors import MalformedField, TooLarge, as_request_error
from unibind.schema.errors import InvalidInput

FORM_OVERHEAD = 64 * 1024  # multipart boundaries and small fields on top of the file itself
MAX_FORM_FIELDS = 64  # fields of one multipart request, a search's repeated `where` terms included
FIELD_TYPES = {"int_parsing": "an integer", "int_from_float": "an integer", "bool_parsing": "true or false"}
Form = TypeVar("Form", bound=BaseModel)


async def read_form_upload(request: Request, field: str, what: str, max_bytes: int) -> tuple[bytes, str, FormData]:
    """(the file's bytes, its file name, the whole form) of a multipart request with one file in ``field``;
    413 when the declared body or the file is over ``max_bytes``, 422 when the field holds no file."""
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > max_bytes + FORM_OVERHEAD:
        raise TooLarge(f"request body of {length} bytes is larger than the upload limit of {max_bytes} bytes")
    form = await request.form(max_files=1, max_fields=MAX_FORM_FIELDS)
    upload = form.get(field)
    if not isinstance(upload, UploadFile):
        raise MalformedField(f"multipart requests need {what} in the field '{field}'")
    return await read_upload(upload, max_bytes), upload.filename or "", form


def form_options(model: type[Form], fields: Mapping[str, Any]) -> Form:
    """A multipart form's ``fields`` (text only, the file left out) validated by the route's ``model``: a configured
    limit broken is its typed error, a field that is not of its type (an integer, a boolean) one line naming it
    (422), anything else FastAPI's 422 listing what is wrong."""
    try:
        return model.model_validate(dict(fields))
    except ValidationError as e:
        answer = as_request_error(e)
        if isinstance(answer, RequestValidationError):
            for issue in e.errors(include_url=False):
                expected = FIELD_TYPES.get(issue["type"])
                if expected and issue["loc"]:
                    raise MalformedField(f"form field {issue['loc'][0]!r} must be {expected}, got "
                                         f"{issue['input']!r}") from e
        raise answer from e


async def read_upload(upload: UploadFile, max_bytes: int) -> bytes:
    """The upload's bytes; 413 when it holds more than ``max_bytes``, 400 when it is empty."""
    data = await upload.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise TooLarge(f"upload {upload.filename!r} is larger than the limit of {max_bytes} bytes")
    if not data:
        raise InvalidInput(f"upload {upload.filename!r} is empty")
    return data


def decode_image(data: bytes, name: str, max_pixels: int) -> Any:
    """An RGB PIL image; 413 when it has more than ``max_pixels`` pixels (read from the header, before
    decoding), 400 when it is not a readable image."""
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data))  # lazy: reads the header only
    except Image.DecompressionBombError as e:
        raise TooLarge(f"image {name!r} has too many pixels ({e})") from e
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise InvalidInput(f"image {name!r} is not a readable image ({e})") from e
    width, height = image.size
    if width * height > max_pixels:
        raise TooLarge(f"image {name!r} has {width}x{height} = {width * height} pixels, more than the "
                       f"limit of {max_pixels}")
    try:
        return image.convert("RGB")
    except Image.DecompressionBombError as e:
        raise TooLarge(f"image {name!r} has too many pixels ({e})") from e
    except (OSError, ValueError) as e:
        raise InvalidInput(f"image {name!r} could not be decoded ({e})") from e
