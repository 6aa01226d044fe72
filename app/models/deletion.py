"""Deleting a fine-tuned model or checkpoint: its row first, then its files.

A fine-tuned model is taken out of service on its job (`jobs.result_adapter_path`), then its
stored adapter and any stored merge of it are removed; the job's checkpoints stay, and can be
deleted the same way, by their `…:ckpt-step-N` names, once the job is finished. The API no
longer resolves the name, so a deleted model is never served again.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.artifact_store import artifact_store
from app.base_models import find_base_model
from app.errors import APIError, bad_request, not_found
from app.jobs import repository
from app.models import permissions
from app.models.artifacts import merged_model_key
from app.projects import ProjectRef
from app.settings import Settings
from app.tables import Checkpoint, Job


def delete_model(session: Session, settings: Settings, project: ProjectRef, model_id: str) -> None:
    if find_base_model(settings, model_id) is not None:
        raise APIError(
            403,
            f"'{model_id}' is a base model; only fine-tuned models can be deleted.",
            param="model",
            code="model_not_deletable",
        )
    job = session.scalar(
        select(Job).where(Job.fine_tuned_model == model_id, Job.project_id == project.id)
    )
    if job is not None and job.result_adapter_path:
        stored = _stored(settings, job.result_adapter_path)
        if repository.forget_fine_tuned_model(session, job.id) is None:
            session.rollback()
            raise not_found("model", model_id, param="model")
        still_used = _used_by_checkpoints(session, job.result_adapter_path)
        session.commit()
        _remove(settings, stored if not still_used else (None, stored[1]))
        return
    checkpoint = session.scalar(
        select(Checkpoint)
        .join(Job, Checkpoint.job_id == Job.id)
        .where(Checkpoint.fine_tuned_model_checkpoint == model_id, Job.project_id == project.id)
    )
    if checkpoint is not None:
        stored = _stored(settings, checkpoint.storage_path)
        if repository.delete_finished_checkpoint(session, checkpoint.id) is None:
            session.rollback()
            raise bad_request(
                f"'{model_id}' is a checkpoint of job {checkpoint.job_id}, which is not finished "
                "and may still resume from it: cancel the job (or let it finish) first.",
                param="model",
            )
        permissions.forget_checkpoint(session, model_id)
        session.commit()
        _remove(settings, stored)
        return
    if permissions.is_shared_with(session, project, model_id):
        raise APIError(
            403,
            f"Model '{model_id}' was shared with this project; only the project that owns it "
            "can delete it.",
            param="model",
            code="permission_denied",
        )
    raise not_found("model", model_id, param="model")


def _used_by_checkpoints(session: Session, storage_path: str) -> bool:
    return (
        session.scalar(select(Checkpoint.id).where(Checkpoint.storage_path == storage_path))
        is not None
    )


def _stored(settings: Settings, adapter_key: str) -> tuple[str | None, str | None]:
    """The storage keys of an adapter and of its merge."""
    return adapter_key, merged_model_key(
        artifact_store(settings, "checkpoints", "api"), adapter_key
    )


def _remove(settings: Settings, keys: tuple[str | None, str | None]) -> None:
    """Remove the stored adapter (when given) and its stored merge."""
    adapter_key, merged_key = keys
    if adapter_key is not None:
        artifact_store(settings, "checkpoints", "api").delete_dir(adapter_key)
    if merged_key is not None:
        artifact_store(settings, "merged", "api").delete_dir(merged_key)
