"""Background ingestion: an uploaded corpus (``POST /v1/corpora``, checked before it gets here) is ingested in a
job, one at a time per process; ``GET /v1/jobs/{id}`` reports the job's state and progress, ``GET /v1/jobs``
the newest jobs.

Jobs are rows of the store (``schema.Job``): their state outlives the process, and any replica of the service
answers for them. A job whose process died (a restart, a kill) reads as ``interrupted``; its half-written corpus
was never visible and goes at the next write. The process renews the lease of its live jobs with a heartbeat.

The ingest publishes the corpus in one short commit (``unibind.indexer.store.ingest``); then the job moves the
service to a snapshot of the new catalog and only then reports ``done``, so new queries see the corpus without a
restart while the queries before it answered from the old catalog (a replaced corpus included: they read their
own catalog version's rows, so a replacing upload holds no query back). The job shares the service's loaded encoder,
which encodes in slices under the first-come, first-served compute lock, so queries keep running between
the slices.

A process holds at most ``max_queued`` upload jobs queued or running (each holds its parsed corpus in memory): a
slot is reserved under a lock before the job's row is written and freed when the job ends, whatever its outcome
(cancelled at shutdown included). An upload past the bound is :class:`TooManyUploads` (429), and nothing is
written.
"""

from __future__ import annotations

import logging
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import delete, select, update

from unibind.indexer.readers.corpus import CorpusData
from unibind.indexer.store.ingest import IngestConfig, ingest
from unibind.indexer.runtime.lease import Heartbeat, current_owner, is_alive
from unibind.retrieval.service import payloads as p
from unibind.retrieval.service.errors import RETRY_AFTER_SECONDS, TooManyUploads, strip_paths
from unibind.retrieval.service.state import ServiceState
from unibind.schema import Database, Job
from unibind.schema.errors import UnibindError

log = logging.getLogger(__name__)

MAX_JOBS_KEPT = 1000  # finished jobs beyond this are forgotten, oldest first
LIVE = ("queued", "running")
INTERRUPTED = "interrupted"


def view(job: Job) -> p.JobView:
    """A job as the API shows it: a queued or running job whose process died is ``interrupted``; its error names no
    path of the server (the store keeps the full message)."""
    state = job.state
    if state in LIVE and not is_alive(job.owner, job.heartbeat_at):
        state = INTERRUPTED
    progress = p.JobProgress(done=job.done, total=job.total)
    return p.JobView(id=job.id, state=state, progress=progress,  # type: ignore[arg-type]
                     corpus=job.corpus, error=strip_paths(job.error) if job.error else job.error,
                     started_at=job.started_at, finished_at=job.finished_at)


def _move_on(state: ServiceState, job_id: str) -> None:
    """After a job's publish: the service moves to the new catalog before the job says done."""
    try:
        state.refresh()
    except Exception as e:  # noqa: BLE001 - the corpus is published; the next query retries the build
        log.warning("ingest job %s: the service could not load the new catalog yet: %s", job_id, e)


class JobManager:
    """Ingestion jobs of one process: run one at a time on a worker thread, recorded in the store; at most
    ``max_queued`` queued or running (None: no bound)."""

    def __init__(self, max_queued: int | None = None) -> None:
        self._pool: ThreadPoolExecutor | None = None  # made by open(): an app's lifespan may run more than once
        self._db: Database | None = None
        self._owner = current_owner()
        self._heartbeat: Heartbeat | None = None
        self.max_queued = max_queued
        self._slots = threading.Lock()
        self._reserved: set[str] = set()  # jobs of this process queued or running: each holds a slot

    # -- the bound on queued uploads --------------------------------------------------------------------------
    def _full(self) -> TooManyUploads | None:
        if self.max_queued is None or len(self._reserved) < self.max_queued:
            return None
        return TooManyUploads(f"this server has {len(self._reserved)} uploads queued or running, its limit: "
                              f"nothing was written; try again in {RETRY_AFTER_SECONDS} seconds")

    def check_room(self) -> None:
        """TooManyUploads when no slot is free now (an early answer before an upload is read; :meth:`submit`
        reserves its slot itself)."""
        with self._slots:
            full = self._full()
        if full is not None:
            raise full

    def _reserve(self, job_id: str) -> None:
        with self._slots:
            full = self._full()
            if full is None:
                self._reserved.add(job_id)
        if full is not None:
            raise full

    def _free(self, job_id: str) -> None:
        """The job's slot is free (once: the job frees it before it records its end, so a client that sees the end
        finds the slot free; a job cancelled at shutdown frees it when its future ends)."""
        with self._slots:
            self._reserved.discard(job_id)

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
        """Queue the ingest of ``data``; TooManyUploads (nothing written) when ``max_queued`` jobs are queued or
        running already."""
        if self._pool is None:
            raise RuntimeError("the job manager is not open (JobManager.open)")
        job_id = uuid.uuid4().hex
        self._reserve(job_id)  # before the row: an upload past the bound writes nothing
        try:
            now = datetime.now(timezone.utc)
            with self.db.transaction() as session:
                session.add(Job(id=job_id, kind="ingest", corpus=config.name.strip(), space=config.encoder,
                                state="queued", done=0, total=len(data.records), owner=self._owner,
                                heartbeat_at=now, created_at=now))
                finished = (select(Job.id).where(Job.state.not_in(LIVE)).order_by(Job.created_at.desc())
                            .offset(MAX_JOBS_KEPT))
                old = list(session.scalars(finished))
                if old:
                    session.execute(delete(Job).where(Job.id.in_(old)))
            future = self._pool.submit(self._run, job_id, state, data, config)
        except BaseException:
            self._free(job_id)
            raise
        future.add_done_callback(lambda _: self._free(job_id))  # ended, raised or cancelled: its slot is free
        return job_id

    def _run(self, job_id: str, state: ServiceState, data: CorpusData, config: IngestConfig) -> None:
        self._update(job_id, state="running", started_at=datetime.now(timezone.utc))

        def progress(done: int, total: int) -> None:
            self._update(job_id, done=done, total=total, heartbeat_at=datetime.now(timezone.utc))

        error: str | None = None
        try:
            ingest(state.db, data, config, home=state.config.home, device=state.device,
                   encoder=state.encoder_for(config.encoder), progress=progress)  # type: ignore[arg-type]
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
        self._free(job_id)  # before the end is recorded: a client that sees it can upload again at once
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

