"""One job's life on a worker: validate its files, then hand it on."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session, sessionmaker

from app.db import session_factory
from app.jobs import TERMINAL_STATUSES, JobStatus, iter_examples, validate_dataset
from app.settings import Settings
from app.storage import LocalStorage, Storage
from app.tables import File, Job
from worker.lease import JobLease, worker_identity
from worker.reporter import JobReporter

if TYPE_CHECKING:
    from worker.trainer.spec import TrainResult

logger = logging.getLogger("openrft.worker")

TAKEN_OVER_MESSAGE = "The job's previous worker stopped; continuing from its latest checkpoint"


class GraderErrorRateExceeded(RuntimeError):
    """Too many samples of a step could not be graded; training on them would be noise."""


class JobProgress:
    """The trainer's Reporter for a job: events, metrics, checkpoints and stop requests."""

    def __init__(
        self, reporter: JobReporter, checkpoints_dir: Path, max_grader_error_rate: float
    ) -> None:
        self.reporter = reporter
        self.checkpoints_dir = checkpoints_dir
        self.max_grader_error_rate = max_grader_error_rate
        self.started = time.monotonic()
        self.steps_seen = 0

    def on_event(self, level: str, message: str, data: dict[str, Any] | None = None) -> None:
        self.reporter.event(message, level=level, data=data)

    def on_step(self, step: int, total_steps: int, message: str, data: dict[str, Any]) -> None:
        self.steps_seen += 1
        seconds_per_step = (time.monotonic() - self.started) / self.steps_seen
        estimated_finish = int(time.time() + seconds_per_step * max(0, total_steps - step))
        self.reporter.metrics(message, data, estimated_finish=estimated_finish)
        error_rate = float(data.get("train_error_rate") or 0.0)
        if error_rate > self.max_grader_error_rate:
            raise GraderErrorRateExceeded(
                f"the grader failed on {error_rate:.0%} of step {step}'s samples (the limit is "
                f"{self.max_grader_error_rate:.0%}); see the step's metrics event for the errors"
            )

    def on_checkpoint(self, step: int, adapter_dir: Path, metrics: dict[str, Any]) -> None:
        storage_path = str(adapter_dir.resolve().relative_to(self.checkpoints_dir.resolve()))
        self.reporter.checkpoint(step, storage_path, metrics)

    def on_checkpoint_deleted(self, step: int) -> None:
        self.reporter.checkpoint_deleted(step)

    def should_stop(self) -> str | None:
        return self.reporter.stop_request()


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


def _read_rows(
    sessions: sessionmaker[Session], storage: Storage, file_id: str | None
) -> list[dict]:
    if file_id is None:
        return []
    with sessions() as session:
        row = session.query(File).filter(File.id == file_id).one()
    with storage.open(row.storage_key) as lines:
        return list(iter_examples(lines))


def _error_code(error: BaseException) -> str:
    if isinstance(error, GraderErrorRateExceeded):
        return "grader_error_rate_exceeded"
    if isinstance(error, MemoryError) or "out of memory" in str(error).lower():
        return "out_of_memory"
    return "training_error"


def train_job(reporter: JobReporter, settings: Settings, storage: Storage, job: Job) -> None:
    """Resolve hyperparameters, train (resuming from the job's latest checkpoint), report."""
    from worker.trainer.hyperparameters import (
        REINFORCEMENT_KEYS,
        SUPERVISED_KEYS,
        resolve_hyperparameters,
    )
    from worker.trainer.job import train
    from worker.trainer.spec import TrainSpec

    method = _method_type(job)
    body = job.method.get(method, {})
    train_rows = _read_rows(reporter.sessions, storage, job.training_file)
    valid_rows = _read_rows(reporter.sessions, storage, job.validation_file)
    # after a pause the echo holds resolved values, derived ones (learning_rate) among them;
    # resolving the inputs again gives the same values for the same data
    accepted = REINFORCEMENT_KEYS if method == "reinforcement" else SUPERVISED_KEYS
    given = {
        key: value for key, value in (body.get("hyperparameters") or {}).items() if key in accepted
    }
    resolved = resolve_hyperparameters(method, given, len(train_rows), len(valid_rows))
    reporter.resolved_hyperparameters(method, resolved)
    spec = TrainSpec(
        model=job.model,
        train_rows=train_rows,
        valid_rows=valid_rows,
        method=method,
        grader=body.get("grader"),
        hyperparameters=given,
        seed=job.seed,
        out_dir=settings.checkpoints_dir / job.id,
        settings=settings,
    )
    progress = JobProgress(reporter, settings.checkpoints_dir, settings.max_grader_error_rate)
    try:
        result = train(spec, progress)
    except Exception as error:
        logger.exception("training job %s failed", job.id)
        reporter.fail(JobStatus.RUNNING, _error_code(error), f"{type(error).__name__}: {error}")
        return
    finish(reporter, settings, storage, result)


def finish(
    reporter: JobReporter, settings: Settings, storage: Storage, result: TrainResult
) -> None:
    if result.status == "paused":
        reporter.move_to(JobStatus.RUNNING, JobStatus.PAUSED)
        return
    if result.status == "cancelled":
        reporter.move_to(JobStatus.RUNNING, JobStatus.CANCELLED)
        return
    result_files = []
    if result.metrics_file is not None and result.metrics_file.is_file():
        content = result.metrics_file.read_bytes()
        result_files.append(reporter.result_file("step_metrics.csv", content, storage))
    assert result.adapter_dir is not None, "a completed run has a final adapter"
    reporter.succeed(
        result_adapter_path=str(
            result.adapter_dir.resolve().relative_to(settings.checkpoints_dir.resolve())
        ),
        trained_tokens=result.trained_tokens,
        result_files=result_files,
    )


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
    if job.status != JobStatus.RUNNING and not validate_files(reporter, storage, job):
        return
    lease = JobLease(reporter.sessions, job_id, worker_identity(), settings.job_lease_seconds)
    if not lease.acquire():
        logger.info("job %s is held by another worker", job_id)
        return
    with lease.kept_alive():
        job = reporter.job()
        if job.status == JobStatus.RUNNING:
            reporter.event(TAKEN_OVER_MESSAGE, level="warn")
        elif job.status != JobStatus.QUEUED or not reporter.move_to(
            JobStatus.QUEUED, JobStatus.RUNNING
        ):
            return  # paused or cancelled meanwhile
        train_job(reporter, settings, storage, job)
