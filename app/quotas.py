"""Per-project quotas: jobs waiting or running at once, and bytes of files stored.

Both are off unless the operator sets them. They are checked when a job is created and when a
file (or an upload) starts, so two requests racing past the same last slot may both pass.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.errors import APIError, bad_request
from app.jobs.states import JobStatus
from app.projects import ProjectRef
from app.settings import Settings
from app.tables import File, Job

# what holds a worker, or will: a paused job waits for its user, not for the fleet
ACTIVE_STATUSES = (JobStatus.VALIDATING_FILES, JobStatus.QUEUED, JobStatus.RUNNING)


def check_active_jobs(session: Session, settings: Settings, project: ProjectRef) -> None:
    limit = settings.max_active_jobs_per_project
    if limit is None:
        return
    active = session.scalar(
        select(func.count())
        .select_from(Job)
        .where(Job.project_id == project.id, Job.status.in_([s.value for s in ACTIVE_STATUSES]))
    )
    if (active or 0) >= limit:
        error = APIError(
            429,
            f"This project already has {active} fine-tuning jobs validating, queued or running; "
            f"the limit is {limit}. Wait for one to finish or cancel one.",
            code="too_many_active_jobs",
            type="requests",
        )
        error.headers["retry-after"] = "60"
        raise error


def stored_bytes(session: Session, project: ProjectRef) -> int:
    total = session.scalar(select(func.sum(File.bytes)).where(File.project_id == project.id))
    return int(total or 0)


def storage_left(session: Session, settings: Settings, project: ProjectRef) -> int | None:
    """Bytes this project may still store, or None without a quota; 400 when none are left."""
    limit = settings.max_stored_bytes_per_project
    if limit is None:
        return None
    left = limit - stored_bytes(session, project)
    if left <= 0:
        raise quota_exceeded(limit)
    return left


def quota_exceeded(limit: int) -> APIError:
    return bad_request(
        f"This project's files would take more than its storage quota of {limit} bytes; "
        "delete files it no longer needs.",
        param="file",
        code="storage_quota_exceeded",
    )
