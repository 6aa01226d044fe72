"""One attempt at a job on a worker: take the lease, validate files, train, report.

Every write goes through the job's fence (`JobWriter`), so an attempt whose lease was taken
over stops at its next step boundary without recording anything more.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session, sessionmaker

from app import ids
from app.db import session_factory
from app.graders import GraderConfig
from app.jobs import iter_examples, validate_dataset
from app.jobs.hyperparameters import accepted_hyperparameters, resolve_hyperparameters
from app.jobs.repository import WAITING_STATUSES, StaleAttempt
from app.jobs.service import Enqueue
from app.jobs.states import TERMINAL_STATUSES, JobStatus
from app.settings import Settings
from app.storage import LocalStorage, Storage
from app.tables import File, Job
from worker.job_writer import JobWriter
from worker.lease import Heartbeat, take_lease, worker_identity

if TYPE_CHECKING:
    from worker.trainer.checkpoints import CheckpointStore
    from worker.trainer.progress import Reporter
    from worker.trainer.spec import TrainResult, TrainSpec

logger = logging.getLogger("openrft.worker")

# train(spec, reporter, checkpoints): the trainer's entry point, replaceable in tests
Train = Callable[["TrainSpec", "Reporter", "CheckpointStore"], "TrainResult"]


class GraderErrorRateExceeded(RuntimeError):
    """Too many samples of a step could not be graded; training on them would be noise."""


class JobProgress:
    """The trainer's Reporter for one attempt: events, metrics and stop requests, fenced."""

    def __init__(
        self, writer: JobWriter, heartbeat: Heartbeat, max_grader_error_rate: float
    ) -> None:
        self.writer = writer
        self.heartbeat = heartbeat
        self.max_grader_error_rate = max_grader_error_rate
        self.started = time.monotonic()
        self.steps_seen = 0

    def on_event(self, level: str, message: str, data: dict[str, Any] | None = None) -> None:
        self.heartbeat.check()
        self.writer.event(message, level=level, data=data)

    def on_step(self, step: int, total_steps: int, message: str, data: dict[str, Any]) -> None:
        self.heartbeat.check()
        self.steps_seen += 1
        seconds_per_step = (time.monotonic() - self.started) / self.steps_seen
        estimated_finish = int(time.time() + seconds_per_step * max(0, total_steps - step))
        self.writer.metrics(message, data, estimated_finish=estimated_finish)
        error_rate = float(data.get("train_error_rate") or 0.0)
        if error_rate > self.max_grader_error_rate:
            raise GraderErrorRateExceeded(
                f"the grader failed on {error_rate:.0%} of step {step}'s samples (the limit is "
                f"{self.max_grader_error_rate:.0%}); see the step's metrics event for the errors"
            )

    def on_samples(self, step: int, split: str, samples: list[dict[str, Any]]) -> None:
        self.heartbeat.check()
        self.writer.samples(step, split, samples)

    def should_stop(self) -> str | None:
        self.heartbeat.check()
        return self.writer.stop_request()


def _method_type(job: Job) -> str:
    return str(job.method.get("type", "supervised"))


def _file_row(sessions: sessionmaker[Session], job: Job, file_id: str) -> File | None:
    with sessions() as session:
        return (
            session.query(File)
            .filter(File.id == file_id, File.project_id == job.project_id)
            .first()
        )


def _file_error(
    sessions: sessionmaker[Session], storage: Storage, job: Job, role: str, file_id: str
) -> dict[str, str | None] | None:
    """The job's `error` for the first bad line of the file, or None when the file is good."""
    row = _file_row(sessions, job, file_id)
    if row is None:
        return {
            "code": "file_not_found",
            "message": f"File {file_id} no longer exists.",
            "param": role,
        }
    with storage.open(row.storage_key) as lines:
        report = validate_dataset(lines, method=_method_type(job), role=role)  # type: ignore[arg-type]
    return None if report.error is None else report.error.as_dict()


def validate_files(writer: JobWriter, storage: Storage, job: Job) -> bool:
    """Check both files line by line; fail the job on the first bad line, else queue it.

    A queued job is checked again too: it may have been paused before validation finished.
    """
    expected = JobStatus(job.status)
    inputs = [("training_file", job.training_file)]
    if job.validation_file:
        inputs.append(("validation_file", job.validation_file))
    for role, file_id in inputs:
        error = _file_error(writer.sessions, storage, job, role, file_id)
        if error is not None:
            writer.fail(
                expected, error["code"] or "invalid_file", error["message"] or "", error["param"]
            )
            return False
    return expected is JobStatus.QUEUED or writer.move(expected, JobStatus.QUEUED)


def _read_rows(
    sessions: sessionmaker[Session], storage: Storage, job: Job, file_id: str | None
) -> tuple[dict[str, Any], ...]:
    if file_id is None:
        return ()
    row = _file_row(sessions, job, file_id)
    if row is None:
        raise FileNotFoundError(f"File {file_id} no longer exists.")
    with storage.open(row.storage_key) as lines:
        return tuple(iter_examples(lines))


def _error_code(error: BaseException) -> str:
    if isinstance(error, GraderErrorRateExceeded):
        return "grader_error_rate_exceeded"
    if isinstance(error, MemoryError) or "out of memory" in str(error).lower():
        return "out_of_memory"
    return "training_error"


def work_dir(settings: Settings, job_id: str, attempt: int) -> Path:
    """The attempt's private scratch folder: its metrics file and nothing another reads."""
    return settings.resolved_data_dir / "work" / f"{job_id}.attempt-{attempt}"


def build_spec(writer: JobWriter, settings: Settings, storage: Storage, job: Job) -> TrainSpec:
    """Resolve the job's hyperparameters once, echo them, and freeze what the trainer needs."""
    from worker.trainer.models import resolve_model_dir
    from worker.trainer.spec import TrainSpec

    method = _method_type(job)
    body = job.method.get(method, {})
    train_rows = _read_rows(writer.sessions, storage, job, job.training_file)
    valid_rows = _read_rows(writer.sessions, storage, job, job.validation_file)
    # after a pause the echo holds resolved values, derived ones (learning_rate) among them;
    # resolving the accepted names again gives the same values for the same data
    accepted = accepted_hyperparameters(method)
    given = {k: v for k, v in (body.get("hyperparameters") or {}).items() if k in accepted}
    hyperparameters = resolve_hyperparameters(method, given, len(train_rows), len(valid_rows))
    writer.echo_hyperparameters(method, hyperparameters.as_dict())
    return TrainSpec(
        model=job.model,
        model_dir=resolve_model_dir(job.model, settings.model_dirs, settings.model_cache_dir),
        train_rows=train_rows,
        valid_rows=valid_rows,
        method=method,
        grader=body.get("grader"),
        hyperparameters=hyperparameters,
        seed=job.seed,
        work_dir=work_dir(settings, job.id, writer.fence.attempt),
        grader_config=GraderConfig.from_settings(settings),
        samples_per_step=settings.samples_per_step,
    )


def train_job(
    writer: JobWriter,
    heartbeat: Heartbeat,
    settings: Settings,
    storage: Storage,
    job: Job,
    train: Train,
) -> None:
    """Train the running job (resuming from its latest checkpoint) and report how it ended."""
    from worker.published_checkpoints import FencedCheckpointStore

    progress = JobProgress(writer, heartbeat, settings.max_grader_error_rate)
    checkpoints = FencedCheckpointStore(writer, settings.checkpoints_dir, job.id)
    checkpoints.discard_staging(earlier_attempts=True)
    for attempt in range(1, writer.fence.attempt):
        shutil.rmtree(work_dir(settings, job.id, attempt), ignore_errors=True)
    # steps an earlier attempt reported past its latest checkpoint are trained again
    writer.discard_metrics_after(checkpoints.latest_step())
    writer.discard_samples_after(checkpoints.latest_step())
    try:
        spec = build_spec(writer, settings, storage, job)
        result = train(spec, progress, checkpoints)
    except StaleAttempt:
        raise
    except Exception as error:
        logger.exception("training job %s failed", job.id)
        writer.fail(JobStatus.RUNNING, _error_code(error), f"{type(error).__name__}: {error}")
        return
    finally:
        checkpoints.discard_staging()
    finish(writer, settings, storage, result)


def _result_files(job: Job, result: TrainResult, storage: Storage) -> list[File]:
    """The job's `fine-tune-results` files, stored; their rows are added by the caller."""
    if result.metrics_file is None or not result.metrics_file.is_file():
        return []
    content = result.metrics_file.read_bytes()
    file_id = ids.new_file_id()
    storage_key = f"{job.project_id}/{file_id}"
    size = storage.write(storage_key, [content], max_bytes=len(content))
    row = File(
        id=file_id,
        project_id=job.project_id,
        filename="step_metrics.csv",
        purpose="fine-tune-results",
        bytes=size,
        storage_key=storage_key,
    )
    return [row]


def finish(writer: JobWriter, settings: Settings, storage: Storage, result: TrainResult) -> None:
    if result.status == "paused":
        writer.move(JobStatus.RUNNING, JobStatus.PAUSED)
        return
    if result.status == "cancelled":
        writer.move(JobStatus.RUNNING, JobStatus.CANCELLED)
        return
    assert result.adapter_dir is not None, "a completed run has a final adapter"
    adapter_path = result.adapter_dir.resolve().relative_to(settings.checkpoints_dir.resolve())
    writer.succeed(
        result_adapter_path=str(adapter_path),
        trained_tokens=result.trained_tokens,
        store_result_files=lambda job: _result_files(job, result, storage),
    )


def _default_train() -> Train:
    from worker.trainer.job import train

    return train


def run_job(job_id: str, settings: Settings, send: Enqueue, train: Train | None = None) -> None:
    """Run one attempt at the job, if it is ours to run.

    An unexpected error fails the job with a clear message rather than stranding it; a stale
    attempt stops without writing. A job left waiting (a resume came in while we held the lease)
    is sent again so that a worker picks it up.
    """
    sessions = session_factory(settings)
    fence = take_lease(
        sessions, job_id, worker_identity(), settings.job_lease_seconds, settings.max_job_attempts
    )
    if fence is None:
        logger.info("job %s is not waiting for a worker, or another holds it", job_id)
        return
    writer = JobWriter(sessions, fence)
    heartbeat = Heartbeat(sessions, fence, settings.job_lease_seconds)
    try:
        with heartbeat.kept_alive():
            try:
                _attempt(writer, heartbeat, settings, train or _default_train())
            except StaleAttempt:
                raise
            except Exception as error:
                logger.exception("job %s failed", job_id)
                _fail_unfinished(writer, f"{type(error).__name__}: {error}")
    except StaleAttempt as stale:
        logger.warning("%s; stopping without further writes", stale)
    finally:
        shutil.rmtree(work_dir(settings, job_id, fence.attempt), ignore_errors=True)
    if JobStatus(writer.job().status) in WAITING_STATUSES:
        send(job_id)


def _fail_unfinished(writer: JobWriter, message: str) -> None:
    status = JobStatus(writer.job().status)
    if status in TERMINAL_STATUSES:
        return
    try:
        writer.fail(status, "internal_error", message)
    except StaleAttempt as stale:
        logger.warning("%s; stopping without further writes", stale)


def _attempt(writer: JobWriter, heartbeat: Heartbeat, settings: Settings, train: Train) -> None:
    job = writer.job()
    storage = LocalStorage(settings.uploads_dir)
    if not validate_files(writer, storage, job):
        return  # failed, or paused or cancelled meanwhile
    if not writer.move(JobStatus.QUEUED, JobStatus.RUNNING):
        return  # paused or cancelled meanwhile
    train_job(writer, heartbeat, settings, storage, writer.job(), train)
