"""Send a job to the training queue it was placed on at creation (`Job.queue`)."""

from __future__ import annotations

from collections.abc import Callable

from celery import Celery
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.db import session_factory
from app.queue import make_celery, send_job
from app.settings import Settings
from app.tables import Job


def placed_queue(sessions: sessionmaker[Session], job_id: str) -> str | None:
    with sessions() as session:
        return session.scalar(select(Job.queue).where(Job.id == job_id))


def send_placed(
    celery: Celery, settings: Settings, sessions: sessionmaker[Session], job_id: str
) -> None:
    """Hand a job to the workers on its own queue; raises when the broker cannot take it."""
    send_job(celery, settings, job_id, placed_queue(sessions, job_id))


def placed_job_sender(settings: Settings) -> Callable[[str], None]:
    """Sends a job id to training on its queue, reusing one Celery app for every send."""
    celery = make_celery(settings)
    sessions = session_factory(settings)
    return lambda job_id: send_placed(celery, settings, sessions, job_id)
