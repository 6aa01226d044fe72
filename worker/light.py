"""The light lane: a new job's files are checked on the light queue, not behind training.

A user whose file has a bad line learns it in seconds even while every training worker is in
a two-hour job. The check needs no lease: the verdict is a compare-and-set on a job no worker
holds, and a training worker that takes the job checks the files again anyway. If no light
worker runs, the workers' sweep sends the waiting job to training, which checks it there.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy import select

from app.db import session_factory
from app.jobs import repository
from app.jobs.states import JobStatus
from app.settings import Settings
from app.storage import storage_from_settings
from app.tables import Job
from worker.runner import files_error

logger = logging.getLogger("openrft.worker")


def validate_job(job_id: str, settings: Settings, send_to_training: Callable[[str], None]) -> None:
    sessions = session_factory(settings)
    with sessions() as session:
        job = session.scalar(select(Job).where(Job.id == job_id))
    if job is None or job.status != JobStatus.VALIDATING_FILES.value or job.lease_owner:
        return  # moved on already: cancelled, paused, or a training worker has it
    error = files_error(sessions, storage_from_settings(settings), job, settings)
    with sessions.begin() as session:
        settled = repository.settle_validation(session, job_id, job.attempt, error)
    if not settled:
        return
    if error is None:
        logger.info("job %s: files are valid; sent to training", job_id)
        send_to_training(job_id)
    else:
        logger.info("job %s: %s", job_id, error["message"])
