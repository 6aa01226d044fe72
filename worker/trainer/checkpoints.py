"""Checkpoints: the LoRA adapter (safetensors, loadable with `PeftModel.from_pretrained`), the
optimizer state and the step's metrics, one directory per step under `<out>/checkpoints/`.

Kept: the three best by validation score plus the latest (which a resume starts from). Each
directory appears by atomic rename, so a crash never leaves a half-written checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from peft import set_peft_model_state_dict
from safetensors.torch import load_file

ADAPTER_FILE = "adapter_model.safetensors"
OPTIMIZER_FILE = "optimizer.pt"
STATE_FILE = "trainer_state.json"
KEEP_BEST = 3


@dataclass
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


def checkpoints_root(out_dir: Path) -> Path:
    return out_dir / "checkpoints"


def save_checkpoint(
    out_dir: Path,
    step: int,
    model: Any,
    optimizer: torch.optim.Optimizer,
    metrics: dict[str, Any],
    score: float | None,
    trained_tokens: int = 0,
) -> Checkpoint:
    root = checkpoints_root(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    target = root / f"step-{step:06d}"
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=root))
    state = {"step": step, "metrics": metrics, "score": score, "trained_tokens": trained_tokens}
    try:
        model.save_pretrained(staging)
        torch.save(optimizer.state_dict(), staging / OPTIMIZER_FILE)
        (staging / STATE_FILE).write_text(json.dumps(state, indent=1))
        os.chmod(staging, 0o755)
        if target.exists():
            shutil.rmtree(target)
        os.rename(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Checkpoint(step, target, state)


def list_checkpoints(out_dir: Path) -> list[Checkpoint]:
    """Complete checkpoints, oldest first."""
    root = checkpoints_root(out_dir)
    found = []
    for path in sorted(root.glob("step-*")) if root.is_dir() else []:
        if (path / STATE_FILE).is_file() and (path / ADAPTER_FILE).is_file():
            state = json.loads((path / STATE_FILE).read_text())
            found.append(Checkpoint(state["step"], path, state))
    return sorted(found, key=lambda checkpoint: checkpoint.step)


def latest_checkpoint(out_dir: Path) -> Checkpoint | None:
    checkpoints = list_checkpoints(out_dir)
    return checkpoints[-1] if checkpoints else None


def best_checkpoint(out_dir: Path) -> Checkpoint | None:
    scored = [c for c in list_checkpoints(out_dir) if c.score is not None]
    return max(scored, key=lambda c: (c.score, c.step)) if scored else None


def prune_checkpoints(out_dir: Path, keep_best: int = KEEP_BEST) -> list[int]:
    """Delete every checkpoint but the `keep_best` best scored and the latest; return the
    deleted steps. Ties go to the later step."""
    checkpoints = list_checkpoints(out_dir)
    if not checkpoints:
        return []
    scored = [c for c in checkpoints if c.score is not None]
    best = sorted(scored, key=lambda c: (c.score, c.step), reverse=True)[:keep_best]
    keep = {c.step for c in best} | {checkpoints[-1].step}
    deleted = []
    for checkpoint in checkpoints:
        if checkpoint.step not in keep:
            shutil.rmtree(checkpoint.path)
            deleted.append(checkpoint.step)
    return deleted


def load_checkpoint(checkpoint: Checkpoint, model: Any, optimizer: torch.optim.Optimizer) -> None:
    """Restore adapter weights and optimizer state in place."""
    weights = load_file(checkpoint.path / ADAPTER_FILE, device=str(next(model.parameters()).device))
    result = set_peft_model_state_dict(model, weights)
    unexpected = [key for key in getattr(result, "unexpected_keys", []) if "lora_" in key]
    if unexpected:
        raise ValueError(f"checkpoint {checkpoint.path} does not match the model: {unexpected[:3]}")
    optimizer.load_state_dict(torch.load(checkpoint.path / OPTIMIZER_FILE, weights_only=True))


def export_adapter(checkpoint: Checkpoint, target: Path) -> Path:
    """Copy the adapter files (not the optimizer) of `checkpoint` to `target`, atomically."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        for name in os.listdir(checkpoint.path):
            if name != OPTIMIZER_FILE:
                shutil.copy2(checkpoint.path / name, staging / name)
        os.chmod(staging, 0o755)
        if target.exists():
            shutil.rmtree(target)
        os.rename(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
