"""A reporter that records what training tells it and can ask it to stop."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class RecordingReporter:
    def __init__(self, stop_at_poll: int | None = None, stop: str = "pause") -> None:
        self.events: list[tuple[str, str, dict[str, Any] | None]] = []
        self.steps: list[dict[str, Any]] = []
        self.messages: list[str] = []
        self.checkpoints: list[tuple[int, Path]] = []
        self.deleted: list[int] = []
        self.polls = 0
        self.stop_at_poll = stop_at_poll
        self.stop = stop

    def on_event(self, level: str, message: str, data: dict[str, Any] | None = None) -> None:
        self.events.append((level, message, data))

    def on_step(self, step: int, total_steps: int, message: str, data: dict[str, Any]) -> None:
        self.steps.append(data)
        self.messages.append(message)

    def on_checkpoint(self, step: int, adapter_dir: Path, metrics: dict[str, Any]) -> None:
        self.checkpoints.append((step, adapter_dir))

    def on_checkpoint_deleted(self, step: int) -> None:
        self.deleted.append(step)

    def should_stop(self) -> str | None:
        self.polls += 1
        return self.stop if self.polls == self.stop_at_poll else None

    def warnings(self) -> list[str]:
        return [message for level, message, _ in self.events if level == "warn"]
