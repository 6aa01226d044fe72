"""HTTP adapter for /v1/fine_tuning/checkpoints/{checkpoint}/permissions."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Query
from sqlalchemy.orm import Session

from app.auth import current_project, get_session
from app.models import permissions
from app.models.schemas import (
    CheckpointPermissionDeleted,
    CheckpointPermissionObject,
    PermissionCreateRequest,
)
from app.pagination import page
from app.projects import ProjectRef
from app.tables import CheckpointPermission

# checkpoint names hold colons and, through their base model's name, possibly slashes
router = APIRouter(prefix="/fine_tuning/checkpoints/{fine_tuned_model_checkpoint:path}")


def _object(row: CheckpointPermission) -> CheckpointPermissionObject:
    return CheckpointPermissionObject(
        id=row.id, created_at=row.created_at, project_id=row.project_id
    )


@router.post("/permissions")
def create_permissions(
    fine_tuned_model_checkpoint: str,
    body: PermissionCreateRequest,
    project: ProjectRef = Depends(current_project),
    session: Session = Depends(get_session),
) -> dict:
    rows = permissions.grant(session, project, fine_tuned_model_checkpoint, body.project_ids)
    return page([_object(row) for row in rows], False)


@router.get("/permissions")
def list_permissions(
    fine_tuned_model_checkpoint: str,
    after: str | None = None,
    limit: int = Query(10, ge=1, le=100),
    order: Literal["ascending", "descending"] = "descending",
    project_id: str | None = None,
    project: ProjectRef = Depends(current_project),
    session: Session = Depends(get_session),
) -> dict:
    rows, has_more = permissions.list_permissions(
        session,
        project,
        fine_tuned_model_checkpoint,
        after=after,
        limit=limit,
        order=order,
        project_id=project_id,
    )
    return page([_object(row) for row in rows], has_more)


@router.delete("/permissions/{permission_id}", response_model=CheckpointPermissionDeleted)
def delete_permission(
    fine_tuned_model_checkpoint: str,
    permission_id: str,
    project: ProjectRef = Depends(current_project),
    session: Session = Depends(get_session),
) -> CheckpointPermissionDeleted:
    permissions.revoke(session, project, fine_tuned_model_checkpoint, permission_id)
    return CheckpointPermissionDeleted(id=permission_id)
