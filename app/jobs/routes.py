"""HTTP adapter for /v1/fine_tuning/jobs and their events, checkpoints and (an extension)
samples."""

from __future__ import annotations

import re

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from app.auth import current_project, get_session, get_settings_dep, reads
from app.jobs import reads as job_reads
from app.jobs import service as job_service
from app.jobs.schemas import (
    CheckpointObject,
    FineTuningJob,
    JobCreateRequest,
    JobEventObject,
    SampleObject,
)
from app.pagination import Page
from app.projects import ProjectRef
from app.settings import Settings
from app.tables import Checkpoint, JobEvent

router = APIRouter(prefix="/fine_tuning/jobs")

_METADATA_KEY = re.compile(r"^metadata\[(.+)\]$")


def _enqueue(request: Request) -> job_service.Enqueue:
    return request.app.state.enqueue_job


def _metadata_filter(request: Request) -> dict[str, str] | None:
    """`metadata[k]=v` pairs; the literal `metadata=null` asks for jobs without metadata."""
    if request.query_params.get("metadata") == "null":
        return {}
    pairs = {
        match.group(1): value
        for key, value in request.query_params.multi_items()
        if (match := _METADATA_KEY.match(key))
    }
    return pairs or None


@router.post("", response_model=FineTuningJob)
async def create_job(
    body: JobCreateRequest,
    request: Request,
    project: ProjectRef = Depends(current_project),
    session: Session = Depends(get_session),
    settings: Settings = Depends(get_settings_dep),
) -> FineTuningJob:
    job = await run_in_threadpool(
        job_service.create_job,
        session,
        settings,
        project,
        body,
        request.app.state.enqueue_validation,
        request.app.state.storage,
    )
    return FineTuningJob.from_row(job)


@router.get("", response_model=Page[FineTuningJob])
async def list_jobs(
    request: Request,
    after: str | None = None,
    limit: int = Query(20, ge=1, le=100),
    project: ProjectRef = Depends(current_project),
) -> Page[FineTuningJob]:
    rows, has_more = await job_reads.jobs(
        reads(request), project, after=after, limit=limit, metadata=_metadata_filter(request)
    )
    return Page.of_rows(FineTuningJob, [FineTuningJob.fields_of(row) for row in rows], has_more)


@router.get("/{job_id}", response_model=FineTuningJob)
async def retrieve_job(
    job_id: str, request: Request, project: ProjectRef = Depends(current_project)
) -> FineTuningJob:
    return FineTuningJob.from_columns(await job_reads.job(reads(request), project, job_id))


def _action_route(action: str):  # type: ignore[no-untyped-def]
    def act(
        job_id: str,
        request: Request,
        project: ProjectRef = Depends(current_project),
        session: Session = Depends(get_session),
    ) -> FineTuningJob:
        job = job_service.act_on_job(session, project, job_id, action, _enqueue(request))
        return FineTuningJob.from_row(job)

    act.__name__ = f"{action}_job"
    return act


for _action in ("cancel", "pause", "resume"):
    router.add_api_route(
        f"/{{job_id}}/{_action}",
        _action_route(_action),
        methods=["POST"],
        response_model=FineTuningJob,
    )


@router.get("/{job_id}/events", response_model=Page[JobEventObject])
async def list_events(
    job_id: str,
    request: Request,
    after: str | None = None,
    limit: int = Query(20, ge=1, le=1000),
    project: ProjectRef = Depends(current_project),
) -> Page[JobEventObject]:
    rows, has_more = await job_reads.newest_first(
        reads(request), project, JobEvent, job_id, after=after, limit=limit
    )
    return Page.of_rows(JobEventObject, rows, has_more)


@router.get("/{job_id}/checkpoints", response_model=Page[CheckpointObject])
async def list_checkpoints(
    job_id: str,
    request: Request,
    after: str | None = None,
    limit: int = Query(10, ge=1, le=100),
    project: ProjectRef = Depends(current_project),
) -> Page[CheckpointObject]:
    rows, has_more = await job_reads.newest_first(
        reads(request), project, Checkpoint, job_id, after=after, limit=limit
    )
    return Page.of_rows(CheckpointObject, rows, has_more)


# the largest step a query may name (the column is a 32-bit integer)
MAX_STEP = 2**31 - 1


@router.get("/{job_id}/samples")
async def list_samples(
    job_id: str,
    request: Request,
    step: int | None = Query(None, ge=0, le=MAX_STEP),
    split: str = "train",
    project: ProjectRef = Depends(current_project),
) -> dict:
    """Extension: the graded completions the trainer kept for a step (latest when omitted)."""

    def read(session: Session) -> dict:
        found_step, rows = job_service.list_samples(
            session, project, job_id, step=step, split=split
        )
        return {
            "object": "list",
            "data": [SampleObject.from_row(row).model_dump() for row in rows],
            "has_more": False,
            "step": found_step,
            "split": split,
        }

    return await reads(request).run(read)


@router.get("/{job_id}/sample_steps")
async def list_sample_steps(
    job_id: str,
    request: Request,
    split: str | None = None,
    project: ProjectRef = Depends(current_project),
) -> dict:
    """Extension: the steps that have samples, ascending, with how many each."""

    def read(session: Session) -> list[tuple[int, str, int]]:
        return job_service.list_sample_steps(session, project, job_id, split=split)

    rows = await reads(request).run(read)
    data = [{"step": step, "split": name, "count": count} for step, name, count in rows]
    return {"object": "list", "data": data}
