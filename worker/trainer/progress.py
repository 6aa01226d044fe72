"""How training reports progress and learns it should stop: the Reporter protocol the job
runner implements, and the console reporter the command line uses. Checkpoints are not
reported here: they are published through a CheckpointStore (checkpoints.py)."""

from __future__ import annotations

import sys
from typing import Any, Protocol, TextIO


class Reporter(Protocol):
    def on_event(self, level: str, message: str, data: dict[str, Any] | None = None) -> None:
        """A job event: `level` is "info", "warn" or "error"."""

    def on_step(self, step: int, total_steps: int, message: str, data: dict[str, Any]) -> None:
        """A metrics event after each step; `data` is in OpenAI's metrics-event shape."""

    def on_samples(self, step: int, split: str, samples: list[dict[str, Any]]) -> None:
        """The graded completions kept from `step`'s batch (`split` "train") or from the
        validation run at `step` ("validation"; step 0 is the run before training): each
        {group, prompt, reference, completion, reward, sub_rewards}. Sent before the step's
        on_step; sent again for a step replaces what was sent before."""

    def should_stop(self) -> str | None:
        """Polled at step boundaries: "pause" or "cancel" to stop, None to go on."""


class ConsoleReporter:
    """Prints one line per step and per event; never asks to stop."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout

    def _print(self, line: str) -> None:
        print(line, file=self.stream, flush=True)

    def on_event(self, level: str, message: str, data: dict[str, Any] | None = None) -> None:
        self._print(f"[{level}] {message}")

    def on_step(self, step: int, total_steps: int, message: str, data: dict[str, Any]) -> None:
        timing = data.get("timing", {}).get("step", {})
        split = " ".join(f"{name}={seconds:.2f}s" for name, seconds in timing.items())
        self._print(f"{message} | {split}" if split else message)

    def on_samples(self, step: int, split: str, samples: list[dict[str, Any]]) -> None:
        pass  # a console has no room for them; the job service stores them

    def should_stop(self) -> str | None:
        return None
