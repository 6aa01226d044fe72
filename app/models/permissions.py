"""Checkpoint permissions: the owner of a fine-tuned checkpoint shares it with other projects of
this installation, which may then list, retrieve, chat with and download it.

Only the owning project manages a checkpoint's permissions; a project it was shared with is
told so (403), any other gets the 404 of a checkpoint that does not exist.
"""

from __future__ import annotations

from typing import Literal

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app import ids
from app.errors import APIError, bad_request, not_found
from app.projects import ProjectRef
from app.tables import Checkpoint, CheckpointPermission, Job, Project

PARAM = "fine_tuned_model_checkpoint"


def owned_checkpoint(session: Session, project: ProjectRef, model_id: str) -> Checkpoint:
    """The caller's checkpoint named `model_id`, or the error that says why not."""
    found = session.scalar(
        select(Checkpoint)
        .join(Job, Checkpoint.job_id == Job.id)
        .where(Checkpoint.fine_tuned_model_checkpoint == model_id, Job.project_id == project.id)
    )
    if found is not None:
        return found
    if is_shared_with(session, project, model_id):
        raise APIError(
            403,
            f"Checkpoint '{model_id}' was shared with this project; only the project that owns "
            "it can manage its permissions.",
            param=PARAM,
            code="permission_denied",
        )
    owns_model = session.scalar(
        select(Job.id).where(Job.fine_tuned_model == model_id, Job.project_id == project.id)
    )
    if owns_model is not None:
        raise bad_request(
            f"'{model_id}' is a fine-tuned model, not a checkpoint: share one of its checkpoints "
            "(`client.fine_tuning.jobs.checkpoints.list`), named '…:ckpt-step-N'.",
            param=PARAM,
        )
    raise not_found("checkpoint", model_id, param=PARAM)


def is_shared_with(session: Session, project: ProjectRef, model_id: str) -> bool:
    return (
        session.scalar(
            select(CheckpointPermission.id).where(
                CheckpointPermission.fine_tuned_model_checkpoint == model_id,
                CheckpointPermission.project_id == project.id,
            )
        )
        is not None
    )


def grant(
    session: Session, project: ProjectRef, model_id: str, project_ids: list[str]
) -> list[CheckpointPermission]:
    """Share the checkpoint with each project (once: granting again returns the permission)."""
    owned_checkpoint(session, project, model_id)
    if not project_ids:
        raise bad_request("'project_ids' must name at least one project.", param="project_ids")
    wanted = list(dict.fromkeys(project_ids))
    for index, project_id in enumerate(wanted):
        if project_id == project.id:
            raise bad_request(
                f"'project_ids[{index}]' is this project, which owns the checkpoint already.",
                param="project_ids",
            )
        if session.get(Project, project_id) is None:
            raise bad_request(
                f"'project_ids[{index}]': no project '{project_id}' on this server.",
                param="project_ids",
                code="project_not_found",
            )
    existing = {
        row.project_id: row
        for row in session.scalars(
            select(CheckpointPermission).where(
                CheckpointPermission.fine_tuned_model_checkpoint == model_id,
                CheckpointPermission.project_id.in_(wanted),
            )
        )
    }
    rows = []
    for project_id in wanted:
        row = existing.get(project_id)
        if row is None:
            row = CheckpointPermission(
                id=ids.new_checkpoint_permission_id(),
                fine_tuned_model_checkpoint=model_id,
                owner_project_id=project.id,
                project_id=project_id,
            )
            session.add(row)
        rows.append(row)
    session.commit()
    return rows


def list_permissions(
    session: Session,
    project: ProjectRef,
    model_id: str,
    *,
    after: str | None,
    limit: int,
    order: Literal["ascending", "descending"],
    project_id: str | None,
) -> tuple[list[CheckpointPermission], bool]:
    owned_checkpoint(session, project, model_id)
    query = select(CheckpointPermission).where(
        CheckpointPermission.fine_tuned_model_checkpoint == model_id,
        CheckpointPermission.owner_project_id == project.id,
    )
    if project_id:
        query = query.where(CheckpointPermission.project_id == project_id)
    if after:
        cursor = _permission(session, project, model_id, after, param="after")
        query = query.where(
            CheckpointPermission.seq > cursor.seq
            if order == "ascending"
            else CheckpointPermission.seq < cursor.seq
        )
    seq = CheckpointPermission.seq
    query = query.order_by(seq.asc() if order == "ascending" else seq.desc())
    rows = list(session.scalars(query.limit(limit + 1)))
    return rows[:limit], len(rows) > limit


def revoke(session: Session, project: ProjectRef, model_id: str, permission_id: str) -> None:
    owned_checkpoint(session, project, model_id)
    row = _permission(session, project, model_id, permission_id, param="permission_id")
    session.delete(row)
    session.commit()


def forget_checkpoint(session: Session, model_id: str) -> None:
    """Drop every permission of a deleted checkpoint (the caller commits)."""
    session.execute(
        delete(CheckpointPermission).where(
            CheckpointPermission.fine_tuned_model_checkpoint == model_id
        )
    )


def _permission(
    session: Session, project: ProjectRef, model_id: str, permission_id: str, *, param: str
) -> CheckpointPermission:
    row = session.scalar(
        select(CheckpointPermission).where(
            CheckpointPermission.id == permission_id,
            CheckpointPermission.fine_tuned_model_checkpoint == model_id,
            CheckpointPermission.owner_project_id == project.id,
        )
    )
    if row is None:
        raise not_found("permission", permission_id, param=param)
    return row
