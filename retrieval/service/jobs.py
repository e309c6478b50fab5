"""Background ingestion: an uploaded corpus (``POST /v1/corpora``, checked before it gets here) is ingested in a
job, one at a time per process; ``GET /v1/jobs/{id}`` reports the job's state and progress, ``GET /v1/jobs``
the newest jobs.

Jobs are rows of the store (``schema.Job``): their state outlives the process, and any replica of the service
answers for them. A job whose process died (a restart, a kill) reads as ``interrupted``; its half-written corpus
was never visible and goes at the next write. The process renews the lease of its live jobs with a heartbeat.

The ingest publishes the corpus in one commit (``unibind.indexer.store.ingest``); then the job moves the service to a
snapshot of the new catalog and only then reports ``done``, so new queries see the corpus without a restart
while the queries before it answered from the old catalog. The job shares the service's loaded encoder,
which encodes in slices under the first-come, first-served compute lock, so queries keep running between
the slices.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import delete, select, update

from unibind.indexer.readers.corpus import CorpusData
from unibind.indexer.store.ingest import IngestConfig, ingest
from unibind.indexer.store.lease import Heartbeat, current_owner, is_alive
from unibind.retrieval.service import payloads as p
from unibind.retrieval.service.state import ServiceState
from unibind.schema import Database, Job
from unibind.schema.errors import UnibindError

log = logging.getLogger(__name__)

MAX_JOBS_KEPT = 1000  # finished jobs beyond this are forgotten, oldest first
LIVE = ("queued", "running")
INTERRUPTED = "interrupted"


def view(job: Job) -> p.JobView:
    """A job as the API shows it: a queued or running job whose process died is ``interrupted``."""
    state = job.state
    if state in LIVE and not is_alive(job.owner, job.heartbeat_at):
        state = INTERRUPTED
    progress = p.JobProgress(done=job.done, total=job.total)
    return p.JobView(id=job.id, state=state, progress=progress,  # type: ignore[arg-type]
                     corpus=job.corpus, error=job.error, started_at=job.started_at, finished_at=job.finished_at)


def _move_on(state: ServiceState, job_id: str) -> None:
    """After a job's publish: the service moves to the new catalog before the job says done."""
    try:
        state.refresh()
    except Exception as e:  # noqa: BLE001 - the corpus is published; the next query retries the build
        log.warning("ingest job %s: the service could not load the new catalog yet: %s", job_id, e)


@contextmanager
def _replacing(state: ServiceState, job_id: str) -> Iterator[None]:
    """Around a replacing publish (it removes the old corpus): like a deletion, it waits for the queries in
    flight and moves the service on before new queries start."""
    with state.deletion_gate.exclusive():
        yield
        _move_on(state, job_id)


class JobManager:
    """Ingestion jobs of one process: run one at a time on a worker thread, recorded in the store."""

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None  # made by open(): an app's lifespan may run more than once
        self._db: Database | None = None
        self._owner = current_owner()
        self._heartbeat: Heartbeat | None = None

    def open(self, db: Database) -> None:
        """Bind to the store: jobs left queued or running by a process that died are marked interrupted, and a
        heartbeat keeps this process's jobs alive."""
        self._db = db
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="unibind-job")
        with db.transaction() as session:
            stale = [j for j in session.scalars(select(Job).where(Job.state.in_(LIVE)))
                     if not is_alive(j.owner, j.heartbeat_at)]
            for job in stale:
                job.state, job.finished_at = INTERRUPTED, job.finished_at or datetime.now(timezone.utc)
                job.error = job.error or "interrupted: the service process stopped before the job finished"
        if stale:
            log.warning("%d ingest jobs of a stopped service process are marked interrupted", len(stale))
        self._heartbeat = Heartbeat(self._beat, name="unibind-job-heartbeat")
        self._heartbeat.__enter__()

    @property
    def db(self) -> Database:
        if self._db is None:
            raise RuntimeError("the job manager is not bound to a store (JobManager.open)")
        return self._db

    def _beat(self) -> bool:
        with self.db.transaction() as session:
            session.execute(update(Job).where(Job.owner == self._owner, Job.state.in_(LIVE))
                            .values(heartbeat_at=datetime.now(timezone.utc)))
        return True

    def _update(self, job_id: str, **values: Any) -> None:
        with self.db.transaction() as session:
            session.execute(update(Job).where(Job.id == job_id).values(**values))

    def get(self, job_id: str) -> p.JobView | None:
        with self.db.session() as session:
            job = session.get(Job, job_id)
            return view(job) if job is not None else None

    def recent(self) -> list[p.JobView]:
        """The newest jobs (at most the ones kept), newest first."""
        with self.db.session() as session:
            jobs = session.scalars(select(Job).order_by(Job.created_at.desc(), Job.id).limit(MAX_JOBS_KEPT))
            return [view(j) for j in jobs]

    def submit(self, state: ServiceState, data: CorpusData, config: IngestConfig) -> str:
        job_id = uuid.uuid4().hex
        now = datetime.now(timezone.utc)
        with self.db.transaction() as session:
            session.add(Job(id=job_id, kind="ingest", corpus=config.name.strip(), space=config.encoder, state="queued",
                            done=0, total=len(data.records), owner=self._owner, heartbeat_at=now, created_at=now))
            finished = select(Job.id).where(Job.state.not_in(LIVE)).order_by(Job.created_at.desc()).offset(MAX_JOBS_KEPT)
            old = list(session.scalars(finished))
            if old:
                session.execute(delete(Job).where(Job.id.in_(old)))
        if self._pool is None:
            raise RuntimeError("the job manager is not open (JobManager.open)")
        self._pool.submit(self._run, job_id, state, data, config)
        return job_id

    def _run(self, job_id: str, state: ServiceState, data: CorpusData, config: IngestConfig) -> None:
        self._update(job_id, state="running", started_at=datetime.now(timezone.utc))

        def progress(done: int, total: int) -> None:
            self._update(job_id, done=done, total=total, heartbeat_at=datetime.now(timezone.utc))

        error: str | None = None
        try:
            guard = (lambda: _replacing(state, job_id)) if config.replace else None
            ingest(state.db, data, config, home=state.config.home, device=state.device,
                   encoder=state.encoder_for(config.encoder), progress=progress, publish_guard=guard)  # type: ignore[arg-type]
            if not config.replace:
                _move_on(state, job_id)
        except Exception as e:  # the job records its one-line error; the service keeps running
            if isinstance(e, UnibindError):  # a user's mistake or the store's state: its message is for the user
                log.warning("ingest job %s (%s) failed: %s", job_id, config.name, e)
                lines = str(e).strip().splitlines()
                error = f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__
            else:  # the server's own trouble: the log has it, the client gets no server details
                log.exception("ingest job %s (%s) failed", job_id, config.name)
                error = f"internal error (job {job_id}; see the server log)"
            try:
                state.release_unmade_space()
            except Exception as e2:  # noqa: BLE001 - only a convenience for the next upload
                log.warning("ingest job %s: %s", job_id, e2)
        try:
            self._update(job_id, state="failed" if error else "done", error=error,
                         finished_at=datetime.now(timezone.utc))
        except Exception as e:  # noqa: BLE001 - the store went away: the job reads as interrupted later
            log.error("ingest job %s: could not record its end (%s): %s", job_id, "failed" if error else "done", e)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._heartbeat is not None:
            self._heartbeat.__exit__(None, None, None)
            self._heartbeat = None

