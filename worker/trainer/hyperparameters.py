"""Hyperparameters: OpenAI's names (with "auto") resolved to concrete values, plus trainer knobs.

Imports nothing heavy, so the service can echo resolved values without loading torch.

How OpenAI's reinforcement hyperparameters map onto GRPO here:
- `batch_size`: prompts per optimizer step; each is sampled `group_size` times.
- `n_epochs`: passes over the training prompts; steps = n_epochs * ceil(n_train / batch_size).
- `learning_rate_multiplier`: times a base learning rate chosen for LoRA (`BASE_LEARNING_RATE`).
- `compute_multiplier`: scales the samples drawn per prompt: group_size = round(8 * m), clamped
  to [2, 64]. An explicit `group_size` takes precedence.
- `reasoning_effort`: the completion token budget (`COMPLETION_TOKENS_BY_EFFORT`). An explicit
  `max_completion_tokens` takes precedence.
- `eval_interval`: training steps between evaluations on the validation set.
- `eval_samples`: completions sampled per validation prompt at each evaluation.
- `sampling_rounds` (ours): batches of prompts sampled per step at most, until `batch_size`
  groups carry signal (DAPO's dynamic sampling); 1 samples only the step's own batch.
"""

from __future__ import annotations

import math
from typing import Any

METHODS = ("reinforcement", "supervised")
LOSS_TYPES = ("dapo", "grpo", "dr_grpo")
SCALE_REWARDS = ("group", "batch", "none")
REASONING_EFFORTS = ("default", "low", "medium", "high")

# LoRA wants a learning rate about 10x that of full fine-tuning; these learn the built-in
# short-answer task in a few dozen steps without the length blow-up a higher rate gives.
BASE_LEARNING_RATE = {"reinforcement": 1e-4, "supervised": 2e-4}
COMPLETION_TOKENS_BY_EFFORT = {"low": 32, "default": 64, "medium": 64, "high": 128}
DEFAULT_GROUP_SIZE = 8
# "auto" aims at this many optimizer steps: enough for a few dozen prompts to learn a behaviour,
# few enough to finish within minutes on two CPU cores.
TARGET_STEPS = {"reinforcement": 64, "supervised": 24}
TARGET_EVALUATIONS = 8
# evaluations sample at least this many validation completions, so the mean is not all noise
MIN_EVAL_COMPLETIONS = 32
DEFAULT_SAMPLING_ROUNDS = 1


class HyperparameterError(ValueError):
    """A bad hyperparameter: `param` names it, the message says what was expected."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param


def _int(name: str, low: int, high: int | None = None) -> Any:
    def check(value: Any) -> int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if type(value) is not int or value < low or (high is not None and value > high):
            bounds = f"from {low} to {high}" if high is not None else f"at least {low}"
            raise HyperparameterError(name, f"expected an integer {bounds}, got {value!r}")
        return value

    return check


def _float(name: str, low: float, high: float | None = None, low_open: bool = True) -> Any:
    def check(value: Any) -> float:
        ok = type(value) in (int, float) and math.isfinite(value)
        if ok:
            ok = (value > low if low_open else value >= low) and (high is None or value <= high)
        if not ok:
            bound = f"greater than {low:g}" if low_open else f"at least {low:g}"
            upper = f" and at most {high:g}" if high is not None else ""
            raise HyperparameterError(name, f"expected a number {bound}{upper}, got {value!r}")
        return float(value)

    return check


def _choice(name: str, choices: tuple[str, ...]) -> Any:
    def check(value: Any) -> str:
        if value not in choices:
            raise HyperparameterError(name, f"expected one of {', '.join(choices)}, got {value!r}")
        return str(value)

    return check


CHECKS: dict[str, Any] = {
    "n_epochs": _int("n_epochs", 1, 50),
    "batch_size": _int("batch_size", 1, 256),
    "learning_rate_multiplier": _float("learning_rate_multiplier", 0),
    "compute_multiplier": _float("compute_multiplier", 0.00001, 10),
    "eval_interval": _int("eval_interval", 1),
    "eval_samples": _int("eval_samples", 1),
    "reasoning_effort": _choice("reasoning_effort", REASONING_EFFORTS),
    "lora_rank": _int("lora_rank", 1, 256),
    "lora_alpha": _float("lora_alpha", 0),
    "group_size": _int("group_size", 2, 64),
    "loss_type": _choice("loss_type", LOSS_TYPES),
    "beta": _float("beta", 0, low_open=False),
    "temperature": _float("temperature", 0, 2),
    "top_p": _float("top_p", 0, 1),
    "max_completion_tokens": _int("max_completion_tokens", 1, 4096),
    "scale_rewards": _choice("scale_rewards", SCALE_REWARDS),
    "num_iterations": _int("num_iterations", 1, 16),
    "sampling_rounds": _int("sampling_rounds", 1, 16),
    "epsilon": _float("epsilon", 0, 1),
    "epsilon_high": _float("epsilon_high", 0, 1),
}
SUPERVISED_KEYS = (
    "n_epochs",
    "batch_size",
    "learning_rate_multiplier",
    "eval_interval",
    "lora_rank",
    "lora_alpha",
    "max_completion_tokens",
)
REINFORCEMENT_KEYS = tuple(CHECKS)


def _given(method: str, hyperparameters: dict[str, Any]) -> dict[str, Any]:
    """The explicitly given values, checked; "auto" and None count as not given."""
    allowed = REINFORCEMENT_KEYS if method == "reinforcement" else SUPERVISED_KEYS
    given = {}
    for name, value in (hyperparameters or {}).items():
        if name not in allowed:
            raise HyperparameterError(name, f"not a {method} hyperparameter")
        if value is None or (value == "auto" and name != "reasoning_effort"):
            continue
        given[name] = CHECKS[name](value)
    return given


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    return math.ceil(n_train / batch_size)


def total_steps(resolved: dict[str, Any], n_train: int) -> int:
    return resolved["n_epochs"] * steps_per_epoch(n_train, resolved["batch_size"])


def resolve_hyperparameters(
    method: str, hyperparameters: dict[str, Any] | None, n_train: int, n_valid: int
) -> dict[str, Any]:
    """Every hyperparameter of `method` with "auto" replaced by a concrete value.

    Defaults depend on the dataset size: a few dozen prompts get ~64 GRPO steps (or ~24 SFT
    steps) of 4 prompts; `batch_size` never exceeds the number of training examples.
    """
    if method not in METHODS:
        raise HyperparameterError("method", f"expected one of {', '.join(METHODS)}")
    if n_train < 1:
        raise HyperparameterError("training_file", "needs at least one example")
    given = _given(method, hyperparameters or {})
    resolved: dict[str, Any] = {}
    resolved["batch_size"] = min(given.get("batch_size", min(4, max(1, n_train // 4))), n_train)
    per_epoch = steps_per_epoch(n_train, resolved["batch_size"])
    auto_epochs = min(50, max(1, round(TARGET_STEPS[method] / per_epoch)))
    resolved["n_epochs"] = given.get("n_epochs", auto_epochs)
    resolved["learning_rate_multiplier"] = given.get("learning_rate_multiplier", 1.0)
    resolved["learning_rate"] = BASE_LEARNING_RATE[method] * resolved["learning_rate_multiplier"]
    steps = resolved["n_epochs"] * per_epoch
    resolved["eval_interval"] = given.get(
        "eval_interval", max(1, math.ceil(steps / TARGET_EVALUATIONS))
    )
    resolved["lora_rank"] = given.get("lora_rank", 16)
    resolved["lora_alpha"] = given.get("lora_alpha", 2.0 * resolved["lora_rank"])
    if method == "supervised":
        resolved["max_completion_tokens"] = given.get("max_completion_tokens", 64)
        return resolved
    return resolved | _resolve_reinforcement(given, n_valid)


def _resolve_reinforcement(given: dict[str, Any], n_valid: int) -> dict[str, Any]:
    compute_multiplier = given.get("compute_multiplier", 1.0)
    effort = given.get("reasoning_effort", "default")
    group_size = min(64, max(2, round(DEFAULT_GROUP_SIZE * compute_multiplier)))
    auto_eval_samples = min(4, max(1, math.ceil(MIN_EVAL_COMPLETIONS / max(1, n_valid))))
    epsilon = given.get("epsilon", 0.2)
    return {
        "compute_multiplier": compute_multiplier,
        "reasoning_effort": effort,
        "eval_samples": given.get("eval_samples", auto_eval_samples),
        "group_size": given.get("group_size", group_size),
        "max_completion_tokens": given.get(
            "max_completion_tokens", COMPLETION_TOKENS_BY_EFFORT[effort]
        ),
        "temperature": given.get("temperature", 1.0),
        "top_p": given.get("top_p", 1.0),
        "loss_type": given.get("loss_type", "dapo"),
        "scale_rewards": given.get("scale_rewards", "group"),
        "beta": given.get("beta", 0.0),
        "num_iterations": given.get("num_iterations", 1),
        "sampling_rounds": given.get("sampling_rounds", DEFAULT_SAMPLING_ROUNDS),
        "epsilon": epsilon,
        "epsilon_high": given.get("epsilon_high", epsilon),
    }
