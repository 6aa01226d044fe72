"""The admin API: projects and their keys, in the shape of OpenAI's organization API.

Guarded by `OPENRFT_ADMIN_KEY` (a bearer token set by the operator, never a project's key) and
off when it is unset. Creating a key here is an extension: OpenAI makes keys only in its
dashboard. A key's value is shown once, in the answer that creates it.
"""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from app import ids
from app.auth import get_session, get_settings_dep
from app.errors import APIError, bad_request, not_found
from app.keys.service import KeyInfo, create_key, list_keys, list_projects, revoke_key
from app.pagination import page
from app.settings import Settings
from app.tables import Project

router = APIRouter(prefix="/organization/projects")


def require_admin(request: Request, settings: Settings = Depends(get_settings_dep)) -> None:
    if not settings.admin_key:
        raise APIError(
            403, "The admin API is off: the operator sets OPENRFT_ADMIN_KEY to turn it on.",
            code="admin_api_disabled",
        )  # fmt: skip
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip(), settings.admin_key):
        raise APIError(401, "Incorrect admin key provided.", code="invalid_api_key")


class ProjectCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _project(row: Project) -> dict[str, Any]:
    return {
        "object": "organization.project",
        "id": row.id,
        "name": row.name,
        "created_at": row.created_at,
        "archived_at": None,
        "status": "active",
    }


def _key(key: KeyInfo) -> dict[str, Any]:
    return {
        "object": "organization.project.api_key",
        "id": key.id,
        "name": None,
        "redacted_value": f"{key.prefix}...",
        "created_at": key.created_at,
        "owner": None,
    }


def _get_project(session: Session, project_id: str) -> Project:
    row = session.scalar(select(Project).where(Project.id == project_id))
    if row is None:
        raise not_found("project", project_id)
    return row


@router.get("", dependencies=[Depends(require_admin)])
def projects(session: Session = Depends(get_session)) -> dict[str, Any]:
    return page([_project(row) for row in list_projects(session)], has_more=False)


@router.post("", dependencies=[Depends(require_admin)])
def create_project(body: ProjectCreate, session: Session = Depends(get_session)) -> dict[str, Any]:
    if session.scalar(select(Project).where(Project.name == body.name)) is not None:
        raise bad_request(f"A project named {body.name!r} exists already.", param="name")
    row = Project(id=ids.new_project_id(), name=body.name)
    session.add(row)
    session.commit()
    return _project(row)


@router.get("/{project_id}/api_keys", dependencies=[Depends(require_admin)])
def project_keys(project_id: str, session: Session = Depends(get_session)) -> dict[str, Any]:
    _get_project(session, project_id)
    return page([_key(key) for key in list_keys(session, project_id)], has_more=False)


@router.post("/{project_id}/api_keys", dependencies=[Depends(require_admin)])
def create_project_key(project_id: str, session: Session = Depends(get_session)) -> dict[str, Any]:
    project = _get_project(session, project_id)
    value = create_key(session, project.name)
    session.commit()
    created = next(key for key in list_keys(session, project_id) if value.startswith(key.prefix))
    return {**_key(created), "value": value}


@router.delete("/{project_id}/api_keys/{key_id}", dependencies=[Depends(require_admin)])
def delete_project_key(
    project_id: str, key_id: str, session: Session = Depends(get_session)
) -> dict[str, Any]:
    _get_project(session, project_id)
    if not revoke_key(session, key_id, project_id):
        raise not_found("api_key", key_id)
    session.commit()
    return {"object": "organization.project.api_key.deleted", "id": key_id, "deleted": True}
