"""train(spec, reporter, checkpoints): the whole run, top to bottom.

load the base model with a fresh LoRA adapter (or the given one's weights) -> resume from the latest published checkpoint if
there is one -> evaluate -> for each step: stop if asked, train, evaluate every `eval_interval`
steps (checkpoint, keep the best three and the latest), report -> publish the final adapter.

Checkpoints go through the CheckpointStore only; the metrics CSV lives in the run's own
`work_dir`, and each checkpoint carries a copy of it up to its step, which a resume starts from.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import torch

from app.graders import BatchGrader
from worker.constrained import Constraint
from worker.trainer.checkpoints import (
    METRICS_FILE,
    CheckpointStore,
    best_checkpoint,
    export_adapter,
    load_adapter_weights,
    load_checkpoint,
    save_checkpoint,
    unkept_checkpoints,
)
from worker.trainer.methods import Preference, Reinforcement, Supervised
from worker.trainer.metrics import MetricsCSV
from worker.trainer.models import PLAIN_TEMPLATE_NOTE, Policy, has_plain_template, load_policy
from worker.trainer.progress import Reporter
from worker.trainer.spec import TrainResult, TrainSpec
from worker.trainer.warm_start import WarmStarted, answered_rows

Method = Reinforcement | Supervised | Preference | WarmStarted
# the warm start's own hyperparameters, as its event shows them
WARM_START_ECHO = ("n_epochs", "batch_size", "learning_rate_multiplier", "learning_rate")


def train(spec: TrainSpec, reporter: Reporter, checkpoints: CheckpointStore) -> TrainResult:
    """Train, or resume training, as `spec` says; report through `reporter`, publish
    checkpoints and the final adapter through `checkpoints`."""
    hp = spec.hyperparameters
    if spec.method == "reinforcement" and not spec.grader:
        raise ValueError("reinforcement fine-tuning needs a grader")
    if hp.method != spec.method:
        raise ValueError(f"{hp.method} hyperparameters for a {spec.method} run")
    if spec.warm_start is not None and spec.method != "reinforcement":
        raise ValueError("a warm start comes before reinforcement fine-tuning only")
    warm_steps = _warm_steps(spec)
    steps = warm_steps + hp.total_steps(len(spec.train_rows))
    spec.work_dir.mkdir(parents=True, exist_ok=True)
    resolved = hp.as_dict()
    reporter.on_event(
        "info",
        f"Hyperparameters: {_describe(resolved)}; {steps} steps on {spec.model}",
        {"hyperparameters": resolved},
    )
    if spec.warm_start is not None:
        warm_hp = spec.warm_start.hyperparameters.as_dict()
        warm = {key: warm_hp[key] for key in WARM_START_ECHO}
        reporter.on_event(
            "info",
            f"Warm start: {warm_steps} supervised steps with each training row's "
            f'"{spec.warm_start.field}" as the answer ({_describe(warm)}), then '
            f"{steps - warm_steps} reinforcement steps",
            {"warm_start": {"field": spec.warm_start.field, "steps": warm_steps} | warm},
        )

    torch.manual_seed(spec.seed)  # the LoRA initialisation draws from the global generator
    policy = load_policy(
        spec.model_dir,
        hp.lora_rank,
        hp.lora_alpha,
        spec.device,
        spec.precision,
        gradient_checkpointing=spec.gradient_checkpointing,
    )
    if has_plain_template(policy.tokenizer):
        reporter.on_event("warn", PLAIN_TEMPLATE_NOTE.format(model=spec.model))
    if spec.init_adapter_dir is not None:
        # the same adapter trained further; a resume below then loads its own checkpoint
        load_adapter_weights(spec.init_adapter_dir, policy.model)
    optimizer = torch.optim.AdamW(
        policy.trainable_parameters(), lr=hp.learning_rate, weight_decay=0.0
    )
    with contextlib.ExitStack() as stack:
        grader = None
        if spec.grader:
            grader = stack.enter_context(BatchGrader(spec.grader, spec.grader_config))
        data = (spec.train_rows, spec.valid_rows, hp, spec.seed)
        method: Method
        if spec.method == "reinforcement":
            assert grader is not None
            method = Reinforcement(
                policy,
                optimizer,
                grader,
                *data,
                samples_per_step=spec.samples_per_step,
                constraint=Constraint.from_response_format(spec.response_format),
                model_name=spec.model if not warm_steps else f"{spec.model} after the warm start",
            )
            if spec.warm_start is not None:
                method = _warm_started(spec, policy, optimizer, method, warm_steps)
        elif spec.method == "dpo":
            method = Preference(policy, optimizer, *data)
        else:
            method = Supervised(policy, optimizer, grader, *data)
        return _loop(spec, reporter, checkpoints, steps, policy, optimizer, method)


def _loop(
    spec: TrainSpec,
    reporter: Reporter,
    checkpoints: CheckpointStore,
    steps: int,
    policy: Policy,
    optimizer: torch.optim.Optimizer,
    method: Method,
) -> TrainResult:
    hp = spec.hyperparameters
    start, trained_tokens, csv = _resume(
        checkpoints, spec.work_dir / METRICS_FILE, policy, optimizer, reporter
    )
    latest_saved = start if start > 0 else None

    if start == 0:
        started = time.perf_counter()
        baseline = method.evaluate()
        _report_samples(reporter, 0, "validation", method.validation_samples())
        _report_baseline(reporter, csv, method, steps, baseline, time.perf_counter() - started)

    for step in range(start + 1, steps + 1):
        stop = reporter.should_stop()
        if stop is not None:
            if stop == "pause" and latest_saved != step - 1:
                _checkpoint(checkpoints, csv, step - 1, policy, optimizer, {}, None, trained_tokens)
            status = "paused" if stop == "pause" else "cancelled"
            reporter.on_event("info", f"Training {status} before step {step}")
            return _result(checkpoints, csv, status, steps, step - 1, trained_tokens)

        step_started = time.perf_counter()
        report = method.train_step(step)
        trained_tokens += report.trained_tokens
        for level, text, event_data in report.events:
            reporter.on_event(level, text, event_data)
        for warning in report.warnings:
            reporter.on_event("warn", warning)

        if isinstance(method, WarmStarted):
            evaluate_now = method.evaluates_at(step, steps)
        else:
            evaluate_now = step % hp.eval_interval == 0 or step == steps
        valid: dict[str, Any] | None = None
        if evaluate_now:
            eval_started = time.perf_counter()
            valid = method.evaluate()
            report.timing["eval"] = (
                report.timing.get("eval", 0.0) + time.perf_counter() - eval_started
            )
        report.timing["full_iteration"] = time.perf_counter() - step_started
        message, data = method.event(step, steps, report, valid)
        data["step_time"] = report.timing["full_iteration"]
        data["train_tokens_per_second"] = report.trained_tokens / max(data["step_time"], 1e-9)
        csv.append(data)
        _report_samples(reporter, step, "train", report.samples)
        if valid is not None:
            _report_samples(reporter, step, "validation", method.validation_samples())
        reporter.on_step(step, steps, message, data)
        if valid is not None:
            _checkpoint(
                checkpoints,
                csv,
                step,
                policy,
                optimizer,
                _checkpoint_metrics(data),
                method.score(valid),
                trained_tokens,
            )
            latest_saved = step

    final = checkpoints.list()[-1]
    assert final.step == steps
    adapter_dir = export_adapter(checkpoints, final)
    best = best_checkpoint(checkpoints.list())
    reporter.on_event(
        "info",
        f"Training completed: {steps} steps, {trained_tokens} tokens"
        + (f", best validation score at step {best.step}" if best else ""),
    )
    return _result(checkpoints, csv, "completed", steps, steps, trained_tokens, adapter_dir)


def _warm_steps(spec: TrainSpec) -> int:
    if spec.warm_start is None:
        return 0
    return spec.warm_start.hyperparameters.total_steps(len(spec.train_rows))


def _warm_started(
    spec: TrainSpec,
    policy: Policy,
    optimizer: torch.optim.Optimizer,
    reinforcement: Reinforcement,
    warm_steps: int,
) -> WarmStarted:
    assert spec.warm_start is not None
    warm_hp = spec.warm_start.hyperparameters
    field = spec.warm_start.field
    rows = answered_rows(spec.train_rows, field)
    # the validation rows give a supervised loss where they hold the field too
    valid = answered_rows([row for row in spec.valid_rows if field in row], field)
    supervised = Supervised(policy, optimizer, None, rows, valid, warm_hp, spec.seed)
    rates = (warm_hp.learning_rate, spec.hyperparameters.learning_rate)
    interval = spec.hyperparameters.eval_interval
    return WarmStarted(supervised, reinforcement, warm_steps, optimizer, rates, interval)


def _resume(
    checkpoints: CheckpointStore,
    metrics_file: Path,
    policy: Policy,
    optimizer: torch.optim.Optimizer,
    reporter: Reporter,
) -> tuple[int, int, MetricsCSV]:
    """(step to continue after, tokens trained so far, the metrics file) from the latest
    published checkpoint, if any: its weights, optimizer state and copy of the metrics rows."""
    published = checkpoints.list()
    if not published:
        return 0, 0, MetricsCSV(metrics_file)
    checkpoint = published[-1]
    load_checkpoint(checkpoint, policy.model, optimizer)
    reporter.on_event("info", f"Resuming from the checkpoint of step {checkpoint.step}")
    # a checkpoint at step 0 (paused before the first step) is followed by a fresh baseline
    rows = MetricsCSV.read(checkpoint.path / METRICS_FILE) if checkpoint.step > 0 else []
    return (
        checkpoint.step,
        int(checkpoint.state.get("trained_tokens", 0)),
        MetricsCSV(metrics_file, rows),
    )


def _report_baseline(
    reporter: Reporter,
    csv: MetricsCSV,
    method: Method,
    steps: int,
    valid: dict[str, Any],
    seconds: float,
) -> None:
    """The validation figures before any training: step 0 of the metrics file."""
    shown = {k: v for k, v in valid.items() if isinstance(v, (int, float))}
    for figure in ("reward_mean", "reward_min", "reward_max", "reward_top_share"):
        if figure in shown:
            shown[f"valid_{figure}"] = shown.pop(figure)
    row = {"step": 0, "total_steps": steps} | shown | {"timing": {"step": {"eval": seconds}}}
    csv.append(row)
    parts = [
        f"{key}={value:.3f}" for key, value in shown.items() if key.startswith(("valid", "full"))
    ]
    reporter.on_event("info", "Validation before training: " + ", ".join(parts), row)


def _report_samples(
    reporter: Reporter, step: int, split: str, samples: list[dict[str, Any]]
) -> None:
    if samples:  # none when the bound is 0, and none from supervised runs
        reporter.on_samples(step, split, samples)


def _checkpoint_metrics(data: dict[str, Any]) -> dict[str, Any]:
    """The scalar figures of a step, as a checkpoint's metrics."""
    return {key: value for key, value in data.items() if isinstance(value, (int, float))}


def _checkpoint(
    checkpoints: CheckpointStore,
    csv: MetricsCSV,
    step: int,
    policy: Policy,
    optimizer: torch.optim.Optimizer,
    metrics: dict[str, Any],
    score: float | None,
    trained_tokens: int,
) -> None:
    """Publish the checkpoint of `step`, then delete those no longer kept."""
    save_checkpoint(
        checkpoints, step, policy.model, optimizer, metrics, score, trained_tokens, csv.path
    )
    for unkept in unkept_checkpoints(checkpoints.list()):
        checkpoints.delete(unkept.step)


def _result(
    checkpoints: CheckpointStore,
    csv: MetricsCSV,
    status: str,
    steps: int,
    done: int,
    trained_tokens: int,
    final_adapter: Path | None = None,
) -> TrainResult:
    kept = checkpoints.list()
    best = best_checkpoint(kept)
    latest = kept[-1].path if kept else None
    return TrainResult(
        status=status,
        total_steps=steps,
        steps_done=done,
        trained_tokens=trained_tokens,
        adapter_dir=final_adapter or latest,
        best_step=best.step if best else None,
        metrics_file=csv.path,
        checkpoints=[checkpoint.step for checkpoint in kept],
    )


def _describe(hp: dict[str, Any]) -> str:
    return ", ".join(f"{key}={value}" for key, value in hp.items())
