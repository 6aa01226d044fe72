"""Projects and their API keys. Keys are stored as sha256 hashes only."""

from __future__ import annotations

import hashlib

from sqlalchemy import select
from sqlalchemy.orm import Session

from app import ids
from app.tables import ApiKey, Project

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


def project_for_key(session: Session, api_key: str) -> Project | None:
    key = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(api_key)))
    return None if key is None else session.get(Project, key.project_id)


def has_any_key(session: Session) -> bool:
    return session.scalar(select(ApiKey.seq).limit(1)) is not None
