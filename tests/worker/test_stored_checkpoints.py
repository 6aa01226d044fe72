"""A checkpoint row always names a completely stored checkpoint, which another host can fetch.

The real fenced checkpoint store on a real database and a real S3 server; the storage is watched
so that, at every object it writes, each checkpoint row already visible must have its manifest
and every file the manifest names.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from app.artifact_store import ArtifactStore, DirCache
from app.jobs import repository
from app.jobs.repository import Fence, StaleAttempt
from app.storage_s3 import S3Storage
from app.tables import Checkpoint as CheckpointRow
from tests.jobs.database import JobDatabase, job_database_on
from tests.s3 import S3Server
from worker.job_writer import JobWriter
from worker.lease import take_lease
from worker.published_checkpoints import FencedCheckpointStore
from worker.trainer.checkpoints import ADAPTER_FILE, OPTIMIZER_FILE, STATE_FILE


class WatchedStorage(S3Storage):
    """An S3 store that checks the invariant before every write; `during_write` runs too."""

    db: JobDatabase
    artifacts: ArtifactStore
    checked = 0
    during_write: Any = None

    def write(self, key: str, chunks: Iterable[bytes], max_bytes: int) -> int:
        check_rows_are_stored(self.db, self.artifacts)
        WatchedStorage.checked += 1
        if self.during_write is not None:
            self.during_write(key)
        return super().write(key, chunks, max_bytes)


def rows(db: JobDatabase) -> dict[int, str]:
    with db.sessions() as session:
        found = session.execute(select(CheckpointRow.step_number, CheckpointRow.storage_path))
        return dict(found.all())


def check_rows_are_stored(db: JobDatabase, artifacts: ArtifactStore) -> None:
    for step, key in rows(db).items():
        manifest = artifacts.manifest(key)
        assert manifest is not None, f"row of step {step} without its stored checkpoint"
        stored = dict(artifacts.storage.list(key))
        for name, size in manifest["files"].items():
            assert stored.get(f"{key}/{name}") == size, (step, name)


def stage(store: FencedCheckpointStore, step: int) -> Path:
    staged = store.staging_dir(f"step-{step:06d}")
    (staged / ADAPTER_FILE).write_bytes(bytes([step]) * 5000)
    (staged / "adapter_config.json").write_text("{}")
    (staged / OPTIMIZER_FILE).write_bytes(b"o" * 7000)
    state = {"step": step, "metrics": {"step": step}, "score": None, "trained_tokens": 0}
    (staged / STATE_FILE).write_text(json.dumps(state))
    return staged


@pytest.fixture
def db(tmp_path: Path, tiny_models_root: Path) -> JobDatabase:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    return job_database_on(url, tmp_path / "a", tiny_models_root)


def test_rows_appear_only_after_the_whole_checkpoint_is_stored_and_another_host_resumes(
    db: JobDatabase, s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in s3.env.items():
        monkeypatch.setenv(key, value)
    bucket = s3.new_bucket()
    storage = WatchedStorage(bucket, "openrft/checkpoints")
    artifacts = ArtifactStore(storage, DirCache(tmp_path / "a-cache", 10**9))
    storage.db, storage.artifacts = db, artifacts
    job_id = db.create_job()
    fence = take_lease(db.sessions, job_id, "host-a", 30, 3)
    assert fence is not None
    store = FencedCheckpointStore(JobWriter(db.sessions, fence), db.settings.checkpoints_dir,
                                  job_id, artifacts)  # fmt: skip

    store.publish(1, stage(store, 1))
    store.publish(2, stage(store, 2))
    assert sorted(rows(db)) == [1, 2]
    check_rows_are_stored(db, artifacts)
    assert WatchedStorage.checked >= 2 * 5  # four files and a manifest per checkpoint

    # the lease is lost while step 3 goes up: the upload completes, its row never appears
    def lose_lease(key: str) -> None:
        if key.endswith(ADAPTER_FILE):
            with db.sessions.begin() as session:
                repository.release(session, fence)

    storage.during_write = lose_lease
    with pytest.raises(StaleAttempt):
        store.publish(3, stage(store, 3))
    storage.during_write = None
    assert sorted(rows(db)) == [1, 2]

    # another host, with its own empty data dir, fetches what the rows name
    other_dir = tmp_path / "b" / "checkpoints"
    other_fence = Fence(job_id, fence.attempt + 1, "host-b")
    other = FencedCheckpointStore(JobWriter(db.sessions, other_fence), other_dir, job_id,
                                  ArtifactStore(S3Storage(bucket, "openrft/checkpoints")))  # fmt: skip
    assert other.list() == []
    assert other.fetch_published() == 2
    assert [c.step for c in other.list()] == [1, 2] and other.latest_step() == 2
    fetched = other.step_dir(2)
    assert (fetched / ADAPTER_FILE).read_bytes() == bytes([2]) * 5000
    assert (fetched / OPTIMIZER_FILE).read_bytes() == b"o" * 7000
    assert other.fetch_published() == 0  # nothing missing any more


def test_deleting_a_checkpoint_removes_its_row_and_stored_copy(
    db: JobDatabase, s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in s3.env.items():
        monkeypatch.setenv(key, value)
    artifacts = ArtifactStore(S3Storage(s3.new_bucket(), "c"), DirCache(tmp_path / "c", 10**9))
    job_id = db.create_job()
    fence = take_lease(db.sessions, job_id, "host-a", 30, 3)
    assert fence is not None
    store = FencedCheckpointStore(JobWriter(db.sessions, fence), db.settings.checkpoints_dir,
                                  job_id, artifacts)  # fmt: skip
    published = store.publish(1, stage(store, 1))
    key = store.key(published.path)
    assert artifacts.exists(key)
    store.delete(1)
    assert rows(db) == {} and not artifacts.exists(key) and artifacts.storage.list(key) == []
    assert not published.path.exists()
