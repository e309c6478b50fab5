"""The browsing routes: what the served space holds (``GET /v1/info``), its categories (``GET /v1/categories``)
and image thumbnails of gallery items (``GET /v1/items/{id}/thumbnail``). The web page reads them; so can any
client that wants to list what it can query."""

from __future__ import annotations

import io
from email.utils import formatdate
from pathlib import Path

from fastapi import APIRouter, Query, Response
from fastapi import Path as PathParam
from sqlalchemy import func, select
from starlette.concurrency import run_in_threadpool

from unibind.indexer.store.contents import list_categories
from unibind.indexer.modalities.versions import active_head
from unibind.indexer.modalities.registry import list_modalities
from unibind.retrieval.service import payloads as p
from unibind.retrieval.service.config import ServiceConfig
from unibind.retrieval.service.dependencies import State
from unibind.retrieval.service.state import takes_images
from unibind.retrieval.service.errors import TooLarge, responses
from unibind.retrieval.service.upload import decode_image
from unibind.schema import Corpus, CorpusStatus, Item, ModalityKind
from unibind.schema.versions import live_item
from unibind.schema.errors import InvalidInput, NotFound

THUMBNAIL_SIZES = (16, 1024)  # smallest and largest edge a client may ask for
FILE_SCHEME = "file://"
MAX_ID = 2**63 - 1  # ids are 64-bit keys on every backend


def item_image_path(uri: str | None) -> Path | None:
    """The local file behind an image item's URI (a path, or a ``file://`` URI); None for remote URIs."""
    if not uri:
        return None
    if uri.startswith(FILE_SCHEME):
        uri = uri[len(FILE_SCHEME):]
    elif "://" in uri:
        return None
    return Path(uri)


def thumbnail(data: bytes, name: str, size: int, max_pixels: int) -> bytes:
    """A JPEG whose longer edge is at most ``size`` (the aspect ratio kept), from an image file's bytes."""
    image = decode_image(data, name, max_pixels)  # RGB, pixel limit checked from the header
    image.thumbnail((size, size))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=85)
    return out.getvalue()


def router(config: ServiceConfig) -> APIRouter:
    """``GET /v1/info``, ``GET /v1/categories`` and ``GET /v1/items/{id}/thumbnail``."""
    api = APIRouter()

    limits = p.Limits(max_batch=config.max_batch, max_k=config.max_k, max_labels=config.max_labels,
                      max_upload_bytes=config.max_upload_bytes, max_image_pixels=config.max_image_pixels)

    @api.get("/v1/info", response_model=p.Info, tags=["knowledge base"], responses=responses())
    async def info(st: State) -> p.Info:

        def work() -> p.Info:
            with st.db.session() as session:
                space = st.served_space(session)
                if space is None:  # an empty knowledge base
                    return p.Info(space=None, dim=None, corpora=0, categories=0, image_queries=False, modalities=[],
                                  limits=limits)
                counts: dict[int, int] = {m: n for m, n in session.execute(
                    select(Item.modality_id, func.count(Item.id)).where(live_item(Item.modality_id))
                    .group_by(Item.modality_id))}
                modalities = []
                for m in list_modalities(session, space):
                    head = active_head(session, m)
                    modalities.append(p.ModalityInfo(name=m.name, kind=m.kind.value, input_dim=m.input_dim,
                                                     items=int(counts.get(m.id, 0)),
                                                     head=head.version if head is not None else None))
                n_corpora = session.scalar(select(func.count(Corpus.id)).where(
                    Corpus.space_id == space.id, Corpus.status == CorpusStatus.COMPLETE)) or 0
                return p.Info(space=space.encoder, dim=space.dim, corpora=int(n_corpora),
                              categories=len(list_categories(session, space=space)),
                              image_queries=takes_images(session, space), modalities=modalities,
                              limits=limits)

        return await run_in_threadpool(work)

    @api.get("/v1/categories", response_model=list[p.CategoryInfo], tags=["knowledge base"], responses=responses())
    async def categories(st: State) -> list[p.CategoryInfo]:

        def work() -> list[p.CategoryInfo]:
            with st.db.session() as session:
                space = st.served_space(session)
                if space is None:  # an empty knowledge base
                    return []
                return [p.CategoryInfo(name=c.name, descriptions=c.n_descriptions, corpora=c.n_corpora)
                        for c in list_categories(session, space=space)]

        return await run_in_threadpool(work)

    @api.get("/v1/items/{item_id}/thumbnail", tags=["query"], response_class=Response,
             responses={200: {"content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}},
                              "description": "a JPEG thumbnail"}, **responses(400, 404, 413, 422)})
    async def item_thumbnail(st: State, item_id: int = PathParam(ge=1, le=MAX_ID),
                             size: int = Query(256, ge=THUMBNAIL_SIZES[0], le=THUMBNAIL_SIZES[1],
                                               description="the longer edge in pixels")) -> Response:
        def work() -> Response:
            with st.db.session() as session:
                item = session.get(Item, item_id)
                if item is None or item.deleted_version is not None:
                    raise NotFound(f"no item with id {item_id}")
                if item.modality.kind != ModalityKind.IMAGE:
                    raise InvalidInput(f"item {item_id} is a {item.modality.name} item; only image items have "
                                       f"thumbnails")
                uri = item.uri
            path = item_image_path(uri)
            if path is None:
                raise NotFound(f"item {item_id}'s image is not a local file ({uri!r}): fetch it from its URI")
            try:  # the messages name the file, never its folder: a path of the server is no client's business
                if not path.is_file():
                    raise NotFound(f"item {item_id}'s image file {path.name!r} is missing (or not a file)")
                with path.open("rb") as fh:
                    data = fh.read(config.max_upload_bytes + 1)
                modified = path.stat().st_mtime
            except OSError as e:  # strerror only: str(e) names the full path
                raise NotFound(f"item {item_id}'s image file {path.name!r} cannot be read "
                               f"({e.strerror or type(e).__name__})") from e
            if len(data) > config.max_upload_bytes:
                raise TooLarge(f"item {item_id}'s image file is larger than the upload limit of "
                               f"{config.max_upload_bytes} bytes")
            return Response(thumbnail(data, path.name, size, config.max_image_pixels), media_type="image/jpeg",
                            headers={"Cache-Control": "private, max-age=300",
                                     "Last-Modified": formatdate(modified, usegmt=True)})

        return await run_in_threadpool(work)

    return api
