"""Projects and their API keys. Keys are stored as sha256 hashes only."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, delete, select
from sqlalchemy.orm import Session

from app import ids
from app.db import db_clock
from app.jobs.states import JobStatus
from app.projects import ProjectRef
from app.rows import RowSource
from app.tables import ApiKey, Job, Project

DEFAULT_PROJECT = "default"
# the project whose key the embedded worker's model graders use to call this server
GRADER_PROJECT = "model-graders"


def hash_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def get_or_create_project(session: Session, name: str) -> Project:
    project = session.scalar(select(Project).where(Project.name == name))
    if project is None:
        project = Project(id=ids.new_project_id(), name=name)
        session.add(project)
        session.flush()
    return project


def add_key(session: Session, project: Project, api_key: str) -> None:
    """Register `api_key` for `project`; registering the same key again changes nothing."""
    key_hash = hash_key(api_key)
    existing = session.scalar(select(ApiKey).where(ApiKey.key_hash == key_hash))
    if existing is None:
        session.add(ApiKey(project_id=project.id, key_hash=key_hash, key_prefix=api_key[:16]))
        session.flush()


def create_key(session: Session, project_name: str) -> str:
    """A new random key for the project (created if missing); returned once, stored hashed."""
    api_key = ids.new_api_key()
    add_key(session, get_or_create_project(session, project_name), api_key)
    return api_key


# built once: every request runs them, and building and keying a statement costs more than
# SQLite takes to answer it. Plain columns: the request reads them without a session
# (`app.reads.Reads.rows`).
KEY_OWNER = (
    select(Project.id, Project.name, ApiKey.job_id, ApiKey.job_attempt)
    .join(Project, Project.id == ApiKey.project_id)
    .where(ApiKey.key_hash == bindparam("key_hash"))
)
# a job's key lives while the attempt it was issued to runs and holds its lease: it expires
# within a lease length of a lost worker, and with the job's end
JOB_KEY_ALIVE = select(Job.seq).where(
    Job.id == bindparam("job_id"),
    Job.attempt == bindparam("job_attempt"),
    Job.status == JobStatus.RUNNING.value,
    Job.lease_owner.is_not(None),
    Job.lease_expires_at > db_clock(),
)


def job_key_parameters(job_id: str | None, job_attempt: int | None) -> dict[str, Any] | None:
    """What JOB_KEY_ALIVE needs for a job's key; None for a user's key (no job)."""
    if job_id is None:
        return None
    return {"job_id": job_id, "job_attempt": job_attempt}


def project_of(owner: Mapping[str, Any]) -> ProjectRef:
    """The project a KEY_OWNER row names."""
    return ProjectRef(id=owner["id"], name=owner["name"])


async def project_for_key(source: RowSource, api_key: str) -> ProjectRef | None:
    """The project `api_key` acts for, or None for an unknown or dead key."""
    found = await source.rows(KEY_OWNER, {"key_hash": hash_key(api_key)})
    if not found:
        return None
    job_key = job_key_parameters(found[0]["job_id"], found[0]["job_attempt"])
    if job_key is not None and not await source.rows(JOB_KEY_ALIVE, job_key):
        return None
    return project_of(found[0])


def issue_job_key(session: Session, job_id: str, attempt: int) -> str:
    """A new key acting as the job's project for this attempt only; shown to the caller once,
    stored hashed. The caller commits."""
    project_id = session.scalars(select(Job.project_id).where(Job.id == job_id)).one()
    api_key = ids.new_api_key()
    session.add(
        ApiKey(
            project_id=project_id,
            key_hash=hash_key(api_key),
            key_prefix=api_key[:16],
            job_id=job_id,
            job_attempt=attempt,
        )
    )
    return api_key


def revoke_job_keys(session: Session, job_id: str, attempt: int) -> None:
    """Delete the keys issued to that attempt of the job. The caller commits."""
    session.execute(delete(ApiKey).where(ApiKey.job_id == job_id, ApiKey.job_attempt == attempt))


def purge_dead_job_keys(session: Session) -> int:
    """Delete job keys whose attempt ended without revoking them (its worker was lost)."""
    keys = session.scalars(select(ApiKey).where(ApiKey.job_id.is_not(None))).all()
    dead = [
        key.seq
        for key in keys
        if session.scalar(JOB_KEY_ALIVE, job_key_parameters(key.job_id, key.job_attempt)) is None
    ]
    if dead:
        session.execute(delete(ApiKey).where(ApiKey.seq.in_(dead)))
    return len(dead)


def has_any_key(session: Session) -> bool:
    user_keys = select(ApiKey.seq).where(ApiKey.job_id.is_(None))
    return session.scalar(user_keys.limit(1)) is not None


@dataclass(frozen=True)
class KeyInfo:
    """What may be shown of a key: never the key, only an id and its first characters."""

    id: str
    project_id: str
    project_name: str
    prefix: str
    created_at: int


def key_id(key_hash: str) -> str:
    """A key's public id: derived from its hash, so it names the key without revealing it."""
    return f"key_{key_hash[:20]}"


def list_keys(session: Session, project_id: str | None = None) -> list[KeyInfo]:
    query = (
        select(ApiKey, Project)
        .join(Project, Project.id == ApiKey.project_id)
        .where(ApiKey.job_id.is_(None))  # a job's internal keys are no one's to manage
    )
    if project_id is not None:
        query = query.where(ApiKey.project_id == project_id)
    return [
        KeyInfo(key_id(key.key_hash), project.id, project.name, key.key_prefix, key.created_at)
        for key, project in session.execute(query.order_by(ApiKey.seq))
    ]


def revoke_key(session: Session, public_id: str, project_id: str | None = None) -> bool:
    """Delete the key with that id (of that project, when given); False when there is none.

    Every request looks its key up again, so the key is refused from the next request on."""
    if not public_id.startswith("key_") or len(public_id) != len("key_") + 20:
        return False
    query = delete(ApiKey).where(ApiKey.key_hash.startswith(public_id.removeprefix("key_")))
    if project_id is not None:
        query = query.where(ApiKey.project_id == project_id)
    return session.execute(query).rowcount > 0


def list_projects(session: Session) -> list[Project]:
    return list(session.scalars(select(Project).order_by(Project.created_at, Project.name)))
