"""A job's tracking integrations: its events and step metrics also sent to Weights & Biases.

`tracked(reporter, ...)` wraps the trainer's Reporter (the runner's `JobProgress`); the trainer
loop knows nothing of it. The run is online when the operator set `WANDB_API_KEY`, else an
offline run under `<data dir>/wandb/<job id>/` (beside the attempts' `work/` folders, and
unlike them kept after the job), which `wandb sync` can upload later.

W&B is a side channel: when it fails (cannot start, cannot log) the job warns once in its
events and goes on without it. `wandb` is imported here only, when a job asks for it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from app.settings import Settings
from app.tables import Job
from worker.trainer.progress import Reporter

logger = logging.getLogger("openrft.worker")

MAX_TAG_CHARS = 64  # W&B refuses longer tags


def wandb_run_dir(settings: Settings, job_id: str) -> Path:
    """Where a job's W&B runs write their files (offline runs stay there)."""
    return settings.resolved_data_dir / "wandb" / job_id


def wandb_integration(job: Job) -> dict[str, Any] | None:
    """The job's validated `wandb` settings, if it has that integration."""
    for integration in job.integrations or []:
        if integration.get("type") == "wandb":
            return dict(integration["wandb"])
    return None


class TrackedReporter:
    """A Reporter that passes everything to `inner` and logs each step's metrics to a W&B run
    (the resolved hyperparameters are the run's config)."""

    def __init__(
        self,
        inner: Reporter,
        wandb_settings: Mapping[str, Any],
        run_dir: Path,
        job_id: str,
        base_model: str,
        config: Mapping[str, Any],
    ) -> None:
        self.inner = inner
        self.run: Any = None
        try:
            self.run = _start_run(wandb_settings, run_dir, job_id, base_model, config)
        except Exception as error:
            self._give_up("could not start a run", error)

    def on_event(self, level: str, message: str, data: dict[str, Any] | None = None) -> None:
        self.inner.on_event(level, message, data)

    def on_step(self, step: int, total_steps: int, message: str, data: dict[str, Any]) -> None:
        # first to W&B: the runner may stop the job on this step's figures
        if self.run is not None:
            try:
                self.run.log(dict(numeric_leaves(data)), step=step)
            except Exception as error:
                self._give_up(f"could not log step {step}", error)
        self.inner.on_step(step, total_steps, message, data)

    def on_samples(self, step: int, split: str, samples: list[dict[str, Any]]) -> None:
        self.inner.on_samples(step, split, samples)

    def should_stop(self) -> str | None:
        return self.inner.should_stop()

    def close(self, succeeded: bool) -> None:
        """Finish the run, exit code 0 unless training raised, and wait until its files are
        written (an offline run's last records reach its file only after `finish` returns;
        `teardown` waits for them)."""
        run, self.run = self.run, None
        if run is None:
            return
        try:
            import wandb

            run.finish(exit_code=0 if succeeded else 1)
            wandb.teardown()
        except Exception as error:
            logger.warning("finishing the W&B run failed: %s", error)

    def _give_up(self, what: str, error: Exception) -> None:
        logger.warning("W&B %s: %s", what, error, exc_info=True)
        run, self.run = self.run, None
        if run is not None:
            try:
                run.finish(exit_code=1)
            except Exception:
                logger.debug("finishing the failed W&B run failed too", exc_info=True)
        self.inner.on_event(
            "warn",
            f"Weights & Biases integration {what} ({type(error).__name__}: {error}); "
            "training goes on without it",
        )


def _start_run(
    wandb_settings: Mapping[str, Any],
    run_dir: Path,
    job_id: str,
    base_model: str,
    config: Mapping[str, Any],
) -> Any:
    import wandb

    online = bool(os.environ.get("WANDB_API_KEY"))
    run_dir.mkdir(parents=True, exist_ok=True)
    # OpenAI's default tags, with our name
    tags = [
        *wandb_settings.get("tags", []),
        "openrft/finetune",
        f"openrft/{base_model}",
        f"openrft/{job_id}",
    ]
    return wandb.init(
        project=wandb_settings["project"],
        entity=wandb_settings.get("entity"),
        name=wandb_settings.get("name") or job_id,
        tags=list(dict.fromkeys(tag[:MAX_TAG_CHARS] for tag in tags)),
        config=dict(config),
        dir=run_dir,
        # one run per job: a resumed job (online) logs on into the same run
        id=job_id,
        resume="allow" if online else None,
        mode="online" if online else "offline",
        reinit="create_new",
        settings=wandb.Settings(
            console="off",  # never wrap the worker's own stdout and stderr
            silent=True,
            x_disable_stats=True,  # no system-metrics sampler beside training
            save_code=False,
            disable_git=True,
            x_save_requirements=False,
        ),
    )


def numeric_leaves(data: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, float]]:
    """The numbers in a metrics event's data, nested keys joined with "/"."""
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from numeric_leaves(value, f"{name}/")
        elif isinstance(value, bool):
            yield name, float(value)
        elif isinstance(value, int | float):
            yield name, value


def tracked(
    reporter: Reporter, settings: Settings, job: Job, config: Mapping[str, Any]
) -> TrackedReporter | None:
    """`reporter` wrapped for the job's integrations, or None when it has none."""
    wandb_settings = wandb_integration(job)
    if wandb_settings is None:
        return None
    return TrackedReporter(
        reporter,
        wandb_settings,
        wandb_run_dir(settings, job.id),
        job.id,
        job.base_model_name,
        {"method": job.method.get("type"), "base_model": job.base_model_name, "model": job.model}
        | dict(config),
    )
