"""Checkpoints published under the job's fence: a stale attempt can neither add nor remove one.

The trainer writes each checkpoint into a staging folder named after its attempt, then asks the
store to publish it. Publishing renames the folder into place and records its row in one
transaction that holds the job row under the attempt's fence, so a take-over either happens
before (and the rename is refused) or after (and sees the checkpoint).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from app.jobs import repository
from worker.job_writer import JobWriter
from worker.trainer.checkpoints import Checkpoint, DirectoryCheckpointStore


def job_checkpoints_root(checkpoints_dir: Path, job_id: str) -> Path:
    """Where a job's published checkpoints live (`step-000004/`, `final/`)."""
    return checkpoints_dir / job_id / "checkpoints"


class FencedCheckpointStore(DirectoryCheckpointStore):
    def __init__(self, writer: JobWriter, checkpoints_dir: Path, job_id: str) -> None:
        super().__init__(
            job_checkpoints_root(checkpoints_dir, job_id),
            staging_prefix=f"attempt-{writer.fence.attempt}.",
        )
        self.writer = writer
        self.checkpoints_dir = checkpoints_dir

    def _relative(self, path: Path) -> str:
        return str(path.resolve().relative_to(self.checkpoints_dir.resolve()))

    def publish(self, step: int, staged: Path) -> Checkpoint:
        with self.writer.holding() as session:
            checkpoint = super().publish(step, staged)
            repository.add_checkpoint(
                session, self.writer.fence, step, self._relative(checkpoint.path),
                checkpoint.metrics,
            )  # fmt: skip
        return checkpoint

    def delete(self, step: int) -> None:
        with self.writer.holding() as session:
            repository.delete_checkpoint(session, self.writer.fence, step)
            super().delete(step)

    def publish_final(self, staged: Path) -> Path:
        with self.writer.holding():
            return super().publish_final(staged)

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
