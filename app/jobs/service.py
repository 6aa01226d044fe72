"""Fine-tuning jobs: create with every up-front check, list, act on, and read events.

The one place that decides what the API does to a job; routes only translate HTTP.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from app import ids
from app.artifact_store import artifact_store
from app.base_models import find_base_model, model_search_places
from app.errors import APIError, bad_request, not_found
from app.files.service import not_expired
from app.graders import normalize_grader, validate_grader
from app.jobs import (
    IllegalTransition,
    JobStatus,
    NormalizedMethod,
    ParamError,
    line_with_image,
    line_without_field,
    normalize_method,
    repository,
    validate_integrations,
    validate_metadata,
    validate_seed,
    validate_suffix,
)
from app.jobs.schemas import JobCreateRequest
from app.jobs.states import CREATED_MESSAGE, UserAction, validating_file_message
from app.jobs.tool_support import check_tool_support
from app.projects import ProjectRef
from app.quotas import check_active_jobs
from app.settings import Settings
from app.storage import Storage
from app.tables import Checkpoint, File, Job, JobSample, now
from app.workers.placement import DoesNotFit, Placement, job_size, model_shape, place_job
from app.workers.registry import live_workers

# sends a committed job to the workers (app.workers.routing.placed_job_sender in the API)
Enqueue = Callable[[str], None]
GRADER_PARAM = "method.reinforcement.grader"
WARM_START_PARAM = "method.reinforcement.warm_start"
# OpenAI's SFT job echo: these three only
SUPERVISED_ECHO_KEYS = ("batch_size", "learning_rate_multiplier", "n_epochs")
# written beside every saved LoRA adapter (peft's save_pretrained): its rank, alpha, targets
ADAPTER_CONFIG = "adapter_config.json"


def _training_input(session: Session, project: ProjectRef, file_id: str | None, param: str) -> File:
    row = None
    if file_id:
        row = session.scalar(
            select(File).where(File.id == file_id, File.project_id == project.id, not_expired())
        )
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


def _check_warm_start_field(
    storage: Storage, training_file: File, warm_start: dict[str, Any] | None
) -> None:
    """Every training line must hold the field the warm start learns as its answer."""
    if warm_start is None:
        return
    field = warm_start["field"]
    with storage.open(training_file.storage_key) as lines:
        image_line = line_with_image(lines)
    if image_line is not None:
        raise bad_request(
            f"Line {image_line} of the training file has an image, and the warm start trains "
            "on text only; leave out warm_start to train on images with reinforcement alone.",
            param=WARM_START_PARAM,
        )
    with storage.open(training_file.storage_key) as lines:
        line_number = line_without_field(lines, field)
    if line_number is not None:
        raise bad_request(
            f'Line {line_number} of the training file has no "{field}", which '
            f"{WARM_START_PARAM}.field names as the answer to learn in the warm start.",
            param=f"{WARM_START_PARAM}.field",
        )


def _param(error: ParamError) -> APIError:
    return bad_request(error.message, param=error.param)


@dataclass(frozen=True)
class StartingPoint:
    """What a new job trains: a fresh adapter on a catalogue model, or a fine-tuned model's
    adapter (a job's final one or a checkpoint's) trained on, on the same base weights."""

    base_model: str
    parent_job_id: str | None = None
    parent_adapter_path: str | None = None  # relative to the checkpoints dir


def _stored_files(settings: Settings, adapter_path: str) -> dict[str, int]:
    """The files of a stored adapter, or none when it is gone."""
    manifest = artifact_store(settings, "checkpoints", "api").manifest(adapter_path)
    return manifest["files"] if manifest else {}


def _model_not_available(
    model: str, reason: str = "does not exist or is not available for fine-tuning."
) -> APIError:
    return APIError(
        400,
        f"Model '{model}' {reason}",
        param="model",
        code="model_not_available",
    )


def _starting_point(
    session: Session, settings: Settings, project: ProjectRef, model: str
) -> StartingPoint:
    """The catalogue model `model`, or the project's fine-tuned model or checkpoint of that
    name whose adapter is on this server; else a 400 naming `model`."""
    if find_base_model(settings, model) is not None:
        return StartingPoint(model)
    if not model.startswith("ft:"):
        raise _model_not_available(
            model,
            "does not exist or is not available for fine-tuning; base models are looked for in "
            + model_search_places(settings)
            + ".",
        )
    parent = session.scalar(
        select(Job).where(Job.fine_tuned_model == model, Job.project_id == project.id)
    )
    adapter_path = parent.result_adapter_path if parent is not None else None
    if adapter_path is None:
        found = session.execute(
            select(Checkpoint, Job)
            .join(Job, Checkpoint.job_id == Job.id)
            .where(Checkpoint.fine_tuned_model_checkpoint == model, Job.project_id == project.id)
        ).first()
        if found is not None:
            checkpoint, parent = found
            adapter_path = checkpoint.storage_path
    if parent is None or adapter_path is None:
        raise _model_not_available(model)
    if ADAPTER_CONFIG not in _stored_files(settings, adapter_path):
        raise _model_not_available(
            model, "has no weights left on this server to train on for fine-tuning."
        )
    if find_base_model(settings, parent.base_model_name) is None:
        raise _model_not_available(
            model,
            f"was trained on '{parent.base_model_name}', which is no longer offered for "
            "fine-tuning.",
        )
    return StartingPoint(parent.base_model_name, parent.id, adapter_path)


def _check_continued_hyperparameters(
    settings: Settings, start: StartingPoint, method: NormalizedMethod, path: str
) -> None:
    """Training on an adapter keeps its shape: lora_rank and lora_alpha are the parent's.
    `beta` would pull towards the catalogue model, not the parent, so it is refused."""
    if start.parent_adapter_path is None:
        return
    adapters = artifact_store(settings, "checkpoints", "api")
    config = json.loads(adapters.read_file(start.parent_adapter_path, ADAPTER_CONFIG))
    parent_shape = {"lora_rank": config.get("r"), "lora_alpha": config.get("lora_alpha")}
    for name, parent_value in parent_shape.items():
        given = method.hyperparameters.get(name, "auto")
        if given != "auto" and parent_value is not None and float(given) != float(parent_value):
            raise bad_request(
                f"{name} is {given}, but the fine-tuned model being trained on has an adapter "
                f"with {name} {parent_value:g}; leave {name} out to keep it.",
                param=f"{path}.{name}",
            )
    beta = method.hyperparameters.get("beta", "auto")
    if beta not in ("auto", 0, 0.0):
        raise bad_request(
            "beta (the KL penalty) is not supported when training on from a fine-tuned model: "
            "its reference would be the base model, not the model given; leave beta out.",
            param=f"{path}.beta",
        )


def _place(
    session: Session, settings: Settings, base_model: str, method: NormalizedMethod
) -> Placement:
    """Where the job goes (app.workers.placement); a 400 with the estimate when nowhere."""
    base = find_base_model(settings, base_model)
    shape = model_shape(settings, base) if base is not None else None
    size = job_size(method.type, dict(method.hyperparameters))
    workers = live_workers(session, settings.worker_stale_seconds)
    try:
        return place_job(shape, size, workers, settings.queue_name)
    except DoesNotFit as error:
        raise bad_request(str(error), code="insufficient_worker_memory") from None


def create_job(
    session: Session,
    settings: Settings,
    project: ProjectRef,
    body: JobCreateRequest,
    enqueue: Enqueue,
    storage: Storage,
) -> Job:
    check_active_jobs(session, settings, project)
    start = _starting_point(session, settings, project, body.model)
    training_file = _training_input(session, project, body.training_file, "training_file")
    inputs = [("training_file", training_file)]
    if body.validation_file is not None:
        validation = _training_input(session, project, body.validation_file, "validation_file")
        inputs.append(("validation_file", validation))
    try:
        method = normalize_method(body.method, body.hyperparameters)
        suffix = validate_suffix(body.suffix)
        metadata = validate_metadata(body.metadata)
        seed = validate_seed(body.seed)
        integrations = validate_integrations(body.integrations)
    except ParamError as error:
        raise _param(error) from None
    _check_continued_hyperparameters(
        settings,
        start,
        method,
        "hyperparameters" if body.hyperparameters else f"method.{method.type}.hyperparameters",
    )
    check_tool_support(settings, start.base_model, body.model, inputs)
    method_echo = method.as_dict()
    if method.type == "reinforcement":
        if body.validation_file is None:
            raise bad_request(
                "Reinforcement fine-tuning requires a validation_file.", param="validation_file"
            )
        method_echo["reinforcement"]["grader"] = _check_grader(method.grader or {}, settings)
        _check_warm_start_field(storage, training_file, method.warm_start)
    placement = _place(session, settings, start.base_model, method)
    job = Job(
        id=ids.new_job_id(),
        project_id=project.id,
        model=body.model,
        base_model=start.base_model,
        parent_job_id=start.parent_job_id,
        parent_adapter_path=start.parent_adapter_path,
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
        integrations=integrations,
        result_files=[],
        created_at=now(),
        queue=placement.queue,
        gradient_checkpointing=placement.gradient_checkpointing,
    )
    messages = [CREATED_MESSAGE, validating_file_message("training_file", job.training_file)]
    if job.validation_file:
        messages.append(validating_file_message("validation_file", job.validation_file))
    messages.append(placement.message)
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


# built once: every read of a job runs it (see app.keys.service.KEY_OWNER)
_JOB_OF_PROJECT = select(Job).where(
    Job.id == bindparam("job_id"), Job.project_id == bindparam("project_id")
)


def get_job(session: Session, project: ProjectRef, job_id: str) -> Job:
    job = session.scalar(_JOB_OF_PROJECT, {"job_id": job_id, "project_id": project.id})
    if job is None:
        raise not_found("job", job_id)
    return job


def act_on_job(
    session: Session, project: ProjectRef, job_id: str, action: UserAction, enqueue: Enqueue
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


def _sample_split(split: str) -> str:
    if split not in repository.SAMPLE_SPLITS:
        raise bad_request(
            f"Invalid value for 'split': {split!r}; expected 'train' or 'validation'.",
            param="split",
        )
    return split


def list_samples(
    session: Session, project: ProjectRef, job_id: str, *, step: int | None, split: str
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
    session: Session, project: ProjectRef, job_id: str, *, split: str | None
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
