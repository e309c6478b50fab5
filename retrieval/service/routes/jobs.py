"""The ingest jobs: ``GET /v1/jobs`` lists the newest, ``GET /v1/jobs/{job_id}`` reports one's state and
progress. Jobs are rows of the store, so they outlive the process and any replica answers for them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi import Path as PathParam
from starlette.concurrency import run_in_threadpool

from unibind.retrieval.service import payloads as p
from unibind.retrieval.service.errors import responses
from unibind.retrieval.service.jobs import JobManager
from unibind.schema.errors import NotFound

MAX_JOB_ID = 64
JOB_OPERATION = "job_status"
CORPUS_OPERATION = "corpus"  # GET /v1/corpora/{name} (routes/corpora.py)
# a job leads to its corpus (OpenAPI links): there while it is ingested (status ingesting), and after it is done
JOB_FOUND: dict[str, Any] = {"links": {"corpus": {
    "operationId": CORPUS_OPERATION, "parameters": {"name": "$response.body#/corpus"},
    "description": "the corpus this job ingests (404 while the job is queued, and if it failed)"}}}


def router(jobs: JobManager) -> APIRouter:
    """The job routes over ``jobs``."""
    api = APIRouter(tags=["knowledge base"])

    @api.get("/v1/jobs", response_model=list[p.JobView], responses=responses())
    async def job_list() -> list[p.JobView]:
        return await run_in_threadpool(jobs.recent)

    @api.get("/v1/jobs/{job_id}", operation_id=JOB_OPERATION, response_model=p.JobView,
             responses={200: JOB_FOUND, **responses(404, 422)})
    async def job_status(job_id: str = PathParam(description="the id `POST /v1/corpora` answered")) -> p.JobView:
        job = await run_in_threadpool(jobs.get, job_id[:MAX_JOB_ID])
        if job is None:
            raise NotFound(f"no job {job_id!r}")
        return job

    return api
