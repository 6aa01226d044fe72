"""A job's move to a final status writes its webhook deliveries in the same transaction: one
row per subscribed endpoint, nothing for other moves, nothing when the move rolls back."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select, update

from app.jobs import repository
from app.jobs.states import JobStatus
from app.tables import Job, WebhookDelivery
from app.webhooks import repository as webhooks
from tests.jobs.database import JobDatabase

ALL = ["fine_tuning.job.succeeded", "fine_tuning.job.failed", "fine_tuning.job.cancelled"]


def _endpoint(db: JobDatabase, event_types: list[str], project_id: str | None = None) -> str:
    with db.sessions.begin() as session:
        endpoint = webhooks.insert_endpoint(
            session, project_id or db.project.id, name="hooks",
            url="https://93.184.215.14/hooks", event_types=event_types,
        )  # fmt: skip
        return endpoint.id


def _deliveries(db: JobDatabase) -> list[WebhookDelivery]:
    with db.sessions() as session:
        return list(session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.seq)))


def _running(db: JobDatabase) -> tuple[str, repository.Fence]:
    job_id = db.create_job()
    with db.sessions.begin() as session:
        fence = repository.claim(session, job_id, "worker-1", 30)
        assert fence is not None
        repository.move(session, fence, JobStatus.VALIDATING_FILES, JobStatus.QUEUED)
        repository.move(session, fence, JobStatus.QUEUED, JobStatus.RUNNING)
    return job_id, fence


def test_a_cancel_writes_one_delivery_per_subscribed_endpoint(job_database: JobDatabase) -> None:
    first, second = _endpoint(job_database, ALL), _endpoint(job_database, ALL[2:])
    _endpoint(job_database, ALL[:1])  # succeeded only: not sent a cancel
    job_id = job_database.create_job()
    with job_database.sessions() as session:
        repository.act(session, job_id, "cancel")
    rows = _deliveries(job_database)
    assert sorted(row.endpoint_id for row in rows) == sorted([first, second])
    # one event: the same ids and body for every endpoint, due now
    assert len({(row.webhook_id, row.event_id, row.payload) for row in rows}) == 1
    payload = json.loads(rows[0].payload)
    assert payload == {
        "id": rows[0].event_id, "object": "event", "created_at": payload["created_at"],
        "type": "fine_tuning.job.cancelled", "data": {"id": job_id},
    }  # fmt: skip
    assert all(row.status == "pending" and row.attempts == 0 for row in rows)
    with job_database.sessions() as session:
        assert sorted(webhooks.due_deliveries(session, 10)) == sorted(row.id for row in rows)


@pytest.mark.parametrize(
    ("to", "event_type"),
    [
        (JobStatus.FAILED, "fine_tuning.job.failed"),
        (JobStatus.CANCELLED, "fine_tuning.job.cancelled"),
    ],
)
def test_the_delivery_commits_with_the_move_and_not_before(
    job_database: JobDatabase, to: JobStatus, event_type: str
) -> None:
    _endpoint(job_database, ALL)
    job_id, fence = _running(job_database)
    assert _deliveries(job_database) == []  # validating -> queued -> running sent nothing
    error = {"code": "x", "message": "boom", "param": None} if to is JobStatus.FAILED else None
    with job_database.sessions.begin() as session:
        assert repository.move(session, fence, JobStatus.RUNNING, to, error=error)
        session.flush()
        # another transaction sees neither the new status nor the delivery yet
        with job_database.sessions() as other:
            assert other.scalar(select(Job.status).where(Job.id == job_id)) == "running"
            assert other.scalar(select(func.count()).select_from(WebhookDelivery)) == 0
    [row] = _deliveries(job_database)
    assert row.event_type == event_type and json.loads(row.payload)["data"] == {"id": job_id}
    assert job_database.job(job_id).status == to.value


def test_a_move_that_rolls_back_leaves_no_delivery(job_database: JobDatabase) -> None:
    _endpoint(job_database, ALL)
    job_id, fence = _running(job_database)
    with pytest.raises(RuntimeError), job_database.sessions.begin() as session:
        assert repository.move(session, fence, JobStatus.RUNNING, JobStatus.CANCELLED)
        raise RuntimeError("the transaction fails after the move")
    assert _deliveries(job_database) == []
    assert job_database.job(job_id).status == "running"


def test_a_pause_and_a_lost_move_send_nothing(job_database: JobDatabase) -> None:
    _endpoint(job_database, ALL)
    job_id, fence = _running(job_database)
    with job_database.sessions.begin() as session:
        assert repository.move(session, fence, JobStatus.RUNNING, JobStatus.PAUSED)
    with job_database.sessions.begin() as session:
        # the compare-and-set finds the job paused, not running: no move, no event
        assert not repository._move(
            session, job_id, JobStatus.RUNNING, fence.attempt, JobStatus.CANCELLED
        )
    assert _deliveries(job_database) == []


def test_a_job_failed_by_the_sweep_is_announced(job_database: JobDatabase) -> None:
    _endpoint(job_database, ALL)
    job_id, _fence = _running(job_database)
    with job_database.sessions.begin() as session:
        session.execute(update(Job).where(Job.id == job_id).values(lease_expires_at=0.0))
    with job_database.sessions.begin() as session:
        assert repository.reclaim_lapsed(session, job_id, max_attempts=1) is JobStatus.FAILED
    [row] = _deliveries(job_database)
    assert row.event_type == "fine_tuning.job.failed"


def test_endpoints_of_another_project_get_nothing(job_database: JobDatabase) -> None:
    from app.keys.service import get_or_create_project

    with job_database.sessions.begin() as session:
        other = get_or_create_project(session, "other").id
    _endpoint(job_database, ALL, project_id=other)
    job_id = job_database.create_job()
    with job_database.sessions() as session:
        repository.act(session, job_id, "cancel")
    assert _deliveries(job_database) == []
