"""Fine-tuning jobs: create with every up-front check, list, act on, and read events.

The one place that decides what the API does to a job; routes only translate HTTP.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from app import ids
from app.base_models import find_base_model
from app.errors import APIError, bad_request, not_found
from app.graders import normalize_grader, validate_grader
from app.jobs import (
    IllegalTransition,
    JobStatus,
    ParamError,
    normalize_method,
    repository,
    validate_metadata,
    validate_seed,
    validate_suffix,
)
from app.jobs.schemas import JobCreateRequest
from app.jobs.states import CREATED_MESSAGE, UserAction, validating_file_message
from app.settings import Settings
from app.tables import Checkpoint, File, Job, JobEvent, JobSample, Project, now

# sends a committed job to the workers (app.queue.job_sender in the API)
Enqueue = Callable[[str], None]
GRADER_PARAM = "method.reinforcement.grader"
# OpenAI's SFT job echo: these three only
SUPERVISED_ECHO_KEYS = ("batch_size", "learning_rate_multiplier", "n_epochs")


def _training_input(session: Session, project: Project, file_id: str | None, param: str) -> File:
    row = None
    if file_id:
        row = session.scalar(select(File).where(File.id == file_id, File.project_id == project.id))
    if row is None:
        raise APIError(400, f"File '{file_id}' does not exist.", param=param, code="file_not_found")
    if row.purpose != "fine-tune":
        raise bad_request(
            f"File '{file_id}' has purpose '{row.purpose}'; fine-tuning needs purpose 'fine-tune'.",
            param=param,
            code="invalid_file_purpose",
        )
    return row


def _check_grader(grader: dict[str, Any], settings: Settings) -> dict[str, Any]:
    errors = validate_grader(
        grader, path=GRADER_PARAM, max_source_bytes=settings.grader_max_source_bytes
    )
    if errors:
        first = errors[0]
        raise bad_request(
            f"Invalid grader: {first.message}", param=first.path, code="invalid_grader"
        )
    return normalize_grader(grader)


def _param(error: ParamError) -> APIError:
    return bad_request(error.message, param=error.param)


def create_job(
    session: Session, settings: Settings, project: Project, body: JobCreateRequest, enqueue: Enqueue
) -> Job:
    if find_base_model(settings, body.model) is None:
        raise APIError(
            400,
            f"Model '{body.model}' does not exist or is not available for fine-tuning.",
            param="model",
            code="model_not_available",
        )
    _training_input(session, project, body.training_file, "training_file")
    if body.validation_file is not None:
        _training_input(session, project, body.validation_file, "validation_file")
    try:
        method = normalize_method(body.method, body.hyperparameters)
        suffix = validate_suffix(body.suffix)
        metadata = validate_metadata(body.metadata)
        seed = validate_seed(body.seed)
    except ParamError as error:
        raise _param(error) from None
    method_echo = method.as_dict()
    if method.type == "reinforcement":
        if body.validation_file is None:
            raise bad_request(
                "Reinforcement fine-tuning requires a validation_file.", param="validation_file"
            )
        method_echo["reinforcement"]["grader"] = _check_grader(method.grader or {}, settings)
    job = Job(
        id=ids.new_job_id(),
        project_id=project.id,
        model=body.model,
        status=JobStatus.VALIDATING_FILES.value,
        training_file=body.training_file,
        validation_file=body.validation_file,
        suffix=suffix,
        seed=seed if seed is not None else random.randint(0, 2**31 - 1),
        job_metadata=metadata,
        method=method_echo,
        hyperparameters={
            key: method.hyperparameters.get(key, "auto") for key in SUPERVISED_ECHO_KEYS
        },
        integrations=body.integrations,
        result_files=[],
        created_at=now(),
    )
    messages = [CREATED_MESSAGE, validating_file_message("training_file", job.training_file)]
    if job.validation_file:
        messages.append(validating_file_message("validation_file", job.validation_file))
    repository.insert_job(session, job, messages)
    session.commit()
    _send(session, job, enqueue)
    return job


def _send(session: Session, job: Job, enqueue: Enqueue) -> None:
    """Hand the committed new job to the workers; a queue that cannot take it fails the job."""
    try:
        enqueue(job.id)
    except Exception as error:  # the broker is down or misconfigured
        message = f"The job could not be queued for a worker: {error}"
        repository.fail_unsent(session, job.id, "queue_unavailable", message)
        session.refresh(job)


def _send_resumed(session: Session, job: Job, enqueue: Enqueue) -> None:
    """Hand a resumed job to the workers; when the queue cannot take it now, the job stays
    queued (its checkpoints are worth keeping) and the workers' sweep sends it later."""
    try:
        enqueue(job.id)
    except Exception as error:
        message = f"The job could not be sent to the workers yet ({error}); it will be retried"
        repository.note_unsent(session, job.id, message)


def get_job(session: Session, project: Project, job_id: str) -> Job:
    job = session.scalar(select(Job).where(Job.id == job_id, Job.project_id == project.id))
    if job is None:
        raise not_found("job", job_id)
    return job


def _metadata_matches(job: Job, wanted: dict[str, str] | None) -> bool:
    if wanted is None:
        return True
    if not wanted:  # `metadata=null`: jobs without metadata
        return not job.job_metadata
    stored = job.job_metadata or {}
    return all(stored.get(key, None if value else "") == value for key, value in wanted.items())


def _jobs_newest_first(session: Session, project: Project, before_seq: int | None) -> Iterator[Job]:
    query = select(Job).where(Job.project_id == project.id).order_by(Job.seq.desc())
    if before_seq is not None:
        query = query.where(Job.seq < before_seq)
    yield from session.scalars(query.execution_options(yield_per=200))


def list_jobs(
    session: Session,
    project: Project,
    *,
    after: str | None,
    limit: int,
    metadata: dict[str, str] | None,
) -> tuple[list[Job], bool]:
    before_seq = get_job(session, project, after).seq if after else None
    matches: list[Job] = []
    for job in _jobs_newest_first(session, project, before_seq):
        if _metadata_matches(job, metadata):
            matches.append(job)
            if len(matches) > limit:
                break
    return matches[:limit], len(matches) > limit


def act_on_job(
    session: Session, project: Project, job_id: str, action: UserAction, enqueue: Enqueue
) -> Job:
    """Cancel, pause or resume, as the state machine allows."""
    get_job(session, project, job_id)
    try:
        job, outcome = repository.act(session, job_id, action)
    except IllegalTransition as error:
        raise bad_request(error.message, code="invalid_job_state") from None
    except OperationalError as error:  # a worker holds the job row (a lock wait ran out)
        session.rollback()
        raise APIError(
            409, f"The job is being updated by its worker; try the {action} again.",
            code="job_busy",
        ) from error  # fmt: skip
    if outcome.enqueue_worker:
        _send_resumed(session, job, enqueue)
    return job


def _newest_first(
    session: Session, table: type[JobEvent] | type[Checkpoint], kind: str, job_id: str,
    after: str | None, limit: int,
) -> tuple[list[Any], bool]:  # fmt: skip
    """One page of a job's events or checkpoints, newest first, after the `after` row."""
    query = select(table).where(table.job_id == job_id)
    if after:
        cursor = session.scalar(select(table).where(table.id == after, table.job_id == job_id))
        if cursor is None:
            raise not_found(kind, after, param="after")
        query = query.where(table.seq < cursor.seq)
    rows = list(session.scalars(query.order_by(table.seq.desc()).limit(limit + 1)))
    return rows[:limit], len(rows) > limit


def list_events(
    session: Session, project: Project, job_id: str, *, after: str | None, limit: int
) -> tuple[list[JobEvent], bool]:
    job = get_job(session, project, job_id)
    return _newest_first(session, JobEvent, "event", job.id, after, limit)


def list_checkpoints(
    session: Session, project: Project, job_id: str, *, after: str | None, limit: int
) -> tuple[list[Checkpoint], bool]:
    job = get_job(session, project, job_id)
    return _newest_first(session, Checkpoint, "checkpoint", job.id, after, limit)


def _sample_split(split: str) -> str:
    if split not in repository.SAMPLE_SPLITS:
        raise bad_request(
            f"Invalid value for 'split': {split!r}; expected 'train' or 'validation'.",
            param="split",
        )
    return split


def list_samples(
    session: Session, project: Project, job_id: str, *, step: int | None, split: str
) -> tuple[int | None, list[JobSample]]:
    """The samples the trainer kept for one step and split (the latest step with any when
    `step` is None): by group, best reward first. A step without samples has none."""
    job = get_job(session, project, job_id)
    split = _sample_split(split)
    of_job = (JobSample.job_id == job.id, JobSample.split == split)
    if step is None:
        step = session.scalar(select(func.max(JobSample.step)).where(*of_job))
        if step is None:
            return None, []
    query = (
        select(JobSample)
        .where(*of_job, JobSample.step == step)
        .order_by(JobSample.group_index, JobSample.reward.desc(), JobSample.seq)
    )
    return step, list(session.scalars(query))


def list_sample_steps(
    session: Session, project: Project, job_id: str, *, split: str | None
) -> list[tuple[int, str, int]]:
    """(step, split, count) of every step with samples, ascending by step (train before
    validation at one step); both splits unless `split` is given."""
    job = get_job(session, project, job_id)
    query = select(JobSample.step, JobSample.split, func.count()).where(JobSample.job_id == job.id)
    if split is not None:
        query = query.where(JobSample.split == _sample_split(split))
    rows = session.execute(query.group_by(JobSample.step, JobSample.split)).all()
    order = {name: index for index, name in enumerate(repository.SAMPLE_SPLITS)}
    return sorted(
        ((int(step), str(name), int(count)) for step, name, count in rows),
        key=lambda row: (row[0], order[row[1]]),
    )
