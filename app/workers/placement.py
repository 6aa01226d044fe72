"""Fit before run: which registered worker can hold a new job, and on which queue it goes.

A job is placed on the first device, CUDA before CPU and the largest first, whose memory tier
holds its estimate, without gradient checkpointing if it can be, with it otherwise. No device
holding it even so is the user's to know at once (a 400 with the estimate), not after an hour in
the queue. While no worker has registered (a fresh install whose worker is still starting), the
job is not refused: it goes to the plain queue with a note of its estimate.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from app.base_models import BaseModel
from app.gguf_header import GGUFHeaderError
from app.jobs.hyperparameters import resolve_hyperparameters
from app.model_shape import ModelShape, read_gguf_shape, read_shape, shape_from_config
from app.settings import Settings
from app.tables import Worker
from app.workers.memory import JobSize, MemoryEstimate, estimate_memory, format_bytes
from app.workers.queues import job_tier, served_tier, tier_queue

# a dataset this large resolves every "auto" to its largest value (batch_size 4, ...)
_LARGE_DATASET = 1_000_000


class DoesNotFit(ValueError):
    """No registered worker can hold the job; the message shows the estimate."""


@dataclass(frozen=True)
class Placement:
    queue: str | None  # None: the plain queue (nothing to place on)
    gradient_checkpointing: bool
    message: str  # for the job's events
    estimate: MemoryEstimate | None


def job_size(method: str, hyperparameters: dict[str, object]) -> JobSize:
    """The sizes that set a job's memory, with "auto" at its largest resolution."""
    resolved = resolve_hyperparameters(method, hyperparameters, _LARGE_DATASET, _LARGE_DATASET)
    group = {"reinforcement": resolved.group_size, "dpo": 2}.get(method, 1)
    return JobSize(
        batch_size=resolved.batch_size,
        group_size=group,
        completion_tokens=resolved.max_completion_tokens,
        lora_rank=resolved.lora_rank,
    )


@functools.lru_cache(maxsize=64)
def _file_shape(paths: tuple[Path, ...], mtime: float) -> ModelShape:
    if paths[0].name == "config.json":
        return read_shape(paths[0])
    return read_gguf_shape(paths)


def model_shape(settings: Settings, base: BaseModel) -> ModelShape | None:
    """The base model's sizes from its config.json or GGUF header; None when unreadable."""
    import json

    try:
        if base.stored_key is not None:
            from app.artifact_store import artifact_store

            store = artifact_store(settings, "models", "api")
            return shape_from_config(json.loads(store.read_file(base.stored_key, "config.json")))
        if base.hf_dir is not None:
            paths: tuple[Path, ...] = (base.hf_dir / "config.json",)
        elif base.gguf_file is not None:
            paths = (base.gguf_file,)
        else:
            paths = base.gguf_parts
        return _file_shape(paths, paths[0].stat().st_mtime)
    except (OSError, KeyError, ValueError, TypeError, GGUFHeaderError):
        return None


def _device(worker: Worker) -> str:
    memory = format_bytes(worker.memory_bytes)
    return f"{worker.name} ({worker.device_kind}, {worker.device_name}, {memory})"


def place_job(
    shape: ModelShape | None, size: JobSize, workers: list[Worker], queue_name: str
) -> Placement:
    """Where the job goes; raises DoesNotFit when no worker can hold it."""
    if shape is None:
        return Placement(None, False, "The memory this job needs could not be estimated.", None)
    if not workers:
        estimate = estimate_memory(shape, size, bf16=False)
        message = (
            f"Estimated memory: {estimate.describe()} on a CPU worker. No worker has registered "
            "yet, so the fit was not checked."
        )
        return Placement(None, False, message, estimate)
    ordered = sorted(workers, key=lambda w: (w.device_kind != "cuda", -w.memory_bytes))
    for checkpointing in (False, True):
        for worker in ordered:
            estimate = estimate_memory(shape, size, worker.bf16, checkpointing, worker.device_kind)
            tier, offered = job_tier(estimate.total), served_tier(worker.memory_bytes)
            if tier is None or offered is None or tier > offered:
                continue
            queue = tier_queue(queue_name, worker.device_kind, tier)
            turned_on = " Gradient checkpointing is on so that it fits." if checkpointing else ""
            message = (
                f"Estimated memory: {estimate.describe()}; queued for {worker.device_kind} "
                f"workers with at least {tier:g} GiB, such as {_device(worker)}." + turned_on
            )
            return Placement(queue, checkpointing, message, estimate)
    largest = ordered[0]
    estimate = estimate_memory(
        shape, size, largest.bf16, gradient_checkpointing=True, device_kind=largest.device_kind
    )
    offered = served_tier(largest.memory_bytes) or 0
    raise DoesNotFit(
        f"This job needs about {estimate.describe()}, more than any registered worker can "
        f"hold: the largest is {_device(largest)}, which takes jobs of up to "
        f"{offered:g} GiB. Lower batch_size, group_size (compute_multiplier), "
        "max_completion_tokens (reasoning_effort) or lora_rank, or add a worker with more "
        "memory."
    )
