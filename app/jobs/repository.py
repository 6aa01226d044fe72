"""The only writer of jobs, job events, checkpoint and sample rows.

Every status change is a compare-and-set through the state machine: `UPDATE jobs ... WHERE
id = ? AND status = ? AND attempt = ?`. A caller that loses the race re-reads and decides again.

A worker's writes carry its fence: the attempt number it got when it took the lease, and its
name. Taking a lease raises the job's attempt; taking back a lapsed lease clears its holder. So
a worker that stalled past its lease finds every later write refused (`StaleAttempt`). Fenced
writes first touch the job row under the fence; that row lock (PostgreSQL) or write lock
(SQLite) is held until commit, so a take-over cannot slip in between the check and the write.
Lease times come from the database's clock, never a host's.

Functions take a session and never commit unless their docstring says so: the caller owns the
transaction, so a write and its event land together or not at all. A move to a final status
also writes the job's webhook deliveries (the outbox) in that transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, delete, or_, select, text, update
from sqlalchemy.orm import Session

from app import ids
from app.db import db_clock
from app.jobs.states import (
    TERMINAL_STATUSES,
    JobStatus,
    UserAction,
    UserActionOutcome,
    advance,
    apply_user_action,
    event_level,
    transition_message,
)
from app.tables import Checkpoint, File, Job, JobEvent, JobSample, Project, now
from app.webhooks import repository as webhooks

# a user action re-reads and retries when a worker changed the job meanwhile; more than a few
# rounds means something is spinning
MAX_ACTION_ROUNDS = 20
# statuses a worker may take a lease on
CLAIMABLE_STATUSES = (JobStatus.VALIDATING_FILES, JobStatus.QUEUED, JobStatus.RUNNING)
WAITING_STATUSES = (JobStatus.VALIDATING_FILES, JobStatus.QUEUED)


class StaleAttempt(Exception):
    """A write from an attempt that no longer owns the job: its lease was taken over."""


# how long a sweep or a user action waits for a job row another transaction holds (PostgreSQL):
# a worker stopped inside a transaction must not stall everyone else
LOCK_WAIT = "5s"


def bound_lock_wait(session: Session) -> None:
    """Make this transaction give up on a locked job row after LOCK_WAIT (PostgreSQL; SQLite's
    own busy timeout bounds the wait there)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"SET LOCAL lock_timeout = '{LOCK_WAIT}'"))


@dataclass(frozen=True)
class Fence:
    """What a worker holds while it owns a job: the job, its attempt and who took it."""

    job_id: str
    attempt: int
    owner: str


# --- events -------------------------------------------------------------------------------


def _add_event(
    session: Session,
    job_id: str,
    message: str,
    *,
    level: str = "info",
    type: str = "message",
    data: dict[str, Any] | None = None,
) -> JobEvent:
    event = JobEvent(
        id=ids.new_event_id(), job_id=job_id, message=message, level=level, type=type, data=data
    )
    session.add(event)
    return event


def _status_values(to: JobStatus) -> dict[str, Any]:
    """Columns every move to `to` sets besides `status`, so flags always agree with it."""
    values: dict[str, Any] = {"status": to.value}
    if to in TERMINAL_STATUSES:
        values.update(finished_at=now(), estimated_finish=None)
    if to is not JobStatus.RUNNING:
        # a stop request belongs to one running attempt; nothing else may carry it
        values.update(cancel_requested=False, pause_requested=False)
    if to in TERMINAL_STATUSES or to is JobStatus.PAUSED:
        values.update(lease_owner=None, lease_expires_at=None)
    return values


def _load(session: Session, job_id: str) -> Job:
    """The job row as the database holds it now (not a copy cached in the session)."""
    query = select(Job).where(Job.id == job_id).execution_options(populate_existing=True)
    return session.scalars(query).one()


def _fenced(fence: Fence) -> tuple[Any, ...]:
    """The job row as long as `fence` holds its lease."""
    return (Job.id == fence.job_id, Job.attempt == fence.attempt, Job.lease_owner == fence.owner)


# --- the API's writes ---------------------------------------------------------------------


def insert_job(session: Session, job: Job, messages: list[str]) -> None:
    """A new job with its first events; the job is counted as sent at its creation."""
    job.attempt = 0
    job.lost_attempts = []
    session.add(job)
    session.flush()
    session.execute(update(Job).where(Job.id == job.id).values(enqueued_at=db_clock()))
    for message in messages:
        _add_event(session, job.id, message)


def act(session: Session, job_id: str, action: UserAction) -> tuple[Job, UserActionOutcome]:
    """Cancel, pause or resume as the state machine allows, and commit.

    A compare-and-set on status and attempt: when a worker moved the job between our read and
    our write, read again and decide again. Raises IllegalTransition.
    """
    for _ in range(MAX_ACTION_ROUNDS):
        bound_lock_wait(session)
        job = _load(session, job_id)
        status, attempt = JobStatus(job.status), job.attempt
        outcome = apply_user_action(status, action)
        values: dict[str, Any] = {}
        if outcome.new_status is not None:
            values.update(_status_values(outcome.new_status))
            if outcome.new_status is JobStatus.QUEUED:
                values.update(enqueued_at=db_clock(), resend_count=0)
        if outcome.cancel_requested:
            values["cancel_requested"] = True
        if outcome.pause_requested:
            values["pause_requested"] = True
        result = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == status.value, Job.attempt == attempt)
            .values(**values)
        )
        if result.rowcount == 1:
            _add_event(session, job_id, outcome.event_message)
            if outcome.new_status is not None:
                _announce(session, job_id, outcome.new_status)
            session.commit()
            session.refresh(job)
            return job, outcome
        session.rollback()
    raise RuntimeError(f"job {job_id} kept changing while a user tried to {action} it")


def forget_fine_tuned_model(session: Session, job_id: str) -> str | None:
    """Take the job's fine-tuned model out of service, with an event; the adapter path it was
    served from (its files are the caller's to remove), or None when it had none left.

    The job keeps its `fine_tuned_model` name, as OpenAI's jobs do after a delete. The caller
    commits.
    """
    job = _load(session, job_id)
    path = job.result_adapter_path
    if path is None:
        return None
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.result_adapter_path == path)
        .values(result_adapter_path=None)
    )
    if result.rowcount != 1:
        return None
    _add_event(session, job_id, f"Fine-tuned model deleted: {job.fine_tuned_model}")
    return path


def delete_finished_checkpoint(session: Session, checkpoint_id: str) -> Checkpoint | None:
    """Delete a checkpoint row of a succeeded, failed or cancelled job (a running or paused job
    still resumes from its checkpoints), with an event; the row deleted, or None. The caller
    commits."""
    found = session.execute(
        select(Checkpoint, Job.status)
        .join(Job, Checkpoint.job_id == Job.id)
        .where(Checkpoint.id == checkpoint_id)
    ).first()
    if found is None or JobStatus(found[1]) not in TERMINAL_STATUSES:
        return None
    checkpoint = found[0]
    terminal = [status.value for status in TERMINAL_STATUSES]
    result = session.execute(
        delete(Checkpoint).where(
            Checkpoint.id == checkpoint_id,
            Checkpoint.job_id.in_(select(Job.id).where(Job.status.in_(terminal))),
        )
    )
    if result.rowcount != 1:
        return None
    _add_event(
        session,
        checkpoint.job_id,
        f"Checkpoint model deleted: {checkpoint.fine_tuned_model_checkpoint}",
    )
    return checkpoint


def fail_unsent(session: Session, job_id: str, code: str, message: str) -> bool:
    """Fail a new job whose queue message could not be sent, unless a worker took it or
    something moved it; commits."""
    job = _load(session, job_id)
    if JobStatus(job.status) not in WAITING_STATUSES or job.lease_owner is not None:
        return False
    moved = _move(
        session, job_id, JobStatus(job.status), job.attempt, JobStatus.FAILED,
        error={"code": code, "message": message, "param": None},
    )  # fmt: skip
    session.commit()
    return moved


def note_unsent(session: Session, job_id: str, message: str) -> None:
    """Record that a resumed job's message could not be sent now (the sweep sends it); commits."""
    _add_event(session, job_id, message, level="warn")
    session.commit()


# --- moves under compare-and-set ----------------------------------------------------------


def _move(
    session: Session,
    job_id: str,
    expected: JobStatus,
    attempt: int,
    to: JobStatus,
    *,
    error: dict[str, Any] | None = None,
    message: str | None = None,
    level: str | None = None,
    data: dict[str, Any] | None = None,
    still: tuple[Any, ...] = (),
    **fields: Any,
) -> bool:
    """Move from `expected` to `to` if the job is still there at `attempt` (and `still` holds);
    record the event."""
    advance(expected, to)
    values = _status_values(to) | fields
    if error is not None:
        values["error"] = error
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == expected.value, Job.attempt == attempt, *still)
        .values(**values)
    )
    if result.rowcount != 1:
        return False
    reason = error["message"] if error else None
    _add_event(
        session,
        job_id,
        message or transition_message(expected, to, reason=reason),
        level=level or event_level(to),
        data=data,
    )
    _announce(session, job_id, to)
    return True


def _announce(session: Session, job_id: str, to: JobStatus) -> None:
    """Queue the webhook deliveries of a move to a final status, in the move's transaction."""
    if to in TERMINAL_STATUSES:
        project_id = session.scalars(select(Job.project_id).where(Job.id == job_id)).one()
        webhooks.enqueue_job_event(session, project_id, job_id, to.value)


# --- leases -------------------------------------------------------------------------------


@dataclass(frozen=True)
class LeaseView:
    """A job's lease as the database sees it now."""

    status: JobStatus
    attempt: int
    owner: str | None
    expired: bool

    @property
    def lapsed(self) -> bool:
        """Taken by a worker that stopped renewing, or running with nobody holding it."""
        if self.status not in CLAIMABLE_STATUSES:
            return False
        if self.owner is None:
            return self.status is JobStatus.RUNNING
        return self.expired


def lease_view(session: Session, job_id: str) -> LeaseView | None:
    row = session.execute(
        select(
            Job.status,
            Job.attempt,
            Job.lease_owner,
            (Job.lease_expires_at < db_clock()).label("expired"),
        ).where(Job.id == job_id)
    ).one_or_none()
    if row is None:
        return None
    return LeaseView(JobStatus(row.status), row.attempt, row.lease_owner, bool(row.expired))


def claim(session: Session, job_id: str, owner: str, lease_seconds: float) -> Fence | None:
    """Take the lease of a waiting job nobody holds; None when it is not ours to take.

    Raises the attempt and notes when its project was last served (the fair dispatch). A job whose lease lapsed must be reclaimed first (`reclaim_lapsed`).
    """
    view = lease_view(session, job_id)
    if view is None or view.status not in WAITING_STATUSES or view.owner is not None:
        return None
    result = session.execute(
        update(Job)
        .where(
            Job.id == job_id,
            Job.attempt == view.attempt,
            Job.status == view.status.value,
            Job.lease_owner.is_(None),
        )
        .values(
            attempt=view.attempt + 1,
            lease_owner=owner,
            lease_expires_at=db_clock() + lease_seconds,
            resend_count=0,
        )
    )
    if result.rowcount != 1:
        return None
    project_id = select(Job.project_id).where(Job.id == job_id).scalar_subquery()
    session.execute(
        update(Project).where(Project.id == project_id).values(last_dispatched_at=db_clock())
    )
    return Fence(job_id, view.attempt + 1, owner)


def renew(session: Session, fence: Fence, lease_seconds: float) -> bool:
    """Extend the lease; False when the attempt lost it (taken back, or the job moved on)."""
    result = session.execute(
        update(Job).where(*_fenced(fence)).values(lease_expires_at=db_clock() + lease_seconds)
    )
    return result.rowcount == 1


def release(session: Session, fence: Fence) -> None:
    """Give the lease up (no-op when the attempt no longer holds it)."""
    session.execute(
        update(Job).where(*_fenced(fence)).values(lease_owner=None, lease_expires_at=None)
    )


def lapsed_leases(session: Session) -> list[str]:
    """Jobs a worker took but stopped renewing, or running jobs that nobody holds."""
    unfinished = [status.value for status in CLAIMABLE_STATUSES]
    return list(
        session.scalars(
            select(Job.id).where(
                Job.status.in_(unfinished),
                or_(
                    and_(Job.lease_owner.is_not(None), Job.lease_expires_at < db_clock()),
                    and_(Job.status == JobStatus.RUNNING.value, Job.lease_owner.is_(None)),
                ),
            )
        )
    )


def reclaim_lapsed(session: Session, job_id: str, max_attempts: int) -> JobStatus | None:
    """Take a lapsed lease back: the lost attempt is counted and fenced off (holder cleared).

    A running job goes back to queued; one that has lost `max_attempts` attempts fails, keeping
    its events. Returns the job's status afterwards, or None when its lease is not lapsed.
    """
    bound_lock_wait(session)
    view = lease_view(session, job_id)
    if view is None or not view.lapsed:
        return None
    job = _load(session, job_id)
    lost = [*job.lost_attempts, view.attempt]
    values: dict[str, Any] = {
        "lost_attempts": lost,
        "lease_owner": None,
        "lease_expires_at": None,
        "enqueued_at": db_clock(),
        "resend_count": 0,
    }
    data = {"attempt": view.attempt, "worker": view.owner}
    # the lease must still be lapsed when we write: its holder may have renewed meanwhile
    still = (
        (Job.lease_owner.is_(None),)
        if view.owner is None
        else (Job.lease_owner == view.owner, Job.lease_expires_at < db_clock())
    )
    if view.status is JobStatus.RUNNING and (job.cancel_requested or job.pause_requested):
        # the user asked the lost attempt to stop: honour it rather than train on
        to = JobStatus.CANCELLED if job.cancel_requested else JobStatus.PAUSED
        moved = _move(
            session, job_id, view.status, view.attempt, to, data=data, still=still, **values
        )
        return to if moved else None
    if len(lost) >= max_attempts:
        moved = _move(
            session, job_id, view.status, view.attempt, JobStatus.FAILED,
            error=attempts_exhausted_error(lost), data=data, still=still, **values,
        )  # fmt: skip
        return JobStatus.FAILED if moved else None
    if view.status is JobStatus.RUNNING:
        moved = _move(
            session, job_id, view.status, view.attempt, JobStatus.QUEUED,
            level="warn", data=data, still=still, **values,
        )  # fmt: skip
        return JobStatus.QUEUED if moved else None
    result = session.execute(
        update(Job)
        .where(
            Job.id == job_id, Job.attempt == view.attempt, Job.status == view.status.value, *still
        )
        .values(**values)
    )
    if result.rowcount != 1:
        return None
    _add_event(session, job_id, LOST_WHILE_WAITING_MESSAGE, level="warn", data=data)
    return view.status


LOST_WHILE_WAITING_MESSAGE = "The worker handling the job was lost; the job waits for another"


def attempts_exhausted_error(lost_attempts: list[int]) -> dict[str, Any]:
    numbers = ", ".join(str(number) for number in lost_attempts)
    return {
        "code": "job_attempts_exhausted",
        "message": (
            f"The job's worker stopped without finishing {len(lost_attempts)} times "
            f"(attempts {numbers}). A worker that runs out of memory ends this way: try a "
            "smaller batch_size, group_size or max_completion_tokens."
        ),
        "param": None,
    }


@dataclass(frozen=True)
class Waiting:
    """A waiting job nobody holds, and how often its message was sent again already."""

    job_id: str
    resend_count: int


def stranded(session: Session, resend_seconds: float) -> list[Waiting]:
    """Waiting jobs nobody holds whose latest message is older than `resend_seconds`, doubled
    for each time it was sent again: a job waiting behind a long run is not flooded with
    duplicates, and a lost message is still replaced."""
    clock = session.scalar(select(db_clock()))
    rows = session.execute(
        select(Job.id, Job.enqueued_at, Job.resend_count).where(
            Job.status.in_([status.value for status in WAITING_STATUSES]),
            Job.lease_owner.is_(None),
        )
    ).all()
    return [
        Waiting(row.id, row.resend_count)
        for row in rows
        if row.enqueued_at is None
        or clock - row.enqueued_at > resend_seconds * 2 ** min(row.resend_count, MAX_DOUBLINGS)
    ]


# the wait before sending a waiting job again stops doubling here (64 times the base)
MAX_DOUBLINGS = 6


def mark_resent(session: Session, waiting: Waiting) -> bool:
    """Note that the job's message is sent again; False when another sweeper just did it, or a
    worker took the job meanwhile."""
    bound_lock_wait(session)
    result = session.execute(
        update(Job)
        .where(
            Job.id == waiting.job_id,
            Job.status.in_([status.value for status in WAITING_STATUSES]),
            Job.lease_owner.is_(None),
            Job.resend_count == waiting.resend_count,
        )
        .values(enqueued_at=db_clock(), resend_count=waiting.resend_count + 1)
    )
    return result.rowcount == 1


# --- a worker's fenced writes --------------------------------------------------------------


def hold(session: Session, fence: Fence) -> Job:
    """Lock the job row for the rest of the transaction if `fence` still owns it.

    Raises StaleAttempt otherwise. Everything a worker writes goes after this call.
    """
    result = session.execute(update(Job).where(*_fenced(fence)).values(attempt=Job.attempt))
    if result.rowcount != 1:
        raise StaleAttempt(f"attempt {fence.attempt} of job {fence.job_id} no longer owns it")
    return _load(session, fence.job_id)


def settle_validation(
    session: Session, job_id: str, attempt: int, error: dict[str, Any] | None
) -> bool:
    """The light lane's verdict on the files of a job no worker holds: queued, or failed with
    the first bad line. False when a user or a worker moved the job first (a worker that takes
    it checks the files again itself)."""
    unheld = (Job.lease_owner.is_(None),)
    to = JobStatus.QUEUED if error is None else JobStatus.FAILED
    return _move(
        session, job_id, JobStatus.VALIDATING_FILES, attempt, to, error=error, still=unheld
    )


def move(
    session: Session,
    fence: Fence,
    expected: JobStatus,
    to: JobStatus,
    *,
    error: dict[str, Any] | None = None,
    message: str | None = None,
    **fields: Any,
) -> bool:
    """A worker's move from `expected` to `to`; False when a user moved the job first.

    Raises StaleAttempt when the attempt lost the job. A move to paused or a final status gives
    the lease up in the same write, so a resume never finds the job still held.
    """
    hold(session, fence)
    return _move(
        session, fence.job_id, expected, fence.attempt, to, error=error, message=message, **fields
    )


def event(
    session: Session,
    fence: Fence,
    message: str,
    *,
    level: str = "info",
    type: str = "message",
    data: dict[str, Any] | None = None,
) -> None:
    hold(session, fence)
    _add_event(session, fence.job_id, message, level=level, type=type, data=data)


def step_metrics(
    session: Session,
    fence: Fence,
    message: str,
    data: dict[str, Any],
    estimated_finish: int | None,
) -> None:
    """One `metrics` event per step, and the job's finish estimate."""
    job = hold(session, fence)
    _add_event(session, fence.job_id, message, type="metrics", data=data)
    job.estimated_finish = estimated_finish


def discard_metrics_after(session: Session, fence: Fence, step: int) -> int:
    """Drop the metrics events of steps after `step`, which a lost attempt trained and the new
    attempt trains again from the checkpoint of `step`: the reward curve shows each step once."""
    hold(session, fence)
    events = session.execute(
        select(JobEvent.seq, JobEvent.data).where(
            JobEvent.job_id == fence.job_id, JobEvent.type == "metrics"
        )
    ).all()
    stale = [seq for seq, data in events if int((data or {}).get("step", 0)) > step]
    if stale:
        session.execute(delete(JobEvent).where(JobEvent.seq.in_(stale)))
    return len(stale)


SAMPLE_SPLITS = ("train", "validation")
# a sampled token may decode to a NUL character, which PostgreSQL's text cannot hold
NUL, REPLACEMENT_CHARACTER = "\x00", "\ufffd"


def replace_samples(
    session: Session, fence: Fence, step: int, split: str, samples: list[dict[str, Any]]
) -> None:
    """Store the samples the trainer kept for `step` and `split` in place of any stored
    before (a resumed attempt that runs the step, or the baseline validation, again)."""
    if split not in SAMPLE_SPLITS:
        raise ValueError(f"unknown sample split {split!r}")
    hold(session, fence)
    session.execute(
        delete(JobSample).where(
            JobSample.job_id == fence.job_id, JobSample.step == step, JobSample.split == split
        )
    )
    created_at = now()
    session.add_all(
        JobSample(
            job_id=fence.job_id,
            step=step,
            split=split,
            group_index=int(sample["group"]),
            prompt=sample["prompt"],
            reference=sample["reference"],
            completion=str(sample["completion"]).replace(NUL, REPLACEMENT_CHARACTER),
            reward=float(sample["reward"]),
            sub_rewards=sample.get("sub_rewards"),
            created_at=created_at,
        )
        for sample in samples
    )


def discard_samples_after(session: Session, fence: Fence, step: int) -> int:
    """Drop the samples of steps after `step`, as `discard_metrics_after` drops their metrics:
    the new attempt trains those steps again from the checkpoint of `step`."""
    hold(session, fence)
    result = session.execute(
        delete(JobSample).where(JobSample.job_id == fence.job_id, JobSample.step > step)
    )
    return int(result.rowcount or 0)


def stop_request(session: Session, fence: Fence) -> str | None:
    """'cancel' or 'pause' when the user asked the running job to stop, else None."""
    row = session.execute(
        select(Job.cancel_requested, Job.pause_requested).where(*_fenced(fence))
    ).one_or_none()
    if row is None:
        raise StaleAttempt(f"attempt {fence.attempt} of job {fence.job_id} no longer owns it")
    if row.cancel_requested:
        return "cancel"
    if row.pause_requested:
        return "pause"
    return None


def echo_hyperparameters(
    session: Session, fence: Fence, method: str, resolved: dict[str, Any]
) -> None:
    """Show the values "auto" resolved to in the job's `method` and `hyperparameters`."""
    job = hold(session, fence)
    echo = dict(job.method)
    echo[method] = {**echo.get(method, {}), "hyperparameters": dict(resolved)}
    job.method = echo
    job.hyperparameters = {
        key: resolved[key] for key in (job.hyperparameters or {}) if key in resolved
    }


def add_checkpoint(
    session: Session, fence: Fence, step: int, storage_path: str, metrics: dict[str, Any]
) -> str:
    """Record the checkpoint of `step` (replacing an older row of that step); its model name."""
    job = hold(session, fence)
    model_name = ids.checkpoint_model_name(fine_tuned_model_name(session, job), step)
    session.execute(
        delete(Checkpoint).where(Checkpoint.job_id == fence.job_id, Checkpoint.step_number == step)
    )
    session.add(
        Checkpoint(
            id=ids.new_checkpoint_id(),
            job_id=fence.job_id,
            step_number=step,
            fine_tuned_model_checkpoint=model_name,
            metrics=metrics,
            storage_path=storage_path,
        )
    )
    return model_name


def delete_checkpoint(session: Session, fence: Fence, step: int) -> None:
    hold(session, fence)
    session.execute(
        delete(Checkpoint).where(Checkpoint.job_id == fence.job_id, Checkpoint.step_number == step)
    )


def fine_tuned_model_name(session: Session, job: Job) -> str:
    project = session.get_one(Project, job.project_id)
    return ids.fine_tuned_model_name(job.base_model_name, project.name, job.suffix, job.id)


def succeed(
    session: Session,
    fence: Fence,
    *,
    result_adapter_path: str,
    trained_tokens: int,
    result_files: list[File],
) -> bool:
    """Finish the job with its model and result files in one transaction; False if it moved."""
    job = hold(session, fence)
    name = fine_tuned_model_name(session, job)
    for row in result_files:
        session.add(row)
    moved = _move(
        session, fence.job_id, JobStatus.RUNNING, fence.attempt, JobStatus.SUCCEEDED,
        fine_tuned_model=name, result_adapter_path=result_adapter_path,
        trained_tokens=trained_tokens, result_files=[row.id for row in result_files],
    )  # fmt: skip
    if moved:
        _add_event(session, fence.job_id, f"New fine-tuned model created: {name}")
    return moved
