"""What a training run is given and what it gives back (no torch needed to build them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.graders import GraderConfig
from app.jobs.hyperparameters import Hyperparameters, resolve_warm_start


@dataclass(frozen=True)
class WarmStart:
    """A supervised phase before RL, on the dataset field `field` as the assistant's answer."""

    field: str
    hyperparameters: Hyperparameters  # method "supervised" (resolve_warm_start)

    @classmethod
    def resolve(
        cls, given: dict[str, Any], reinforcement: Hyperparameters, n_train: int
    ) -> WarmStart:
        """From `method.reinforcement.warm_start` as the API accepted it."""
        return cls(given["field"], resolve_warm_start(given, reinforcement, n_train))


@dataclass(frozen=True)
class TrainSpec:
    """A training run with everything resolved: the trainer reads no settings."""

    model: str  # the base model's name, for messages
    model_dir: Path  # its Hugging Face model directory (models.resolve_model_dir)
    train_rows: tuple[dict[str, Any], ...]
    valid_rows: tuple[dict[str, Any], ...]
    method: str  # "reinforcement" | "supervised" | "dpo"
    grader: dict[str, Any] | None  # required for reinforcement; optional for supervised
    hyperparameters: Hyperparameters  # resolved for these rows (resolve_hyperparameters)
    seed: int
    work_dir: Path  # private to this run: the metrics CSV
    grader_config: GraderConfig
    # a LoRA adapter (saved by save_pretrained, of this base model) whose weights the run starts
    # from instead of a fresh adapter: training on from a fine-tuned model. Its rank and alpha
    # must be the hyperparameters' lora_rank and lora_alpha.
    init_adapter_dir: Path | None = None
    device: str | None = None  # None: CUDA when present, else CPU
    precision: str = "auto"  # "auto" (bf16 where native), "bf16" or "fp32"
    # recompute activations in the backward pass: set at job creation when only then it fits
    gradient_checkpointing: bool = False
    # graded completions reported per step and per validation run (whole groups; 0: none)
    samples_per_step: int = 16
    # reinforcement: OpenAI's response_format ({"type": "json_schema", "json_schema": {...}} or
    # {"type": "json_object"}), enforced token by token on every sampled completion
    response_format: dict[str, Any] | None = None
    # reinforcement only: supervised steps on a dataset field first, in the same run
    warm_start: WarmStart | None = None

    def __post_init__(self) -> None:
        # rows given as lists are copied into tuples: nothing the caller keeps can change them
        object.__setattr__(self, "train_rows", tuple(self.train_rows))
        object.__setattr__(self, "valid_rows", tuple(self.valid_rows))


@dataclass
class TrainResult:
    status: str  # "completed" | "paused" | "cancelled"
    total_steps: int
    steps_done: int
    trained_tokens: int
    adapter_dir: Path | None  # the final adapter when completed, else the latest checkpoint
    best_step: int | None  # the checkpoint with the best validation score
    metrics_file: Path | None = None
    checkpoints: list[int] = field(default_factory=list)  # steps of the kept checkpoints
