"""The jobs repository: compare-and-set moves, fenced writes, lapsed leases, stranded jobs."""

from __future__ import annotations

import ast
import time
from pathlib import Path

import pytest
from sqlalchemy import select, update

from app.jobs import repository
from app.jobs.repository import StaleAttempt
from app.jobs.states import REQUEUED_MESSAGE, IllegalTransition, JobStatus
from app.tables import Job, JobEvent, JobSample
from tests.jobs.database import JobDatabase

REPO_ROOT = Path(__file__).resolve().parents[2]


def _claim(db: JobDatabase, job_id: str, owner: str = "worker-1", seconds: float = 30):
    with db.sessions.begin() as session:
        return repository.claim(session, job_id, owner, seconds)


def _expire(db: JobDatabase, job_id: str) -> None:
    with db.sessions.begin() as session:
        session.execute(update(Job).where(Job.id == job_id).values(lease_expires_at=0.0))


def _messages(db: JobDatabase, job_id: str) -> list[str]:
    with db.sessions() as session:
        query = select(JobEvent.message).where(JobEvent.job_id == job_id).order_by(JobEvent.seq)
        return list(session.scalars(query))


def test_one_worker_holds_a_waiting_job_and_each_claim_raises_the_attempt(
    job_database: JobDatabase,
) -> None:
    job_id = job_database.create_job()
    first = _claim(job_database, job_id, "worker-1")
    assert first is not None and first.attempt == 1
    assert _claim(job_database, job_id, "worker-2") is None
    with job_database.sessions.begin() as session:
        repository.release(session, first)
    second = _claim(job_database, job_id, "worker-2")
    assert second is not None and second.attempt == 2
    with job_database.sessions.begin() as session, pytest.raises(StaleAttempt):
        repository.event(session, first, "from the first worker")
    assert "from the first worker" not in _messages(job_database, job_id)


def test_a_stale_attempt_cannot_write_anything(job_database: JobDatabase) -> None:
    job_id = job_database.create_job()
    stale = _claim(job_database, job_id, "worker-1", seconds=0.01)
    assert stale is not None
    time.sleep(0.05)
    with job_database.sessions.begin() as session:
        assert repository.reclaim_lapsed(session, job_id, max_attempts=3) is JobStatus(
            "validating_files"
        )
    fresh = _claim(job_database, job_id, "worker-2")
    assert fresh is not None
    writes = [
        lambda s: repository.move(s, stale, JobStatus.VALIDATING_FILES, JobStatus.QUEUED),
        lambda s: repository.event(s, stale, "stale event"),
        lambda s: repository.step_metrics(s, stale, "Step 1", {"step": 1}, None),
        lambda s: repository.add_checkpoint(s, stale, 1, "x/step-000001", {}),
        lambda s: repository.delete_checkpoint(s, stale, 1),
        lambda s: repository.echo_hyperparameters(s, stale, "reinforcement", {"batch_size": 1}),
        lambda s: repository.stop_request(s, stale),
    ]
    for write in writes:
        with job_database.sessions.begin() as session, pytest.raises(StaleAttempt):
            write(session)
    with job_database.sessions.begin() as session:
        assert not repository.renew(session, stale, 30)
    job = job_database.job(job_id)
    assert (job.status, job.attempt, job.lease_owner) == ("validating_files", 2, "worker-2")
    assert job.lost_attempts == [1]
    assert "stale event" not in _messages(job_database, job_id)


def test_a_lapsed_running_job_is_queued_again_then_fails_after_max_attempts(
    job_database: JobDatabase,
) -> None:
    job_id = job_database.create_job()
    for attempt in (1, 2, 3):
        fence = _claim(job_database, job_id, f"worker-{attempt}")
        assert fence is not None and fence.attempt == attempt
        with job_database.sessions.begin() as session:
            if attempt == 1:
                repository.move(session, fence, JobStatus.VALIDATING_FILES, JobStatus.QUEUED)
            assert repository.move(session, fence, JobStatus.QUEUED, JobStatus.RUNNING)
        _expire(job_database, job_id)
        with job_database.sessions() as session:
            assert repository.lapsed_leases(session) == [job_id]
        with job_database.sessions.begin() as session:
            status = repository.reclaim_lapsed(session, job_id, max_attempts=3)
        assert status is (JobStatus.FAILED if attempt == 3 else JobStatus.QUEUED)
    job = job_database.job(job_id)
    assert job.status == "failed" and job.lease_owner is None and job.finished_at is not None
    assert job.error["code"] == "job_attempts_exhausted"
    assert "3 times (attempts 1, 2, 3)" in job.error["message"]
    messages = _messages(job_database, job_id)
    assert messages.count(REQUEUED_MESSAGE) == 2
    assert messages[-1].startswith("The job failed: The job's worker stopped without finishing")
    with job_database.sessions() as session:
        assert repository.lapsed_leases(session) == []


def test_a_live_lease_is_not_reclaimed(job_database: JobDatabase) -> None:
    job_id = job_database.create_job()
    assert _claim(job_database, job_id) is not None
    with job_database.sessions.begin() as session:
        assert repository.lapsed_leases(session) == []
        assert repository.reclaim_lapsed(session, job_id, max_attempts=3) is None


def test_user_actions_compare_and_set_and_clear_the_flags(job_database: JobDatabase) -> None:
    job_id = job_database.create_job()
    fence = _claim(job_database, job_id)
    assert fence is not None
    with job_database.sessions.begin() as session:
        repository.move(session, fence, JobStatus.VALIDATING_FILES, JobStatus.QUEUED)
        repository.move(session, fence, JobStatus.QUEUED, JobStatus.RUNNING)
    with job_database.sessions() as session:
        job, outcome = repository.act(session, job_id, "pause")
        assert (job.status, job.pause_requested, outcome.new_status) == ("running", True, None)
        job, _ = repository.act(session, job_id, "cancel")
        assert (job.cancel_requested, job.pause_requested) == (True, True)
    with job_database.sessions.begin() as session:
        assert repository.stop_request(session, fence) == "cancel"
        assert repository.move(session, fence, JobStatus.RUNNING, JobStatus.CANCELLED)
    job = job_database.job(job_id)
    assert (job.status, job.cancel_requested, job.pause_requested) == ("cancelled", False, False)
    assert job.lease_owner is None and job.finished_at is not None
    with job_database.sessions() as session, pytest.raises(IllegalTransition):
        repository.act(session, job_id, "resume")


def test_a_user_cancel_ends_the_workers_hold_on_a_waiting_job(job_database: JobDatabase) -> None:
    job_id = job_database.create_job()
    fence = _claim(job_database, job_id)
    assert fence is not None
    with job_database.sessions() as session:
        repository.act(session, job_id, "cancel")
    with job_database.sessions.begin() as session, pytest.raises(StaleAttempt):
        repository.move(session, fence, JobStatus.VALIDATING_FILES, JobStatus.QUEUED)
    job = job_database.job(job_id)
    assert (job.status, job.lease_owner) == ("cancelled", None)


def test_a_worker_move_loses_to_a_user_pause_of_a_queued_job(job_database: JobDatabase) -> None:
    job_id = job_database.create_job()
    fence = _claim(job_database, job_id)
    assert fence is not None
    with job_database.sessions.begin() as session:
        repository.move(session, fence, JobStatus.VALIDATING_FILES, JobStatus.QUEUED)
    with job_database.sessions() as session:
        repository.act(session, job_id, "pause")
    with job_database.sessions.begin() as session, pytest.raises(StaleAttempt):
        repository.move(session, fence, JobStatus.QUEUED, JobStatus.RUNNING)
    assert job_database.job(job_id).status == "paused"


def test_stranded_jobs_are_sent_again_less_often_each_time(job_database: JobDatabase) -> None:
    job_id = job_database.create_job()
    with job_database.sessions() as session:
        assert repository.stranded(session, resend_seconds=60) == []
    time.sleep(1.1)
    with job_database.sessions() as session:
        (waiting,) = repository.stranded(session, resend_seconds=1)
    with job_database.sessions.begin() as session:
        assert repository.mark_resent(session, waiting)
    with job_database.sessions.begin() as session:
        assert not repository.mark_resent(session, waiting)  # another sweeper was first
    time.sleep(1.1)
    with job_database.sessions() as session:
        # sent once again: now it waits twice as long before the next
        assert repository.stranded(session, resend_seconds=1) == []
    time.sleep(1.0)
    with job_database.sessions() as session:
        assert [w.resend_count for w in repository.stranded(session, resend_seconds=1)] == [1]
    assert _claim(job_database, job_id) is not None
    with job_database.sessions() as session:
        assert repository.stranded(session, resend_seconds=-1) == []
    assert job_database.job(job_id).resend_count == 0


def test_discarded_metrics_are_those_after_the_resumed_step(job_database: JobDatabase) -> None:
    job_id = job_database.create_job()
    fence = _claim(job_database, job_id)
    assert fence is not None
    with job_database.sessions.begin() as session:
        for step in (1, 2, 3):
            repository.step_metrics(session, fence, f"Step {step}", {"step": step}, None)
        assert repository.discard_metrics_after(session, fence, 1) == 2
    with job_database.sessions() as session:
        steps = session.scalars(
            select(JobEvent.data).where(JobEvent.job_id == job_id, JobEvent.type == "metrics")
        ).all()
    assert [data["step"] for data in steps] == [1]


JOB_TABLES = {"Job", "JobEvent", "Checkpoint", "JobSample"}
STATUS_COLUMNS = {"status", "cancel_requested", "pause_requested", "lease_owner", "attempt"}


def _writes_to_job_tables(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            name = node.func.id
            first = node.args[0] if node.args else None
            if name in ("update", "delete", "insert") and isinstance(first, ast.Name):
                if first.id in JOB_TABLES:
                    found.append(f"{name}({first.id})")
            if name in ("Job", "JobEvent", "JobSample"):
                found.append(f"{name}(...)")
        if isinstance(node, ast.Assign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Attribute) and target.attr in STATUS_COLUMNS:
                    found.append(f".{target.attr} =")
    return found


def test_only_the_repository_writes_jobs_events_checkpoints_and_samples() -> None:
    offenders = {}
    for path in sorted((REPO_ROOT / "app").rglob("*.py")) + sorted(
        (REPO_ROOT / "worker").rglob("*.py")
    ):
        relative = path.relative_to(REPO_ROOT).as_posix()
        if relative in ("app/jobs/repository.py", "app/tables.py"):
            continue
        writes = _writes_to_job_tables(ast.parse(path.read_text()))
        # app/jobs/service.py builds the new Job object the repository inserts
        if relative == "app/jobs/service.py":
            writes = [write for write in writes if write != "Job(...)"]
        if writes:
            offenders[relative] = writes
    assert offenders == {}


@pytest.mark.parametrize(("action", "ends"), [("cancel", "cancelled"), ("pause", "paused")])
def test_a_stop_requested_of_a_lost_attempt_is_honoured(
    job_database: JobDatabase, action: str, ends: str
) -> None:
    job_id = job_database.create_job()
    fence = _claim(job_database, job_id)
    assert fence is not None
    with job_database.sessions.begin() as session:
        repository.move(session, fence, JobStatus.VALIDATING_FILES, JobStatus.QUEUED)
        repository.move(session, fence, JobStatus.QUEUED, JobStatus.RUNNING)
    with job_database.sessions() as session:
        repository.act(session, job_id, action)
    _expire(job_database, job_id)
    with job_database.sessions.begin() as session:
        assert repository.reclaim_lapsed(session, job_id, max_attempts=3) is JobStatus(ends)
    job = job_database.job(job_id)
    assert (job.status, job.cancel_requested, job.pause_requested) == (ends, False, False)
    assert job.lost_attempts == [1] and job.lease_owner is None


def test_a_resume_the_queue_cannot_take_stays_queued_for_the_sweep(
    job_database: JobDatabase,
) -> None:
    from app.jobs.service import act_on_job

    def broken_queue(_job_id: str) -> None:
        raise ConnectionError("broker down")

    job_id = job_database.create_job()
    with job_database.sessions() as session:
        act_on_job(session, job_database.project, job_id, "pause", broken_queue)
        job = act_on_job(session, job_database.project, job_id, "resume", broken_queue)
    assert job.status == "queued"
    assert "broker down" in _messages(job_database, job_id)[-1]
    with job_database.sessions() as session:
        assert [w.job_id for w in repository.stranded(session, resend_seconds=-1)] == [job_id]


def _sample(group: int, reward: float, **extra: object) -> dict:
    return {
        "group": group,
        "prompt": [{"role": "user", "content": f"What is {group} + 1?"}],
        "reference": {"answer": str(group + 1)},
        "completion": f"answer {reward}",
        "reward": reward,
        "sub_rewards": {"exact": reward, "close": 0.5},
    } | extra


def _stored_samples(db: JobDatabase, job_id: str) -> list[tuple[int, str, int, float]]:
    with db.sessions() as session:
        rows = session.scalars(
            select(JobSample).where(JobSample.job_id == job_id).order_by(JobSample.seq)
        ).all()
        return [(row.step, row.split, row.group_index, row.reward) for row in rows]


def test_samples_replace_their_step_and_are_discarded_after_the_resumed_step(
    job_database: JobDatabase,
) -> None:
    job_id = job_database.create_job()
    fence = _claim(job_database, job_id)
    assert fence is not None
    with job_database.sessions.begin() as session:
        repository.replace_samples(session, fence, 0, "validation", [_sample(0, 0.25)])
        for step in (1, 2, 3):
            repository.replace_samples(session, fence, step, "train", [_sample(1, step / 10)])
        repository.replace_samples(session, fence, 2, "validation", [_sample(0, 0.5)])
    # the same step sent again (a resumed run) replaces, never adds
    with job_database.sessions.begin() as session:
        repository.replace_samples(
            session, fence, 1, "train", [_sample(0, 1.0), _sample(0, 0.0, sub_rewards=None)]
        )
    with job_database.sessions.begin() as session:
        assert repository.discard_samples_after(session, fence, 1) == 3
    assert _stored_samples(job_database, job_id) == [
        (0, "validation", 0, 0.25),
        (1, "train", 0, 1.0),
        (1, "train", 0, 0.0),
    ]
    with job_database.sessions() as session:
        stored = session.scalars(
            select(JobSample).where(JobSample.job_id == job_id, JobSample.step == 1)
        ).all()
        assert [row.sub_rewards for row in stored] == [{"exact": 1.0, "close": 0.5}, None]
        assert stored[0].prompt == [{"role": "user", "content": "What is 0 + 1?"}]
        assert stored[0].reference == {"answer": "1"}


def test_a_stale_attempt_cannot_write_or_discard_samples(job_database: JobDatabase) -> None:
    job_id = job_database.create_job()
    stale = _claim(job_database, job_id, "worker-1")
    assert stale is not None
    with job_database.sessions.begin() as session:
        repository.replace_samples(session, stale, 1, "train", [_sample(0, 1.0)])
        repository.release(session, stale)
    assert _claim(job_database, job_id, "worker-2") is not None
    writes = [
        lambda s: repository.replace_samples(s, stale, 2, "train", [_sample(0, 0.5)]),
        lambda s: repository.discard_samples_after(s, stale, 0),
    ]
    for write in writes:
        with job_database.sessions.begin() as session, pytest.raises(StaleAttempt):
            write(session)
    assert _stored_samples(job_database, job_id) == [(1, "train", 0, 1.0)]
