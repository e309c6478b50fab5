"""The corpora of the served space: ``GET /v1/corpora`` lists them, ``GET /v1/corpora/{name}`` shows one,
``DELETE /v1/corpora/{name}`` removes a
complete one, and ``POST /v1/corpora`` uploads a corpus file: it is checked at once (a bad file is a 400 naming
its line or field, and nothing is written), then ingested by a background job (``GET /v1/jobs/{id}``); past the
uploads a process holds queued or running, an upload is a 429 and nothing is written."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Request, Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from unibind.indexer.readers.corpus import FORMATS, CorpusData, format_of, read_corpus_bytes
from unibind.indexer.store.ingest import MAX_NAME_CHARS, IngestConfig
from unibind.retrieval.service import payloads as p
from unibind.retrieval.service.config import ServiceConfig
from unibind.retrieval.service.dependencies import State, served_state
from unibind.retrieval.service.errors import UnsupportedMediaType, responses
from unibind.retrieval.service.jobs import JobManager
from unibind.retrieval.service.routes.jobs import CORPUS_OPERATION, JOB_OPERATION
from unibind.retrieval.service.queries import MULTIPART, form_schema
from unibind.retrieval.service.state import ServiceState
from unibind.retrieval.service.upload import form_options, read_form_upload
from unibind.schema import Corpus, CorpusStatus
from unibind.schema.errors import Conflict, InvalidInput, NotFound

log = logging.getLogger(__name__)

FILE_FIELD = "file"
CORPUS_NAME = r"^[^~\x00-\x1f\s][^\x00-\x1f]*$"  # what IngestConfig accepts: printable, not starting with '~'
OPTIONAL_TEXT = ("source", "key", "encoder")  # free text: an empty field is one left out
# what an upload leads to (OpenAPI links): its job, whose ``corpus`` is the corpus once the ingest has started
ACCEPTED: dict[str, Any] = {
    "description": "the upload is checked and queued: its ingest job is in the body and in Location",
    "headers": {"Location": {"description": "the job's URL (GET it for its state and progress)",
                             "schema": {"type": "string"}}},
    "links": {"job": {"operationId": JOB_OPERATION, "parameters": {"job_id": "$response.body#/job"},
                      "description": "the ingest job of this upload"}},
}


def _corpus_name(value: str | None) -> str | None:
    if value is not None and (len(value) > MAX_NAME_CHARS or not re.fullmatch(CORPUS_NAME, value)):
        raise InvalidInput(f"corpus name {value!r} must be 1-{MAX_NAME_CHARS} printable characters, not starting "
                           f"with '~' or a space")
    return value


def _known_format(value: str | None) -> str | None:
    if value is not None and value not in FORMATS:
        raise InvalidInput(f"unknown format {value!r}; use one of {', '.join(FORMATS)}")
    return value


class CorpusUpload(BaseModel):
    """The form fields beside the corpus file."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str | None, AfterValidator(_corpus_name)] = Field(
        None, description="the corpus name (default: the file name's stem)",
        json_schema_extra={"maxLength": MAX_NAME_CHARS, "pattern": CORPUS_NAME})
    source: str | None = Field(None, description="where the corpus comes from (free text)")
    format: Annotated[str | None, AfterValidator(_known_format)] = Field(
        None, description="default: the file name's extension", json_schema_extra={"enum": list(FORMATS)})
    key: str | None = Field(None, description="JSON only: the key holding the category table")
    replace: bool = Field(False, description="replace a complete corpus of the same name")
    encoder: str | None = Field(None, description="the space's encoder (default: the served space; another one is "
                                                   "a 409: one service serves one space)")


def upload_schema() -> dict[str, Any]:
    """The OpenAPI request body of ``POST /v1/corpora``: a corpus file and its ingest options."""
    form = form_schema(CorpusUpload, FILE_FIELD, f"the corpus: {', '.join(FORMATS)} (UTF-8)")
    return {"requestBody": {"required": True, "content": {MULTIPART: {"schema": form}}}}


def _format(options: CorpusUpload, filename: str) -> str:
    found = options.format or format_of(filename)
    if found is None:
        raise InvalidInput(f"cannot tell the format of {filename!r} from its extension: give the form field "
                           f"'format' ({', '.join(FORMATS)})")
    return found


def router(config: ServiceConfig, jobs: JobManager) -> APIRouter:
    """The corpus routes; uploads are ingested by ``jobs``."""
    api = APIRouter(tags=["knowledge base"])

    def listed(st: ServiceState) -> list[p.CorpusInfo]:
        from unibind.indexer.store.contents import corpus_state, list_corpora

        with st.db.session() as session:  # the served space's corpora; an ingest shows under its coming name
            space = st.served_space(session)
            return [p.CorpusInfo(name=c.target_name or c.name, space=c.space.encoder, status=corpus_state(c),
                                 descriptions=c.n_descriptions, categories=c.n_categories, duplicates=c.n_duplicates,
                                 source=c.source, origin=c.origin, created_at=c.created_at,
                                 completed_at=c.completed_at)
                    for c in list_corpora(session) if space is not None and c.space_id == space.id]

    @api.get("/v1/corpora", response_model=list[p.CorpusInfo], responses=responses())
    async def corpora(st: State) -> list[p.CorpusInfo]:
        return await run_in_threadpool(listed, st)

    @api.get("/v1/corpora/{name}", operation_id=CORPUS_OPERATION, response_model=p.CorpusInfo,
             responses=responses(404, 422))
    async def corpus(name: str, st: State) -> p.CorpusInfo:
        """One corpus of the served space: complete, or still being ingested (``status``) under the name an
        upload's job names (``corpus``); 404 until its ingest has started, and after it is deleted."""
        found = [c for c in await run_in_threadpool(listed, st) if c.name == name]
        if not found:
            raise NotFound(f"no corpus named {name!r}")
        return next((c for c in found if c.status == CorpusStatus.COMPLETE.value), found[0])

    @api.delete("/v1/corpora/{name}", response_model=p.Deleted, responses=responses(404, 409, 422))
    async def delete(name: str, st: State) -> p.Deleted:
        """Delete a complete corpus of the served space (queries in flight finish on the catalog they started
        with; the answer comes once the service has moved to the new one). 409 while it is being ingested."""
        from unibind.indexer.store.contents import corpus_state
        from unibind.indexer.store.removal import delete_corpus

        def work() -> p.Deleted:
            with st.db.session() as session:  # a complete corpus of the served space, or a live ingest of one
                space = st.served_space(session)
                corpus_id = None if space is None else session.scalar(select(Corpus.id).where(
                    Corpus.space_id == space.id, Corpus.name == name, Corpus.status == CorpusStatus.COMPLETE))
                if corpus_id is None and space is not None:  # delete_corpus refuses a live ingest: a Conflict
                    ingesting = session.scalars(select(Corpus).where(
                        Corpus.space_id == space.id, Corpus.target_name == name,
                        Corpus.status == CorpusStatus.INGESTING))
                    corpus_id = next((c.id for c in ingesting if corpus_state(c) == CorpusStatus.INGESTING.value),
                                     None)
            if corpus_id is None:
                raise NotFound(f"no corpus named {name!r}")
            n = delete_corpus(st.db, corpus_id, config.home, st.device)
            try:
                st.refresh()
            except Exception as e:  # noqa: BLE001 - the corpus is gone; the next query retries the build
                log.warning("deleted corpus %r; the service could not load the new catalog yet: %s", name, e)
            return p.Deleted(deleted=name, descriptions=n)

        return await run_in_threadpool(work)

    @api.post("/v1/corpora", status_code=202, response_model=p.JobAccepted, openapi_extra=upload_schema(),
              responses={202: ACCEPTED, **responses(400, 409, 413, 415, 422, 429)})
    async def upload_corpus(request: Request, response: Response) -> p.JobAccepted:
        """Accepted: the ingest runs as a job, named in the body and in ``Location``; the job names the corpus.
        429 with Retry-After (and nothing written) while this server holds its limit of uploads queued or
        running (``--max-queued-uploads``)."""
        content_type = request.headers.get("content-type", "")
        if not content_type.startswith(MULTIPART):
            raise UnsupportedMediaType(f"upload the corpus as {MULTIPART} with the file in the field '{FILE_FIELD}'")
        jobs.check_room()  # no slot free: answered before the body is read (submit reserves the slot, race-free)
        data, filename, form = await read_form_upload(request, FILE_FIELD, "the corpus file", config.max_upload_bytes)
        options = form_options(CorpusUpload, {k: v for k, v in form.multi_items()
                                              if k != FILE_FIELD and isinstance(v, str) and (v or k not in OPTIONAL_TEXT)})
        filename = filename or "corpus"
        fmt = _format(options, filename)
        name = options.name or Path(filename).stem
        st = served_state(request)  # after the body: a body over the limit needs no state

        def check() -> tuple[CorpusData, IngestConfig]:
            corpus = read_corpus_bytes(data, label=filename, format=fmt, key=options.key)  # CorpusError: a 400
            encoder = st.check_upload_encoder(options.encoder)  # the served space's, and no other
            ingest_config = IngestConfig(name=name, encoder=encoder, source=options.source, replace=options.replace,
                                         progress=False)
            if not options.replace and st.corpus_exists(ingest_config.name.strip(), encoder):
                raise Conflict(f"corpus {ingest_config.name.strip()!r} already exists: send replace=true, or delete "
                               f"it first")
            return corpus, ingest_config

        corpus, ingest_config = await run_in_threadpool(check)
        job_id = await run_in_threadpool(jobs.submit, st, corpus, ingest_config)
        response.headers["Location"] = f"/v1/jobs/{job_id}"
        return p.JobAccepted(job=job_id, status_url=f"/v1/jobs/{job_id}")

    return api
