"""Leases: one worker per job, a lapsed lease is taken back, renewals notice a take-over."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import update

from app.jobs.repository import StaleAttempt
from app.tables import Job
from tests.jobs.database import JobDatabase
from worker.lease import Heartbeat, take_lease


def test_only_one_worker_takes_a_job(job_database: JobDatabase) -> None:
    job_id = job_database.create_job()
    first = take_lease(job_database.sessions, job_id, "worker-1", 30, max_attempts=3)
    assert first is not None and first.attempt == 1
    assert take_lease(job_database.sessions, job_id, "worker-2", 30, max_attempts=3) is None


def test_a_lapsed_lease_is_taken_back_and_counted(job_database: JobDatabase) -> None:
    job_id = job_database.create_job()
    assert take_lease(job_database.sessions, job_id, "worker-1", 0.05, max_attempts=3)
    time.sleep(0.1)
    second = take_lease(job_database.sessions, job_id, "worker-2", 30, max_attempts=3)
    assert second is not None and second.attempt == 2
    assert job_database.job(job_id).lost_attempts == [1]


def test_kept_alive_renews_and_then_releases(job_database: JobDatabase) -> None:
    job_id = job_database.create_job()
    fence = take_lease(job_database.sessions, job_id, "worker-1", 0.6, max_attempts=3)
    assert fence is not None
    heartbeat = Heartbeat(job_database.sessions, fence, 0.6)
    with heartbeat.kept_alive():
        time.sleep(1.2)  # two lease lengths: only renewals keep it
        assert take_lease(job_database.sessions, job_id, "worker-2", 30, max_attempts=3) is None
        heartbeat.check()
    assert job_database.job(job_id).lease_owner is None
    assert take_lease(job_database.sessions, job_id, "worker-2", 30, max_attempts=3)


def test_a_heartbeat_notices_its_lease_was_taken(job_database: JobDatabase) -> None:
    job_id = job_database.create_job()
    fence = take_lease(job_database.sessions, job_id, "worker-1", 0.3, max_attempts=3)
    assert fence is not None
    heartbeat = Heartbeat(job_database.sessions, fence, 0.3)
    with heartbeat.kept_alive():
        with job_database.sessions.begin() as session:  # another worker took it back
            session.execute(update(Job).where(Job.id == job_id).values(lease_owner="worker-2"))
        time.sleep(0.5)
        with pytest.raises(StaleAttempt):
            heartbeat.check()
    assert job_database.job(job_id).lease_owner == "worker-2"
