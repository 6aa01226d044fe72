"""Leases: one worker per job, and a lapsed lease hands the job on."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from app.db import session_factory
from app.migrate import upgrade
from app.settings import Settings
from app.tables import Job, JobEvent, Project
from worker.lease import JobLease, requeue_orphans


@pytest.fixture
def sessions(tmp_path: Path) -> sessionmaker[Session]:
    settings = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'lease.db'}")
    upgrade(settings)
    factory = session_factory(settings)
    with factory() as session:
        session.add(Project(id="proj_1", name="p"))
        session.flush()
        for job_id, status in (("ftjob-a", "running"), ("ftjob-b", "queued")):
            session.add(
                Job(
                    id=job_id,
                    project_id="proj_1",
                    model="m",
                    status=status,
                    training_file="f",
                    seed=1,
                    method={"type": "supervised"},
                    result_files=[],
                )  # fmt: skip
            )
        session.commit()
    return factory


def test_only_one_worker_holds_a_live_lease(sessions: sessionmaker[Session]) -> None:
    first = JobLease(sessions, "ftjob-a", "worker-1", seconds=30)
    second = JobLease(sessions, "ftjob-a", "worker-2", seconds=30)
    assert first.acquire()
    assert not second.acquire()
    assert first.acquire()  # re-entrant for its holder
    first.release()
    assert second.acquire()
    assert not first.renew()


def test_a_lapsed_lease_can_be_taken_over(sessions: sessionmaker[Session]) -> None:
    first = JobLease(sessions, "ftjob-a", "worker-1", seconds=0.2)
    assert first.acquire()
    time.sleep(0.3)
    second = JobLease(sessions, "ftjob-a", "worker-2", seconds=30)
    assert second.acquire()
    assert not first.renew()


def test_kept_alive_renews_while_working(sessions: sessionmaker[Session]) -> None:
    lease = JobLease(sessions, "ftjob-a", "worker-1", seconds=0.6)
    assert lease.acquire()
    with lease.kept_alive():
        time.sleep(1.2)  # two lease lengths: only renewals keep it
        assert not JobLease(sessions, "ftjob-a", "worker-2", seconds=30).acquire()
    assert JobLease(sessions, "ftjob-a", "worker-2", seconds=30).acquire()


def test_requeue_orphans_moves_only_lapsed_running_jobs(sessions: sessionmaker[Session]) -> None:
    live = JobLease(sessions, "ftjob-a", "worker-1", seconds=30)
    assert live.acquire()
    assert requeue_orphans(sessions) == []

    lapsed = JobLease(sessions, "ftjob-a", "worker-1", seconds=0.1)
    assert lapsed.acquire()
    time.sleep(0.2)
    assert requeue_orphans(sessions) == ["ftjob-a"]
    with sessions() as session:
        job = session.query(Job).filter(Job.id == "ftjob-a").one()
        assert (job.status, job.lease_owner) == ("queued", None)
        assert session.query(JobEvent).filter(JobEvent.job_id == "ftjob-a").count() == 1
        assert session.query(Job).filter(Job.id == "ftjob-b").one().status == "queued"
