"""What a training run is given and what it gives back (no torch needed to build them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.settings import Settings


@dataclass
class TrainSpec:
    """A training run. `out_dir` holding a checkpoint means: resume from it."""

    model: str  # a base-model name from the catalogue, or a Hugging Face model directory
    train_rows: list[dict[str, Any]]
    valid_rows: list[dict[str, Any]]
    method: str  # "reinforcement" | "supervised"
    grader: dict[str, Any] | None  # required for reinforcement; optional for supervised
    hyperparameters: dict[str, Any]  # OpenAI names ("auto" allowed) plus trainer knobs
    seed: int
    out_dir: Path
    settings: Settings | None = None
    device: str | None = None  # None: CUDA when present, else CPU
    precision: str = "auto"  # "auto" (bf16 where native), "bf16" or "fp32"


@dataclass
class TrainResult:
    status: str  # "completed" | "paused" | "cancelled"
    hyperparameters: dict[str, Any]  # every value resolved
    total_steps: int
    steps_done: int
    trained_tokens: int
    adapter_dir: Path | None  # the final adapter when completed, else the latest checkpoint
    best_step: int | None  # the checkpoint with the best validation score
    metrics_file: Path | None = None
    checkpoints: list[int] = field(default_factory=list)  # steps of the kept checkpoints
