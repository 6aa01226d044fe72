"""Model graders act as the job's own project, with a key that lives only while its attempt
runs: never the default project's key, and no key of ours for an operator's endpoint."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from sqlalchemy import select

from app.jobs import repository
from app.jobs.states import JobStatus
from app.keys.service import issue_job_key, list_keys, project_for_key, purge_dead_job_keys
from app.reads import reads_for
from app.tables import ApiKey, Project
from tests.jobs.database import JobDatabase
from worker.lease import take_lease
from worker.light import validate_job
from worker.runner import run_job
from worker.trainer.spec import TrainResult

DEFAULT_PROJECTS_KEY = "sk-openrft-the-default-projects-key"


def _project_for(db: JobDatabase, key: str) -> Project | None:
    """The project a request with `key` acts for, read as the API reads it."""

    async def read() -> Project | None:
        reads = reads_for(db.settings)
        try:
            return await project_for_key(reads, key)
        finally:
            await reads.close()

    return asyncio.run(read())


@dataclass
class SeenInTraining:
    job_project_id: str
    grader_key: str | None
    key_project_id: str | None  # the project the key authenticated as while the job ran


def _train_looking_at_the_key(db: JobDatabase, **settings: object) -> SeenInTraining:
    """Run a job of a second project whose training only checks the key its graders got."""
    job_id = db.create_job_in("project-b")
    validate_job(job_id, db.settings, lambda _: None)
    seen: list[SeenInTraining] = []

    def train(spec, reporter, checkpoints) -> TrainResult:  # type: ignore[no-untyped-def]
        key = spec.grader_config.model_api_key
        project = _project_for(db, key) if key else None
        seen.append(SeenInTraining(db.job(job_id).project_id, key, project and project.id))
        return TrainResult(
            status="cancelled", total_steps=1, steps_done=0,
            trained_tokens=0, adapter_dir=None, best_step=None,
        )  # fmt: skip

    run_job(job_id, db.settings.model_copy(update=settings), db.send, train=train)
    assert len(seen) == 1, "the job did not train"
    return seen[0]


def test_a_model_grader_acts_as_the_jobs_project_while_it_runs(job_database: JobDatabase) -> None:
    db = job_database
    seen = _train_looking_at_the_key(db, api_key=DEFAULT_PROJECTS_KEY)
    key = seen.grader_key
    assert key is not None and key != DEFAULT_PROJECTS_KEY
    assert seen.key_project_id == seen.job_project_id != db.project.id
    assert _project_for(db, key) is None  # refused once the attempt ended
    with db.sessions() as session:
        assert session.scalars(select(ApiKey).where(ApiKey.job_id.is_not(None))).all() == []
        assert all(info.prefix != key[:16] for info in list_keys(session))


def test_an_operators_endpoint_gets_only_its_own_key(job_database: JobDatabase) -> None:
    db = job_database
    external = {"api_key": DEFAULT_PROJECTS_KEY, "grader_model_base_url": "https://judge.test/v1"}
    named = _train_looking_at_the_key(db, **external, grader_model_api_key="sk-judge")
    assert named.grader_key == "sk-judge"
    # nothing of ours is sent to someone else's server
    assert _train_looking_at_the_key(db, **external).grader_key is None


def test_a_job_key_dies_with_its_lease(job_database: JobDatabase) -> None:
    db = job_database
    job_id = db.create_job()
    fence = take_lease(db.sessions, job_id, "worker-1", 0.5, max_attempts=3)
    assert fence is not None
    with db.sessions.begin() as session:
        repository.move(session, fence, JobStatus.VALIDATING_FILES, JobStatus.QUEUED)
        repository.move(session, fence, JobStatus.QUEUED, JobStatus.RUNNING)
        key = issue_job_key(session, job_id, fence.attempt)
    found = _project_for(db, key)
    assert found is not None and found.id == db.project.id
    time.sleep(0.7)  # the worker stopped renewing: the lease lapsed
    assert _project_for(db, key) is None
    with db.sessions.begin() as session:
        assert purge_dead_job_keys(session) == 1
