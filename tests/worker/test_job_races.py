"""Users cancel, pause and resume while a worker starts, steps and finishes the same job.

The worker is the real runner (lease, file validation, fenced writes, finish) on a real
database; only the training is a short scripted loop that reports steps and honours stop
requests at step boundaries as the trainer does, so hundreds of races fit in seconds.
Every run must end in a legal state whose flags agree with its status, and its events must
replay as a walk the state machine allows.
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from app.jobs.service import act_on_job
from app.jobs.states import (
    CANCELLED_MESSAGE,
    CREATED_MESSAGE,
    FILES_VALIDATED_MESSAGE,
    PAUSED_MESSAGE,
    REQUEUED_MESSAGE,
    RESUMED_MESSAGE,
    STARTED_MESSAGE,
    SUCCEEDED_MESSAGE,
    TERMINAL_STATUSES,
    IllegalTransition,
    JobStatus,
    allowed_user_actions,
    can_advance,
)
from app.tables import JobEvent
from tests.jobs.database import JobDatabase
from worker.runner import run_job
from worker.trainer.spec import TrainResult

STEPS = 3
STATUS_OF_MESSAGE = {
    CREATED_MESSAGE: JobStatus.VALIDATING_FILES,
    FILES_VALIDATED_MESSAGE: JobStatus.QUEUED,
    STARTED_MESSAGE: JobStatus.RUNNING,
    PAUSED_MESSAGE: JobStatus.PAUSED,
    RESUMED_MESSAGE: JobStatus.QUEUED,
    REQUEUED_MESSAGE: JobStatus.QUEUED,
    CANCELLED_MESSAGE: JobStatus.CANCELLED,
    SUCCEEDED_MESSAGE: JobStatus.SUCCEEDED,
}


def scripted_train(spec, reporter, checkpoints) -> TrainResult:  # type: ignore[no-untyped-def]
    """STEPS quick steps; stops at a boundary when asked, as the trainer does."""
    for step in range(1, STEPS + 1):
        stop = reporter.should_stop()
        if stop is not None:
            return _result("paused" if stop == "pause" else "cancelled", step - 1, None)
        time.sleep(random.uniform(0, 0.002))
        reporter.on_step(step, STEPS, f"Step {step}/{STEPS}", {"step": step})
    staged = checkpoints.staging_dir("final")
    (staged / "adapter_config.json").write_text("{}")
    return _result("completed", STEPS, checkpoints.publish_final(staged))


def _result(status: str, done: int, adapter: Path | None) -> TrainResult:
    return TrainResult(
        status=status, total_steps=STEPS, steps_done=done,
        trained_tokens=0, adapter_dir=adapter, best_step=None,
    )  # fmt: skip


def _user(db: JobDatabase, job_id: str, seed: int) -> None:
    chooser = random.Random(seed)
    for _ in range(chooser.randint(1, 4)):
        time.sleep(chooser.uniform(0, 0.01))
        action = chooser.choice(["cancel", "pause", "resume", "pause", "resume"])
        with db.sessions() as session:
            try:
                act_on_job(session, db.project, job_id, action, db.send)
            except Exception as error:  # an action the job's status no longer allows
                assert "Cannot" in str(error), error


def _worker(db: JobDatabase, job_id: str) -> None:
    """Handle every message sent for the job, like a worker draining its queue."""
    run_job(job_id, db.settings, db.send, train=scripted_train)
    while job_id in db.sent:
        db.sent.remove(job_id)
        run_job(job_id, db.settings, db.send, train=scripted_train)


def _replay(db: JobDatabase, job_id: str) -> JobStatus:
    """Walk the job's status events through the state machine; returns where they end."""
    with db.sessions() as session:
        messages = session.scalars(
            select(JobEvent.message).where(JobEvent.job_id == job_id).order_by(JobEvent.seq)
        ).all()
    status = None
    for message in messages:
        to = STATUS_OF_MESSAGE.get(message)
        if to is None:
            continue
        if status is not None:
            legal = can_advance(status, to) or _user_move(status, to)
            assert legal, f"{status} -> {to} in {messages}"
        assert status not in TERMINAL_STATUSES, f"an event after {status}: {messages}"
        status = to
    assert status is not None
    return status


def _user_move(status: JobStatus, to: JobStatus) -> bool:
    from app.jobs.states import apply_user_action

    for action in allowed_user_actions(status):
        try:
            if apply_user_action(status, action).new_status is to:
                return True
        except IllegalTransition:
            pass
    return False


def _race_once(db: JobDatabase, seed: int) -> None:
    job_id = db.create_job()
    db.sent.clear()
    user = threading.Thread(target=_user, args=(db, job_id, seed))
    user.start()
    _worker(db, job_id)
    user.join()
    _worker(db, job_id)  # whatever the user's last resume sent
    job = db.job(job_id)
    status = JobStatus(job.status)
    assert status in (*TERMINAL_STATUSES, JobStatus.PAUSED), (seed, status)
    assert status is not JobStatus.FAILED, (seed, job.error)
    assert not job.cancel_requested and not job.pause_requested, (seed, status)
    assert job.lease_owner is None and job.lease_expires_at is None, seed
    assert (job.finished_at is not None) == (status in TERMINAL_STATUSES), seed
    assert (job.fine_tuned_model is not None) == (status is JobStatus.SUCCEEDED), seed
    assert _replay(db, job_id) is status, seed


@pytest.mark.slow
def test_user_actions_racing_a_worker_always_end_in_a_legal_state(
    job_database: JobDatabase,
) -> None:
    on_postgres = job_database.settings.resolved_database_url.startswith("postgresql")
    for seed in range(300 if on_postgres else 60):
        _race_once(job_database, seed)
