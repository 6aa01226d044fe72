"""One attempt at a job on a worker: take the lease, validate files, train, report.

Every write goes through the job's fence (`JobWriter`), so an attempt whose lease was taken
over stops at its next step boundary without recording anything more.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session, sessionmaker

from app import ids
from app.artifact_store import MissingArtifact, artifact_store
from app.base_models import base_model_config
from app.db import session_factory
from app.graders import GraderConfig
from app.images import vision_refusal
from app.jobs import iter_examples, validate_dataset
from app.jobs.hyperparameters import accepted_hyperparameters, resolve_hyperparameters
from app.jobs.repository import WAITING_STATUSES, StaleAttempt, lease_view
from app.jobs.service import ADAPTER_CONFIG, Enqueue
from app.jobs.states import TERMINAL_STATUSES, JobStatus
from app.keys.service import issue_job_key, revoke_job_keys
from app.observability.logs import job_id_var
from app.settings import Settings
from app.storage import Storage, storage_from_settings
from app.tables import File, Job
from worker.integrations import TrackedReporter, tracked
from worker.job_writer import JobWriter
from worker.lease import Heartbeat, take_fair_lease, worker_identity
from worker.metrics import JOBS_RUN, record_step

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
        self, writer: JobWriter, heartbeat: Heartbeat, max_grader_error_rate: float, method: str
    ) -> None:
        self.writer = writer
        self.method = method
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
        record_step(self.method, data)
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
    sessions: sessionmaker[Session],
    storage: Storage,
    job: Job,
    role: str,
    file_id: str,
    settings: Settings,
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
        report = validate_dataset(
            lines,
            method=_method_type(job),  # type: ignore[arg-type]
            role=role,  # type: ignore[arg-type]
            model=job.base_model_name,
            image_support=lambda: vision_refusal(base_model_config(settings, job.base_model_name)),
        )
    return None if report.error is None else report.error.as_dict()


def response_format_error(job: Job) -> dict[str, str | None] | None:
    """The job's `error` when its response_format is a schema that cannot be enforced."""
    from worker.constrained import Constraint, ConstraintError

    body = job.method.get(_method_type(job)) or {}
    try:
        Constraint.from_response_format(body.get("response_format"))
    except ConstraintError as error:
        return {
            "code": "invalid_response_format",
            "message": str(error),
            "param": "method.reinforcement.response_format",
        }
    return None


def files_error(
    sessions: sessionmaker[Session], storage: Storage, job: Job, settings: Settings
) -> dict[str, str | None] | None:
    """The job's `error` for its response_format, or for the first bad line of its training or
    validation file; None when all are good."""
    if (error := response_format_error(job)) is not None:
        return error
    inputs = [("training_file", job.training_file)]
    if job.validation_file:
        inputs.append(("validation_file", job.validation_file))
    for role, file_id in inputs:
        error = _file_error(sessions, storage, job, role, file_id, settings)
        if error is not None:
            return {
                "code": error["code"] or "invalid_file",
                "message": error["message"] or "",
                "param": error["param"],
            }
    return None


def validate_files(writer: JobWriter, storage: Storage, job: Job, settings: Settings) -> bool:
    """Check both files line by line; fail the job on the first bad line, else queue it.

    A queued job is checked again too: it may have been paused before validation finished.
    """
    expected = JobStatus(job.status)
    error = files_error(writer.sessions, storage, job, settings)
    if error is not None:
        writer.fail(expected, error["code"] or "", error["message"] or "", error["param"])
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


def parent_adapter_dir(settings: Settings, job: Job, resuming: bool, attempt: int) -> Path | None:
    """The adapter a job trained on from a fine-tuned model starts from; None for a fresh one,
    and for a job resuming from a checkpoint of its own (which holds the weights, while the
    echo of its first attempt holds the adapter's shape).

    Raises FileNotFoundError when its files went away after the job was created."""
    if job.parent_adapter_path is None or resuming:
        return None
    artifacts = artifact_store(settings, "checkpoints", "worker")
    scratch = work_dir(settings, job.id, attempt) / "parent-adapter"
    try:
        adapter_dir = artifacts.local_copy(job.parent_adapter_path, scratch)
    except MissingArtifact:
        adapter_dir = None
    if adapter_dir is None or not (adapter_dir / ADAPTER_CONFIG).is_file():
        raise FileNotFoundError(f"the weights of {job.model} are no longer on this server")
    return adapter_dir


def parent_adapter_shape(adapter_dir: Path) -> dict[str, Any]:
    """lora_rank and lora_alpha of a saved adapter, as hyperparameters."""
    config = json.loads((adapter_dir / ADAPTER_CONFIG).read_text())
    return {"lora_rank": int(config["r"]), "lora_alpha": float(config["lora_alpha"])}


@contextmanager
def job_key(writer: JobWriter) -> Iterator[str]:
    """The attempt's internal key: model graders calling this service act as the job's
    project with it, and it is revoked when the block ends (it dies with the lease anyway)."""
    fence = writer.fence
    with writer.sessions.begin() as session:
        api_key = issue_job_key(session, fence.job_id, fence.attempt)
    try:
        yield api_key
    finally:
        with writer.sessions.begin() as session:
            revoke_job_keys(session, fence.job_id, fence.attempt)


def build_spec(
    writer: JobWriter,
    settings: Settings,
    storage: Storage,
    job: Job,
    resuming: bool = False,
    own_key: str | None = None,
) -> TrainSpec:
    """Resolve the job's hyperparameters once, echo them, and freeze what the trainer needs.

    `resuming`: the job has published checkpoints, which the trainer continues from.
    `own_key`: the job's internal key, for model graders that call this service."""
    from worker.base_model_dirs import base_model_dir
    from worker.trainer.spec import TrainSpec, WarmStart

    method = _method_type(job)
    body = job.method.get(method, {})
    train_rows = _read_rows(writer.sessions, storage, job, job.training_file)
    valid_rows = _read_rows(writer.sessions, storage, job, job.validation_file)
    # after a pause the echo holds resolved values, derived ones (learning_rate) among them;
    # resolving the accepted names again gives the same values for the same data
    accepted = accepted_hyperparameters(method)
    given = {k: v for k, v in (body.get("hyperparameters") or {}).items() if k in accepted}
    init_adapter_dir = parent_adapter_dir(settings, job, resuming, writer.fence.attempt)
    if init_adapter_dir is not None:
        # the parent's adapter is trained on, so it keeps its shape (the API refused others)
        given |= parent_adapter_shape(init_adapter_dir)
    hyperparameters = resolve_hyperparameters(method, given, len(train_rows), len(valid_rows))
    writer.echo_hyperparameters(method, hyperparameters.as_dict())
    warm_start = body.get("warm_start") if method == "reinforcement" else None
    if init_adapter_dir is not None:
        writer.event(f"Training on from the adapter of {job.model} (job {job.parent_job_id})")
    base_model = job.base_model_name
    return TrainSpec(
        model=base_model,
        model_dir=base_model_dir(settings, base_model, "worker"),
        init_adapter_dir=init_adapter_dir,
        train_rows=train_rows,
        valid_rows=valid_rows,
        method=method,
        grader=body.get("grader"),
        response_format=body.get("response_format"),
        hyperparameters=hyperparameters,
        seed=job.seed,
        work_dir=work_dir(settings, job.id, writer.fence.attempt),
        grader_config=GraderConfig.from_settings(settings, own_key=own_key),
        samples_per_step=settings.samples_per_step,
        gradient_checkpointing=job.gradient_checkpointing,
        warm_start=(
            WarmStart.resolve(warm_start, hyperparameters, len(train_rows)) if warm_start else None
        ),
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

    progress = JobProgress(writer, heartbeat, settings.max_grader_error_rate, _method_type(job))
    artifacts = artifact_store(settings, "checkpoints", "worker")
    checkpoints = FencedCheckpointStore(writer, settings.checkpoints_dir, job.id, artifacts)
    checkpoints.discard_staging(earlier_attempts=True)
    for attempt in range(1, writer.fence.attempt):
        shutil.rmtree(work_dir(settings, job.id, attempt), ignore_errors=True)
    # an earlier attempt may have run on another host: its checkpoints come from storage
    if fetched := checkpoints.fetch_published():
        logger.info("job %s: fetched %d checkpoints from storage", job.id, fetched)
    # steps an earlier attempt reported past its latest checkpoint are trained again
    writer.discard_metrics_after(checkpoints.latest_step())
    writer.discard_samples_after(checkpoints.latest_step())
    tracking: TrackedReporter | None = None
    trained = False  # the run ended as the trainer decided: completed, paused or cancelled
    try:
        with job_key(writer) as own_key:
            resuming = bool(checkpoints.list())
            spec = build_spec(writer, settings, storage, job, resuming=resuming, own_key=own_key)
            tracking = tracked(progress, settings, job, spec.hyperparameters.as_dict())
            result = train(spec, tracking or progress, checkpoints)
        trained = True
    except StaleAttempt:
        raise
    except Exception as error:
        logger.exception("training job %s failed", job.id)
        writer.fail(JobStatus.RUNNING, _error_code(error), f"{type(error).__name__}: {error}")
        return
    finally:
        if tracking is not None:
            tracking.close(succeeded=trained)
        checkpoints.discard_staging()
    finish(writer, settings, storage, result)
    if settings.storage_url:
        # everything worth keeping is in storage; a later attempt fetches what it needs
        shutil.rmtree(checkpoints.root.parent, ignore_errors=True)


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
    """Run one attempt at the fairest waiting job: the message's `job_id` names a turn, and
    another project's job may take it (`app.jobs.dispatch`).

    An unexpected error fails the job with a clear message rather than stranding it; a stale
    attempt stops without writing. A job left waiting (a resume came in while we held the lease)
    is sent again so that a worker picks it up.
    """
    sessions = session_factory(settings)
    fence = take_fair_lease(
        sessions, job_id, worker_identity(), settings.job_lease_seconds, settings.max_job_attempts
    )
    if fence is None:
        logger.info("job %s: no job waits for a worker (all taken, or done)", job_id)
        return
    if fence.job_id != job_id:
        logger.info("job %s's turn went to job %s (fair dispatch)", job_id, fence.job_id)
        _keep_a_turn_for(sessions, job_id, send)
        job_id = fence.job_id
        job_id_var.set(job_id)  # the task resets it when it ends
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
    status = JobStatus(writer.job().status)
    JOBS_RUN.labels(status.value).inc()
    logger.info("job %s attempt %d ended %s", job_id, fence.attempt, status.value)
    if status in WAITING_STATUSES:
        send(job_id)


def _keep_a_turn_for(sessions: sessionmaker[Session], job_id: str, send: Enqueue) -> None:
    """Send again a job whose only training message was the turn just given away: one the
    sweep sent to training while it still waits for its files to be checked (a queued job
    has a message of its own, which the job that took this turn leaves behind)."""
    with sessions() as session:
        view = lease_view(session, job_id)
    if view is not None and view.status is JobStatus.VALIDATING_FILES and view.owner is None:
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
    storage = storage_from_settings(settings)
    if not validate_files(writer, storage, job, settings):
        return  # failed, or paused or cancelled meanwhile
    if not writer.move(JobStatus.QUEUED, JobStatus.RUNNING):
        return  # paused or cancelled meanwhile
    train_job(writer, heartbeat, settings, storage, writer.job(), train)
