"""Background ingestion: ``POST /v1/corpora`` checks an uploaded corpus file at once (a bad file is a 400
naming its line or field, and nothing is written), then ingests it in a job, one at a time per process;
``GET /v1/jobs/{id}`` reports the job's state and progress, ``GET /v1/jobs`` every job this process knows.

The ingest publishes the corpus in one commit (``indexer.ingest``); then the job moves the service to a
snapshot of the new catalog and only then reports ``done``, so new queries see the corpus without a restart
while the queries before it answered from the old catalog. The job shares the service's loaded encoder,
which encodes in slices under the first-come, first-served compute lock, so queries keep running between
the slices.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from indexer.corpus_reader import FORMATS, CorpusData, read_corpus_bytes
from indexer.encoder_factory import parse_encoder_spec
from indexer.ingest import IngestConfig, ingest
from retrieval.service import payloads as p
from retrieval.service.config import ServiceConfig
from retrieval.service.state import ServiceState, service_of
from retrieval.service.upload import read_form_upload

log = logging.getLogger(__name__)

SUFFIXES = {".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
TRUE, FALSE = frozenset({"1", "true", "yes", "on"}), frozenset({"", "0", "false", "no", "off"})
MAX_JOBS_KEPT = 1000  # finished jobs beyond this are forgotten, oldest first


@dataclass
class Job:
    id: str
    corpus: str
    total: int
    state: str = "queued"  # queued, running, done, failed
    done: int = 0
    error: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None

    def view(self) -> p.JobView:
        return p.JobView(id=self.id, state=self.state, progress=p.JobProgress(done=self.done, total=self.total),
                         corpus=self.corpus, error=self.error, started_at=self.started_at, finished_at=self.finished_at)


def _move_on(state: ServiceState, job: Job) -> None:
    """After a job's publish: the service moves to the new catalog before the job says done."""
    try:
        state.refresh()
    except Exception as e:  # noqa: BLE001 - the corpus is published; the next query retries the build
        log.warning("ingest job %s: the service could not load the new catalog yet: %s", job.id, e)


@contextmanager
def _replacing(state: ServiceState, job: Job) -> Iterator[None]:
    """Around a replacing publish (it removes the old corpus): like a deletion, it waits for the queries in
    flight and moves the service on before new queries start."""
    with state.catalog.exclusive():
        yield
        _move_on(state, job)


class JobManager:
    """Ingestion jobs of one process: run one at a time on a worker thread, kept in memory."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="unibind-job")
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def recent(self) -> list[Job]:
        """The jobs this process knows, newest first."""
        with self._lock:
            return list(reversed(self._jobs.values()))

    def submit(self, state: ServiceState, data: CorpusData, config: IngestConfig) -> Job:
        job = Job(id=uuid.uuid4().hex, corpus=config.name.strip(), total=len(data.records))
        with self._lock:
            finished = [j.id for j in self._jobs.values() if j.state in ("done", "failed")]
            for old in finished[: max(0, len(self._jobs) - MAX_JOBS_KEPT + 1)]:
                del self._jobs[old]
            self._jobs[job.id] = job
        self._pool.submit(self._run, job, state, data, config)
        return job

    def _run(self, job: Job, state: ServiceState, data: CorpusData, config: IngestConfig) -> None:
        job.started_at, job.state = datetime.now(timezone.utc), "running"

        def progress(done: int, total: int) -> None:
            job.done, job.total = done, total

        error: str | None = None
        try:
            guard = (lambda: _replacing(state, job)) if config.replace else None
            ingest(state.db, data, config, home=state.config.home, device=state.device,
                   encoder=state.encoder_for(config.encoder), progress=progress, publish_guard=guard)  # type: ignore[arg-type]
            if not config.replace:
                _move_on(state, job)
        except Exception as e:  # the job records its one-line error; the service keeps running
            log.warning("ingest job %s (%s) failed: %s", job.id, job.corpus, e)
            lines = str(e).strip().splitlines()
            error = f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__
        job.finished_at, job.error = datetime.now(timezone.utc), error  # before the state: a poller sees it whole
        job.state = "failed" if error else "done"

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _flag(form: dict[str, Any], key: str) -> bool:
    raw = str(form.get(key) or "").strip().lower()
    if raw in TRUE or raw in FALSE:
        return raw in TRUE
    raise HTTPException(422, f"form field {key!r} must be true or false, got {form.get(key)!r}")


def _format(form: dict[str, Any], filename: str) -> str:
    given = str(form.get("format") or "").strip().lower()
    if given:
        if given not in FORMATS:
            raise HTTPException(400, f"unknown format {given!r}; use one of {', '.join(FORMATS)}")
        return given
    found = SUFFIXES.get(Path(filename).suffix.lower())
    if found is None:
        raise HTTPException(400, f"cannot tell the format of {filename!r} from its extension: give the form field "
                                 f"'format' ({', '.join(FORMATS)})")
    return found


def add_routes(app: FastAPI, config: ServiceConfig, jobs: JobManager) -> None:
    """``POST /v1/corpora`` and ``GET /v1/jobs/{id}`` on ``app``."""

    @app.post("/v1/corpora", status_code=202, response_model=p.JobAccepted, tags=["knowledge base"],
              openapi_extra=p.corpus_upload(), responses={404: {"model": p.ErrorBody}, 409: {"model": p.ErrorBody},
                                                          413: {"model": p.ErrorBody}})
    async def upload_corpus(request: Request) -> p.JobAccepted:
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise HTTPException(415, "upload the corpus as multipart/form-data with the file in the field 'file'")
        data, filename, form = await read_form_upload(request, "file", "the corpus file", config.max_upload_bytes, 16)
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        filename = filename or "corpus"
        fmt = _format(fields, filename)
        key = fields.get("key") or None
        name = fields.get("name") or Path(filename).stem
        replace = _flag(fields, "replace")
        st = service_of(request)

        def check() -> tuple[CorpusData, IngestConfig]:
            corpus = read_corpus_bytes(data, label=filename, format=fmt, key=key)  # CorpusError: a 400
            encoder = fields.get("encoder") or st.current_encoder()
            if encoder is None:
                raise HTTPException(400, "the knowledge base is empty: give the form field 'encoder' (e.g. minilm)")
            ingest_config = IngestConfig(name=name, encoder=encoder, source=fields.get("source") or None,
                                         replace=replace, progress=False)
            if not replace and st.corpus_exists(ingest_config.name.strip(), str(parse_encoder_spec(encoder))):
                raise HTTPException(409, f"corpus {ingest_config.name.strip()!r} already exists: send replace=true, "
                                         f"or delete it first")
            return corpus, ingest_config

        corpus, ingest_config = await run_in_threadpool(check)
        job = jobs.submit(st, corpus, ingest_config)
        return p.JobAccepted(job=job.id, status_url=f"/v1/jobs/{job.id}")

    @app.get("/v1/jobs", response_model=list[p.JobView], tags=["knowledge base"])
    async def job_list() -> list[p.JobView]:
        return [job.view() for job in jobs.recent()]

    @app.get("/v1/jobs/{job_id}", response_model=p.JobView, tags=["knowledge base"],
             responses={404: {"model": p.ErrorBody}})
    async def job_status(job_id: str) -> p.JobView:
        job = jobs.get(job_id)
        if job is None:
            raise HTTPException(404, f"no job {job_id!r}")
        return job.view()
