"""The polled job and file routes read plain columns (app.jobs.reads, app.files.reads): the
objects they make are the ones the ORM rows make, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select, update

from app import ids
from app.errors import APIError
from app.files import reads as file_reads
from app.files.schemas import FileObject
from app.jobs import reads as job_reads
from app.jobs.schemas import CheckpointObject, FineTuningJob, JobEventObject
from app.reads import reads_for
from app.tables import Checkpoint, File, Job, JobEvent
from tests.jobs.database import JobDatabase


def _add_event_and_checkpoint(db: JobDatabase, job_id: str) -> None:
    with db.sessions.begin() as session:
        session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(
                error={"code": "x", "message": "failed", "param": None},
                job_metadata={"team": "a"},
                suffix="mine",
                fine_tuned_model="ft:m",
                trained_tokens=12,
                finished_at=5,
            )
        )
        session.add(JobEvent(id=ids.new_event_id(), job_id=job_id, message="Step 1/2",
                             type="metrics", data={"step": 1, "reward": 0.5}))  # fmt: skip
        session.add(Checkpoint(id="ftckpt_1", job_id=job_id, step_number=1,
                               fine_tuned_model_checkpoint="ft:m:ckpt-step-1",
                               metrics={"reward": 0.5}, storage_path="k"))  # fmt: skip


def test_column_reads_make_the_objects_the_orm_rows_make(job_database: JobDatabase) -> None:
    db = job_database
    job_id = db.create_job(n_epochs=2)
    _add_event_and_checkpoint(db, job_id)
    reads = reads_for(db.settings)

    async def read_all() -> tuple:  # type: ignore[type-arg]
        try:
            job = await job_reads.job(reads, db.project, job_id)
            jobs, _ = await job_reads.jobs(reads, db.project, after=None, limit=5, metadata=None)
            events, _ = await job_reads.newest_first(
                reads, db.project, JobEvent, job_id, after=None, limit=1
            )
            checkpoints, _ = await job_reads.newest_first(
                reads, db.project, Checkpoint, job_id, after=None, limit=1
            )
            file = await file_reads.file(reads, db.project, db.training_file)
            return job, jobs, events, checkpoints, file
        finally:
            await reads.close()

    job, jobs, events, checkpoints, file = asyncio.run(read_all())
    with db.sessions() as session:
        orm_job = session.scalars(select(Job).where(Job.id == job_id)).one()
        assert FineTuningJob.from_columns(job) == FineTuningJob.from_row(orm_job)
        assert FineTuningJob.from_columns(jobs[0]) == FineTuningJob.from_row(orm_job)
        orm_event = session.scalars(select(JobEvent).order_by(JobEvent.seq.desc())).first()
        assert JobEventObject.from_columns(events[0]) == JobEventObject.from_row(orm_event)
        orm_checkpoint = session.scalars(select(Checkpoint)).one()
        assert CheckpointObject.from_columns(checkpoints[0]) == CheckpointObject.from_row(
            orm_checkpoint
        )
        orm_file = session.scalars(select(File).where(File.id == db.training_file)).one()
        assert FileObject.from_columns(file) == FileObject.from_row(orm_file)
    assert FineTuningJob.from_columns(job).error is not None
    assert FineTuningJob.from_columns(job).metadata == {"team": "a"}


@pytest.mark.parametrize("read", ["job", "events", "checkpoints", "events after"])
def test_another_projects_job_is_not_found(job_database: JobDatabase, read: str) -> None:
    db = job_database
    other_job = db.create_job_in("project-b")
    _add_event_and_checkpoint(db, other_job)  # it has events: they are not the caller's
    with db.sessions() as session:
        event_id = session.scalars(select(JobEvent.id).where(JobEvent.job_id == other_job)).first()
    reads = reads_for(db.settings)
    table = Checkpoint if read == "checkpoints" else JobEvent
    after = event_id if read == "events after" else None

    async def attempt() -> None:
        try:
            if read == "job":
                await job_reads.job(reads, db.project, other_job)
            else:
                await job_reads.newest_first(
                    reads, db.project, table, other_job, after=after, limit=5
                )
        finally:
            await reads.close()

    with pytest.raises(APIError) as missing:
        asyncio.run(attempt())
    assert missing.value.status_code == 404 and other_job in missing.value.message
