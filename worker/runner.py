"""One job's life on a worker: validate its files, then hand it on."""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session, sessionmaker

from app.db import session_factory
from app.jobs import TERMINAL_STATUSES, JobStatus, validate_dataset
from app.models import File, Job
from app.settings import Settings
from app.storage import LocalStorage, Storage
from worker.reporter import JobReporter

logger = logging.getLogger("openrft.worker")

WAITING_FOR_TRAINER_MESSAGE = "Files validated; the job waits in the queue for a trainer"


def _method_type(job: Job) -> str:
    return str(job.method.get("type", "supervised"))


def _validate_file(
    sessions: sessionmaker[Session], storage: Storage, job: Job, role: str, file_id: str
) -> dict[str, str | None] | None:
    """The job's `error` for the first bad line of the file, or None when the file is good."""
    with sessions() as session:
        row = (
            session.query(File)
            .filter(File.id == file_id, File.project_id == job.project_id)
            .first()
        )
    if row is None:
        return {
            "code": "file_not_found",
            "message": f"File {file_id} no longer exists.",
            "param": role,
        }
    with storage.open(row.storage_key) as lines:
        report = validate_dataset(lines, method=_method_type(job), role=role)  # type: ignore[arg-type]
    return None if report.error is None else report.error.as_dict()


def validate_files(reporter: JobReporter, storage: Storage, job: Job) -> bool:
    """Check both files line by line; fail the job on the first bad line.

    A queued job is checked again too: it may have been paused before validation finished.
    """
    expected = JobStatus(job.status)
    inputs = [("training_file", job.training_file)]
    if job.validation_file:
        inputs.append(("validation_file", job.validation_file))
    for role, file_id in inputs:
        error = _validate_file(reporter.sessions, storage, job, role, file_id)
        if error is not None:
            reporter.fail(
                expected,
                error["code"] or "invalid_file",
                error["message"] or "",
                error["param"],
            )
            return False
    return expected == JobStatus.QUEUED or reporter.move_to(expected, JobStatus.QUEUED)


def run_job(job_id: str, settings: Settings) -> None:
    """Run one job; an unexpected error fails it with a clear message rather than stranding it."""
    reporter = JobReporter(session_factory(settings), job_id)
    try:
        _run(reporter, settings)
    except Exception as error:
        logger.exception("job %s failed", job_id)
        status = reporter.job().status
        if JobStatus(status) not in TERMINAL_STATUSES:
            reporter.fail(JobStatus(status), "internal_error", f"{type(error).__name__}: {error}")


def _run(reporter: JobReporter, settings: Settings) -> None:
    job_id = reporter.job_id
    job = reporter.job()
    if JobStatus(job.status) in TERMINAL_STATUSES or job.status == JobStatus.PAUSED:
        logger.info("job %s is %s; nothing to do", job_id, job.status)
        return
    storage = LocalStorage(settings.uploads_dir)
    if not validate_files(reporter, storage, job):
        return
    reporter.event(WAITING_FOR_TRAINER_MESSAGE)
