"""The models a project can chat with and download: base models, fine-tuned models, checkpoints.

A fine-tuned model is a job's `fine_tuned_model`, served from the adapter stored under the key
`job.result_adapter_path`; a checkpoint model is a checkpoint's `fine_tuned_model_checkpoint`,
served from the one under `checkpoint.storage_path` (keys of the "checkpoints" artefact store).
Another project's models do not exist for the caller: they give the same 404 as unknown ones,
except checkpoints its owner shared with the caller's project (`CheckpointPermission`), which
the caller can list, retrieve, chat with and download (not delete).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from app.artifact_store import artifact_store
from app.base_models import BaseModel, find_base_model, list_base_models
from app.errors import APIError, not_found
from app.jobs.service import get_job
from app.projects import ProjectRef
from app.rows import RowSource, labelled
from app.settings import Settings
from app.tables import Checkpoint, CheckpointPermission, Job, JobEvent

BASE_MODEL_OWNER = "openrft"


@dataclass(frozen=True)
class ServedModel:
    id: str
    # the base model's catalogue name
    base_model: str
    # the artefact-store key of the LoRA adapter on top of the base; None for a base model
    adapter_key: str | None
    created: int
    owned_by: str
    job_id: str | None = None
    step_number: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)


def resolve_model(
    session: Session, settings: Settings, project: ProjectRef, model_id: str, param: str = "model"
) -> ServedModel:
    """The base, fine-tuned or checkpoint model named `model_id`, or a 404."""
    base = find_base_model(settings, model_id)
    if base is not None:
        return base_served(base)
    job = session.scalar(
        select(Job).where(Job.fine_tuned_model == model_id, Job.project_id == project.id)
    )
    if job is not None and job.result_adapter_path:
        return _with_files(settings, _fine_tuned(job, _final_metrics(session, job.id)), param)
    found = session.execute(
        select(Checkpoint, Job)
        .join(Job, Checkpoint.job_id == Job.id)
        .where(Checkpoint.fine_tuned_model_checkpoint == model_id, Job.project_id == project.id)
    ).first()
    if found is not None:
        return served_checkpoint(settings, *found, param=param)
    shared = session.execute(
        _SHARED_CHECKPOINTS.where(Checkpoint.fine_tuned_model_checkpoint == model_id),
        {"project_id": project.id},
    ).first()
    if shared is not None:
        return served_checkpoint(settings, *shared, param=param)
    raise not_found("model", model_id, param=param)


# (checkpoint, job) rows of other projects' checkpoints shared with the project
# `project_id`; these statements are built once (app.keys.service.KEY_OWNER says why)
_SHARED_CHECKPOINTS = (
    select(Checkpoint, Job)
    .join(Job, Checkpoint.job_id == Job.id)
    .join(
        CheckpointPermission,
        (CheckpointPermission.fine_tuned_model_checkpoint == Checkpoint.fine_tuned_model_checkpoint)
        & (CheckpointPermission.owner_project_id == Job.project_id),
    )
    .where(CheckpointPermission.project_id == bindparam("project_id"))
)
# the project's fine-tuned models and the checkpoints shared with it, as ServedModel's fields
_BASE_MODEL_NAME = func.coalesce(Job.base_model, Job.model)  # Job.base_model_name
_FINE_TUNED_MODELS = (
    select(
        *labelled(
            id=Job.fine_tuned_model,
            base_model=_BASE_MODEL_NAME,
            adapter_key=Job.result_adapter_path,
            created=func.coalesce(Job.finished_at, Job.created_at),
            owned_by=Job.project_id,
            job_id=Job.id,
        )
    )  # fmt: skip
    .where(Job.project_id == bindparam("project_id"), Job.fine_tuned_model.is_not(None))
    .where(Job.result_adapter_path.is_not(None))
    .order_by(Job.seq)
)
_SHARED_CHECKPOINT_MODELS = _SHARED_CHECKPOINTS.with_only_columns(
    *labelled(
        id=Checkpoint.fine_tuned_model_checkpoint,
        base_model=_BASE_MODEL_NAME,
        adapter_key=Checkpoint.storage_path,
        created=Checkpoint.created_at,
        owned_by=Job.project_id,
        job_id=Job.id,
        step_number=Checkpoint.step_number,
        metrics=Checkpoint.metrics,
    )
).order_by(CheckpointPermission.seq)  # fmt: skip


def list_base_served(settings: Settings) -> list[ServedModel]:
    """The catalogue's base models, which /v1/models lists first (whether this reads only
    memory: `app.base_models.catalogue_is_fresh`)."""
    return [base_served(base) for base in list_base_models(settings)]


def base_served(base: BaseModel) -> ServedModel:
    return ServedModel(base.name, base.name, None, base.created, BASE_MODEL_OWNER)


async def project_model_candidates(source: RowSource, project: ProjectRef) -> list[ServedModel]:
    """The project's fine-tuned models (oldest job first) and the checkpoints other projects
    shared with it (oldest grant first), as the database has them: `keep_with_files` then
    leaves out those whose files are gone."""
    parameters = {"project_id": project.id}
    fine_tuned = await source.rows(_FINE_TUNED_MODELS, parameters)
    shared = await source.rows(_SHARED_CHECKPOINT_MODELS, parameters)
    return [ServedModel(**row) for row in fine_tuned] + [
        ServedModel(**{**row, "metrics": dict(row["metrics"] or {})}) for row in shared
    ]


def keep_with_files(settings: Settings, models: list[ServedModel]) -> list[ServedModel]:
    """`models` less those whose files are gone (as retrieve leaves them out); reads storage."""
    return [model for model in models if _has_files(settings, model)]


def job_checkpoint(
    session: Session, settings: Settings, project: ProjectRef, job_id: str, checkpoint_id: str
) -> ServedModel:
    """Checkpoint `checkpoint_id` of the project's job `job_id`, or a 404."""
    job = get_job(session, project, job_id)
    checkpoint = session.scalar(
        select(Checkpoint).where(Checkpoint.id == checkpoint_id, Checkpoint.job_id == job.id)
    )
    if checkpoint is None:
        raise not_found("checkpoint", checkpoint_id, param="checkpoint_id")
    return served_checkpoint(settings, checkpoint, job, param="checkpoint_id")


def served_checkpoint(
    settings: Settings, checkpoint: Checkpoint, job: Job, param: str = "model"
) -> ServedModel:
    return _with_files(settings, _checkpoint_model(checkpoint, job), param)


def _checkpoint_model(checkpoint: Checkpoint, job: Job) -> ServedModel:
    return ServedModel(
        id=checkpoint.fine_tuned_model_checkpoint,
        base_model=job.base_model_name,
        adapter_key=checkpoint.storage_path,
        created=checkpoint.created_at,
        owned_by=job.project_id,
        job_id=job.id,
        step_number=checkpoint.step_number,
        metrics=dict(checkpoint.metrics or {}),
    )


def _fine_tuned(job: Job, metrics: dict[str, Any]) -> ServedModel:
    assert job.fine_tuned_model and job.result_adapter_path
    return ServedModel(
        id=job.fine_tuned_model,
        base_model=job.base_model_name,
        adapter_key=job.result_adapter_path,
        created=job.finished_at or job.created_at,
        owned_by=job.project_id,
        job_id=job.id,
        metrics=metrics,
    )


def _final_metrics(session: Session, job_id: str) -> dict[str, Any]:
    """The numbers of the job's last `metrics` event."""
    data = session.scalar(
        select(JobEvent.data)
        .where(JobEvent.job_id == job_id, JobEvent.type == "metrics")
        .order_by(JobEvent.seq.desc())
        .limit(1)
    )
    return {key: value for key, value in (data or {}).items() if isinstance(value, int | float)}


def _has_files(settings: Settings, model: ServedModel) -> bool:
    if model.adapter_key is None:
        return False
    files = artifact_store(settings, "checkpoints", "api").manifest(model.adapter_key)
    return files is not None and "adapter_config.json" in files["files"]


def _with_files(settings: Settings, model: ServedModel, param: str) -> ServedModel:
    if not _has_files(settings, model):
        raise APIError(
            404,
            f"The files of model '{model.id}' are no longer on this server.",
            param=param,
            code="model_not_found",
        )
    return model
