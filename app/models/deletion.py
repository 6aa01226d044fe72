"""Deleting a fine-tuned model or checkpoint: its row first, then its files.

A fine-tuned model is taken out of service on its job (`jobs.result_adapter_path`), then its
adapter folder and any merged copy in the model cache are removed; the job's checkpoints stay,
and can be deleted the same way, by their `…:ckpt-step-N` names, once the job is finished. The
inference process unloads an adapter whose folder is gone on its next request, and the API no
longer resolves the name, so a deleted model is never served again.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.base_models import find_base_model
from app.errors import APIError, bad_request, not_found
from app.jobs import repository
from app.models import permissions
from app.models.artifacts import merged_model_dir
from app.settings import Settings
from app.tables import Checkpoint, Job, Project


def delete_model(session: Session, settings: Settings, project: Project, model_id: str) -> None:
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
        adapter_dir = settings.checkpoints_dir / job.result_adapter_path
        folders = [adapter_dir, merged_model_dir(settings, adapter_dir)]
        if repository.forget_fine_tuned_model(session, job.id) is None:
            session.rollback()
            raise not_found("model", model_id, param="model")
        still_used = _used_by_checkpoints(session, job.result_adapter_path)
        session.commit()
        _remove(settings, folders[1:] if still_used else folders)
        return
    checkpoint = session.scalar(
        select(Checkpoint)
        .join(Job, Checkpoint.job_id == Job.id)
        .where(Checkpoint.fine_tuned_model_checkpoint == model_id, Job.project_id == project.id)
    )
    if checkpoint is not None:
        adapter_dir = settings.checkpoints_dir / checkpoint.storage_path
        folders = [adapter_dir, merged_model_dir(settings, adapter_dir)]
        if repository.delete_finished_checkpoint(session, checkpoint.id) is None:
            session.rollback()
            raise bad_request(
                f"'{model_id}' is a checkpoint of job {checkpoint.job_id}, which is not finished "
                "and may still resume from it: cancel the job (or let it finish) first.",
                param="model",
            )
        permissions.forget_checkpoint(session, model_id)
        session.commit()
        _remove(settings, folders)
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


def _remove(settings: Settings, folders: list[Path]) -> None:
    """Remove folders that lie inside the data dir (never above it)."""
    root = settings.resolved_data_dir
    for folder in folders:
        resolved = folder.resolve()
        if root in resolved.parents:
            shutil.rmtree(resolved, ignore_errors=True)
            (resolved.parent / f".{resolved.name}.lock").unlink(missing_ok=True)
