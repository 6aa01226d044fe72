"""A reporter that records what training tells it and can ask it to stop, and a checkpoint
store that records what training publishes and deletes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from worker.trainer.checkpoints import Checkpoint, DirectoryCheckpointStore


class RecordingReporter:
    def __init__(self, stop_at_poll: int | None = None, stop: str = "pause") -> None:
        self.events: list[tuple[str, str, dict[str, Any] | None]] = []
        self.steps: list[dict[str, Any]] = []
        self.messages: list[str] = []
        # (step, split, samples) in the order reported; ("step", n) marks each on_step
        self.samples: list[tuple[int, str, list[dict[str, Any]]]] = []
        self.calls: list[tuple[str, int]] = []
        self.polls = 0
        self.stop_at_poll = stop_at_poll
        self.stop = stop

    def on_event(self, level: str, message: str, data: dict[str, Any] | None = None) -> None:
        self.events.append((level, message, data))

    def on_step(self, step: int, total_steps: int, message: str, data: dict[str, Any]) -> None:
        self.steps.append(data)
        self.messages.append(message)
        self.calls.append(("step", step))

    def on_samples(self, step: int, split: str, samples: list[dict[str, Any]]) -> None:
        self.samples.append((step, split, samples))
        self.calls.append((split, step))

    def should_stop(self) -> str | None:
        self.polls += 1
        return self.stop if self.polls == self.stop_at_poll else None

    def warnings(self) -> list[str]:
        return [message for level, message, _ in self.events if level == "warn"]


class RecordingStore(DirectoryCheckpointStore):
    def __init__(self, root: Path, staging_prefix: str = "") -> None:
        super().__init__(root, staging_prefix)
        self.published: list[int] = []
        self.deleted: list[int] = []
        self.final: Path | None = None

    def publish(self, step: int, staged: Path) -> Checkpoint:
        checkpoint = super().publish(step, staged)
        self.published.append(step)
        return checkpoint

    def delete(self, step: int) -> None:
        super().delete(step)
        self.deleted.append(step)

    def publish_final(self, staged: Path) -> Path:
        self.final = super().publish_final(staged)
        return self.final
