"""The reads of the job routes that clients poll (a job, the project's jobs, a job's events
and checkpoints): plain columns of the wire shapes, with no session and no ORM objects
(`app.rows`). Writes and everything else read through `app.jobs.service`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, bindparam, select

from app.errors import not_found
from app.projects import ProjectRef
from app.rows import RowSource, labelled
from app.tables import Checkpoint, Job, JobEvent

# the columns of FineTuningJob, by its field names, and the order key
JOB_COLUMNS = labelled(
    Job.seq, Job.id, Job.created_at, Job.model, Job.status, Job.fine_tuned_model,
    Job.finished_at, Job.trained_tokens, Job.training_file, Job.validation_file,
    Job.result_files, Job.seed, Job.hyperparameters, Job.error, Job.estimated_finish,
    Job.integrations, Job.method, Job.parent_job_id,
    organization_id=Job.project_id, metadata=Job.job_metadata, user_provided_suffix=Job.suffix,
)  # fmt: skip
# those of JobEventObject and CheckpointObject
EVENT_COLUMNS = labelled(
    JobEvent.seq, JobEvent.id, JobEvent.created_at, JobEvent.level, JobEvent.message,
    JobEvent.type, JobEvent.data,
)  # fmt: skip
CHECKPOINT_COLUMNS = labelled(
    Checkpoint.seq, Checkpoint.id, Checkpoint.created_at, Checkpoint.fine_tuned_model_checkpoint,
    Checkpoint.step_number, Checkpoint.metrics, fine_tuning_job_id=Checkpoint.job_id,
)  # fmt: skip
# a metadata filter reads the project's jobs in batches of this many until it has a page
JOB_BATCH = 100

_OF_PROJECT = (Job.id == bindparam("job_id"), Job.project_id == bindparam("project_id"))
_JOB = select(*JOB_COLUMNS).where(*_OF_PROJECT)
_JOB_SEQ = select(Job.seq).where(*_OF_PROJECT)
_JOBS_NEWEST = (
    select(*JOB_COLUMNS)
    .where(Job.project_id == bindparam("project_id"))
    .order_by(Job.seq.desc())
    .limit(bindparam("limit"))
)
_JOBS_BEFORE = _JOBS_NEWEST.where(Job.seq < bindparam("before_seq"))


def _newest_first(
    table: type[JobEvent] | type[Checkpoint], columns: list[Any]
) -> tuple[Select[Any], Select[Any]]:
    """A job's rows of `table`, newest first: from the newest, and from before a cursor;
    none unless the job is the project's."""
    newest = (
        select(*columns)
        .join(Job, Job.id == table.job_id)
        .where(table.job_id == bindparam("job_id"), Job.project_id == bindparam("project_id"))
        .order_by(table.seq.desc())
        .limit(bindparam("limit"))
    )
    return newest, newest.where(table.seq < bindparam("before_seq"))


_ROWS_NEWEST = {
    JobEvent: _newest_first(JobEvent, EVENT_COLUMNS),
    Checkpoint: _newest_first(Checkpoint, CHECKPOINT_COLUMNS),
}
_CURSOR_SEQ = {
    table: select(table.seq).where(
        table.id == bindparam("after"), table.job_id == bindparam("job_id")
    )
    for table in (JobEvent, Checkpoint)
}
_KIND = {JobEvent: "event", Checkpoint: "checkpoint"}


async def job(source: RowSource, project: ProjectRef, job_id: str) -> dict[str, Any]:
    """The project's job, as a row of JOB_COLUMNS; 404 when it has none of that id."""
    found = await source.rows(_JOB, {"job_id": job_id, "project_id": project.id})
    if not found:
        raise not_found("job", job_id)
    return found[0]


async def _job_seq(source: RowSource, project: ProjectRef, job_id: str) -> int:
    found = await source.rows(_JOB_SEQ, {"job_id": job_id, "project_id": project.id})
    if not found:
        raise not_found("job", job_id)
    return int(found[0]["seq"])


def metadata_matches(job: dict[str, Any], wanted: dict[str, str] | None) -> bool:
    """`wanted`: `metadata[k]=v` pairs; {} asks for jobs without metadata; None for all."""
    if wanted is None:
        return True
    if not wanted:
        return not job["metadata"]
    stored = job["metadata"] or {}
    return all(stored.get(key, None if value else "") == value for key, value in wanted.items())


async def jobs(
    source: RowSource, project: ProjectRef, *, after: str | None, limit: int,
    metadata: dict[str, str] | None,
) -> tuple[Sequence[dict[str, Any]], bool]:  # fmt: skip
    """A page of the project's jobs, newest first, after the `after` job, and whether there
    are more. Without a filter, SQL reads the page and one row more; with one, the jobs are
    read in batches of JOB_BATCH until a page (and one more) matched."""
    before_seq = await _job_seq(source, project, after) if after else None
    if metadata is None:
        statement, parameters = _jobs_statement(project, before_seq)
        return await source.page(statement, parameters, limit)
    matches: list[dict[str, Any]] = []
    while len(matches) <= limit:
        statement, parameters = _jobs_statement(project, before_seq)
        batch = await source.rows(statement, {**parameters, "limit": JOB_BATCH})
        matches += [row for row in batch if metadata_matches(row, metadata)]
        if len(batch) < JOB_BATCH:
            break
        before_seq = batch[-1]["seq"]
    return matches[:limit], len(matches) > limit


def _jobs_statement(
    project: ProjectRef, before_seq: int | None
) -> tuple[Select[Any], dict[str, Any]]:
    if before_seq is None:
        return _JOBS_NEWEST, {"project_id": project.id}
    return _JOBS_BEFORE, {"project_id": project.id, "before_seq": before_seq}


async def newest_first(
    source: RowSource, project: ProjectRef, table: type[JobEvent] | type[Checkpoint],
    job_id: str, *, after: str | None, limit: int,
) -> tuple[Sequence[dict[str, Any]], bool]:  # fmt: skip
    """A page of the job's events or checkpoints, newest first, after the `after` row.

    The page's statement checks the job is the project's: a request reads twice (its key, the
    page), and only an empty page asks whether that is because there is no such job."""
    newest, before = _ROWS_NEWEST[table]
    parameters: dict[str, Any] = {"job_id": job_id, "project_id": project.id}
    if not after:
        found = await source.page(newest, parameters, limit)
        if not found[0]:
            await _job_seq(source, project, job_id)  # a 404 for another project's job
        return found
    await _job_seq(source, project, job_id)
    cursor = await source.rows(_CURSOR_SEQ[table], {"after": after, "job_id": job_id})
    if not cursor:
        raise not_found(_KIND[table], after, param="after")
    return await source.page(before, {**parameters, "before_seq": cursor[0]["seq"]}, limit)
