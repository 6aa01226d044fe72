"""expires_after is enforced: an expired file is gone for its project and purged with its
bytes, except while an unfinished job still reads it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
from sqlalchemy import update

from app.errors import APIError
from app.files.reads import file, files
from app.files.service import get_file, purge_expired
from app.jobs import repository
from app.jobs.states import JobStatus
from app.reads import Reads, reads_for
from app.storage import LocalStorage
from app.tables import File, now
from tests.jobs.database import JobDatabase

T = TypeVar("T")


def _expire(db: JobDatabase, *file_ids: str) -> None:
    with db.sessions.begin() as session:
        session.execute(update(File).where(File.id.in_(file_ids)).values(expires_at=now() - 1))


def _stored(db: JobDatabase, file_id: str) -> bool:
    with db.sessions() as session:
        row = session.get(File, _seq(db, file_id))
        return row is not None and (db.settings.uploads_dir / row.storage_key).exists()


def _seq(db: JobDatabase, file_id: str) -> int | None:
    with db.sessions() as session:
        row = session.query(File).filter(File.id == file_id).one_or_none()
        return row.seq if row else None


def _read(db: JobDatabase, read: Callable[[Reads], Awaitable[T]]) -> T:
    """What the API's routes read, as they read it (`app.reads`)."""

    async def main() -> T:
        reads = reads_for(db.settings)
        try:
            return await read(reads)
        finally:
            await reads.close()

    return asyncio.run(main())


def test_expired_file_is_gone_for_the_api_and_purged(job_database: JobDatabase) -> None:
    db = job_database
    storage = LocalStorage(db.settings.uploads_dir)
    _expire(db, db.training_file)
    with db.sessions() as session:
        with pytest.raises(APIError) as missing:
            get_file(session, db.project, db.training_file)
        assert missing.value.status_code == 404
    listed, _ = _read(
        db,
        lambda reads: files(reads, db.project, purpose=None, limit=100, order="desc", after=None),
    )
    assert db.training_file not in {row["id"] for row in listed}
    assert db.validation_file in {row["id"] for row in listed}
    with pytest.raises(APIError) as missing:
        _read(db, lambda reads: file(reads, db.project, db.training_file))
    assert missing.value.status_code == 404
    with pytest.raises(APIError) as refused:
        db.create_job()
    assert refused.value.status_code == 400 and refused.value.code == "file_not_found"
    assert _stored(db, db.training_file)  # hidden at once, purged by the sweep
    with db.sessions() as session:
        assert purge_expired(session, storage) == [db.training_file]
    assert _seq(db, db.training_file) is None
    assert not any(db.settings.uploads_dir.rglob(db.training_file))


def test_a_file_an_unfinished_job_reads_stays_until_the_job_ends(job_database: JobDatabase) -> None:
    db = job_database
    storage = LocalStorage(db.settings.uploads_dir)
    job_id = db.create_job()
    _expire(db, db.training_file, db.validation_file)
    with db.sessions() as session:
        assert purge_expired(session, storage) == []
    assert _stored(db, db.training_file) and _stored(db, db.validation_file)
    with db.sessions() as session:
        job, _ = repository.act(session, job_id, "cancel")
    assert job.status == JobStatus.CANCELLED.value
    with db.sessions() as session:
        purged = purge_expired(session, storage)
    assert sorted(purged) == sorted([db.training_file, db.validation_file])
