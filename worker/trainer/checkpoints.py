"""Checkpoints: the LoRA adapter (safetensors, loadable with `PeftModel.from_pretrained`), the
optimizer state, the step's metrics and the metrics CSV up to the step, one folder per step.

The trainer writes each checkpoint into a staging folder the CheckpointStore hands out, then
asks the store to publish it: a crash never leaves a half-written checkpoint, and the job
runner's store refuses to publish, or delete, for a worker that no longer holds the job.

Kept: the three best by validation score plus the latest (which a resume starts from).
torch is imported where a checkpoint is saved or loaded, so the store imports light.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from app.atomic import remove_directory, replace_directory

if TYPE_CHECKING:
    import torch

ADAPTER_FILE = "adapter_model.safetensors"
OPTIMIZER_FILE = "optimizer.pt"
STATE_FILE = "trainer_state.json"
METRICS_FILE = "metrics.csv"
# what only a resume needs: left out of the final adapter
TRAINING_STATE_FILES = (OPTIMIZER_FILE, METRICS_FILE)
KEEP_BEST = 3


@dataclass(frozen=True)
class Checkpoint:
    step: int
    path: Path
    # {"step", "metrics", "score", "trained_tokens"}; score: higher is better, or None
    state: dict[str, Any]

    @property
    def metrics(self) -> dict[str, Any]:
        return self.state["metrics"]

    @property
    def score(self) -> float | None:
        return self.state.get("score")


def read_checkpoint(path: Path) -> Checkpoint | None:
    """The checkpoint in `path`, or None where its state or adapter is missing."""
    if not (path / STATE_FILE).is_file() or not (path / ADAPTER_FILE).is_file():
        return None
    state = json.loads((path / STATE_FILE).read_text())
    return Checkpoint(state["step"], path, state)


class CheckpointStore(Protocol):
    """Where a run's checkpoints are published; the trainer touches them only through this."""

    def list(self) -> list[Checkpoint]:
        """The published checkpoints, oldest first."""
        ...

    def staging_dir(self, name: str) -> Path:
        """A new empty folder, private to this run, to write a checkpoint or adapter into."""
        ...

    def publish(self, step: int, staged: Path) -> Checkpoint:
        """Make the staged folder the checkpoint of `step`, atomically."""
        ...

    def delete(self, step: int) -> None:
        """Remove the published checkpoint of `step`."""
        ...

    def publish_final(self, staged: Path) -> Path:
        """Make the staged folder the final adapter, atomically; return where it is."""
        ...


class DirectoryCheckpointStore:
    """Checkpoints as folders under `root`: `step-000004/`, ..., and `final/`.

    Staging folders are hidden, `.<staging_prefix><name>.<random>`, beside them (so publishing
    is a rename) and never listed. Each method is one short file-system operation, so that a
    subclass can run it inside a transaction that checks the job is still this worker's.
    """

    def __init__(self, root: Path, staging_prefix: str = "") -> None:
        self.root = root
        self.staging_prefix = staging_prefix

    def step_dir(self, step: int) -> Path:
        return self.root / f"step-{step:06d}"

    def list(self) -> list[Checkpoint]:
        if not self.root.is_dir():
            return []
        found = (read_checkpoint(path) for path in self.root.glob("step-*"))
        return sorted((c for c in found if c is not None), key=lambda c: c.step)

    def staging_dir(self, name: str) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{self.staging_prefix}{name}.", dir=self.root))

    def publish(self, step: int, staged: Path) -> Checkpoint:
        checkpoint = read_checkpoint(staged)
        if checkpoint is None or checkpoint.step != step:
            raise ValueError(f"{staged} holds no complete checkpoint of step {step}")
        target = self.step_dir(step)
        replace_directory(staged, target)
        return replace(checkpoint, path=target)

    def delete(self, step: int) -> None:
        remove_directory(self.step_dir(step))

    def publish_final(self, staged: Path) -> Path:
        target = self.root / "final"
        replace_directory(staged, target)
        return target


@contextmanager
def staging(store: CheckpointStore, name: str) -> Iterator[Path]:
    """A staging folder from `store`, removed if the block leaves it unpublished."""
    staged = store.staging_dir(name)
    try:
        yield staged
    finally:
        shutil.rmtree(staged, ignore_errors=True)


def save_checkpoint(
    store: CheckpointStore,
    step: int,
    model: Any,
    optimizer: torch.optim.Optimizer,
    metrics: dict[str, Any],
    score: float | None,
    trained_tokens: int,
    metrics_file: Path,
) -> Checkpoint:
    """Write the adapter, the optimizer state and a copy of `metrics_file`, then publish."""
    import torch

    state = {"step": step, "metrics": metrics, "score": score, "trained_tokens": trained_tokens}
    with staging(store, f"step-{step:06d}") as staged:
        model.save_pretrained(staged)
        torch.save(optimizer.state_dict(), staged / OPTIMIZER_FILE)
        shutil.copy2(metrics_file, staged / METRICS_FILE)
        (staged / STATE_FILE).write_text(json.dumps(state, indent=1))
        return store.publish(step, staged)


def best_checkpoint(checkpoints: Sequence[Checkpoint]) -> Checkpoint | None:
    scored = [c for c in checkpoints if c.score is not None]
    return max(scored, key=lambda c: (c.score, c.step)) if scored else None


def unkept_checkpoints(
    checkpoints: Sequence[Checkpoint], keep_best: int = KEEP_BEST
) -> list[Checkpoint]:
    """Every checkpoint but the `keep_best` best scored and the latest. Ties go to the later
    step."""
    if not checkpoints:
        return []
    scored = [c for c in checkpoints if c.score is not None]
    best = sorted(scored, key=lambda c: (c.score, c.step), reverse=True)[:keep_best]
    keep = {c.step for c in best} | {checkpoints[-1].step}
    return [c for c in checkpoints if c.step not in keep]


def load_checkpoint(checkpoint: Checkpoint, model: Any, optimizer: torch.optim.Optimizer) -> None:
    """Restore adapter weights and optimizer state in place."""
    import torch

    load_adapter_weights(checkpoint.path, model)
    optimizer.load_state_dict(torch.load(checkpoint.path / OPTIMIZER_FILE, weights_only=True))


def load_adapter_weights(adapter_dir: Path, model: Any) -> None:
    """Copy the LoRA weights saved in `adapter_dir` into `model`'s adapter, in place.

    Every LoRA weight of the model must be in the file and every one in the file must fit the
    model: a part-loaded adapter would train on silently from a different starting point.
    """
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    weights = load_file(adapter_dir / ADAPTER_FILE, device=str(next(model.parameters()).device))
    result = set_peft_model_state_dict(model, weights)
    unexpected = [key for key in getattr(result, "unexpected_keys", []) if "lora_" in key]
    missing = [key for key in getattr(result, "missing_keys", []) if "lora_" in key]
    if unexpected or missing:
        raise ValueError(
            f"the adapter in {adapter_dir} does not match the model: "
            f"unexpected {unexpected[:3]}, missing {missing[:3]}"
        )


def export_adapter(store: CheckpointStore, checkpoint: Checkpoint) -> Path:
    """Publish the adapter files of `checkpoint` (not its training state) as the final adapter."""
    with staging(store, "final") as staged:
        for name in os.listdir(checkpoint.path):
            if name not in TRAINING_STATE_FILES:
                shutil.copy2(checkpoint.path / name, staged / name)
        return store.publish_final(staged)
