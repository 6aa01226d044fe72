"""Checkpoints published under the job's fence: a stale attempt can neither add nor remove one.

The trainer writes each checkpoint into a staging folder named after its attempt, then asks the
store to publish it. Publishing renames the folder into place (refused under a lost fence),
stores the folder under its key in the artefact store (files first, manifest last), and only
then records its row, in a transaction that holds the job row under the attempt's fence: a
checkpoint row always names a completely stored checkpoint, which any worker can fetch.

With local storage the renamed folder is already in the store; with S3 it is uploaded, and a
new attempt on another host fetches the published checkpoints it lacks (`fetch_published`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from sqlalchemy import select

from app.artifact_store import ArtifactStore
from app.jobs import repository
from app.tables import Checkpoint as CheckpointRow
from worker.job_writer import JobWriter
from worker.trainer.checkpoints import Checkpoint, DirectoryCheckpointStore, read_checkpoint


def job_checkpoints_root(checkpoints_dir: Path, job_id: str) -> Path:
    """Where a job's published checkpoints live (`step-000004/`, `final/`)."""
    return checkpoints_dir / job_id / "checkpoints"


class FencedCheckpointStore(DirectoryCheckpointStore):
    def __init__(
        self, writer: JobWriter, checkpoints_dir: Path, job_id: str, artifacts: ArtifactStore
    ) -> None:
        super().__init__(
            job_checkpoints_root(checkpoints_dir, job_id),
            staging_prefix=f"attempt-{writer.fence.attempt}.",
        )
        self.writer = writer
        self.checkpoints_dir = checkpoints_dir
        self.artifacts = artifacts

    def key(self, path: Path) -> str:
        """The storage key of a published folder: its path under the checkpoints folder."""
        return str(path.resolve().relative_to(self.checkpoints_dir.resolve()))

    def publish(self, step: int, staged: Path) -> Checkpoint:
        with self.writer.holding():
            checkpoint = super().publish(step, staged)
        # complete in storage before the row makes it visible
        self.artifacts.put_dir(checkpoint.path, self.key(checkpoint.path))
        with self.writer.holding() as session:
            repository.add_checkpoint(
                session, self.writer.fence, step, self.key(checkpoint.path), checkpoint.metrics
            )
        return checkpoint

    def delete(self, step: int) -> None:
        with self.writer.holding() as session:
            repository.delete_checkpoint(session, self.writer.fence, step)
        self.artifacts.delete_dir(self.key(self.step_dir(step)))
        super().delete(step)

    def publish_final(self, staged: Path) -> Path:
        with self.writer.holding():
            final = super().publish_final(staged)
        # the job's row names it only when the job succeeds, after this
        self.artifacts.put_dir(final, self.key(final))
        return final

    def fetch_published(self) -> int:
        """Fetch from storage the published checkpoints missing here (an earlier attempt ran
        on another host); how many were fetched."""
        with self.writer.sessions() as session:
            rows = session.execute(
                select(CheckpointRow.step_number, CheckpointRow.storage_path).where(
                    CheckpointRow.job_id == self.writer.job_id
                )
            ).all()
        fetched = 0
        for step, key in rows:
            target = self.step_dir(step)
            if read_checkpoint(target) is None and self.artifacts.exists(key):
                self.artifacts.fetch_dir(key, target)
                fetched += 1
        return fetched

    def latest_step(self) -> int:
        """The step a new attempt continues after: its latest published checkpoint, or 0."""
        published = self.list()
        return published[-1].step if published else 0

    def discard_staging(self, *, earlier_attempts: bool = False) -> None:
        """Remove what this attempt staged and never published (it stopped or was fenced), or
        also what earlier attempts left behind: they were lost, so nothing of theirs is in use."""
        attempt = self.writer.fence.attempt
        for staged in self.root.glob(".attempt-*"):
            number = staged.name.removeprefix(".attempt-").split(".", 1)[0]
            mine = number == str(attempt)
            earlier = number.isdigit() and int(number) < attempt
            if mine or (earlier_attempts and earlier):
                shutil.rmtree(staged, ignore_errors=True)
