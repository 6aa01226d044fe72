"""The one table of hyperparameters: what the API accepts and echoes for each method, and how the
trainer resolves "auto" to concrete values when a job starts.

Imports nothing heavy, so the API checks and echoes without loading torch.

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

DPO: `batch_size` counts preference pairs, and `beta` is the temperature on the policy's
log-ratio to the base model (0.1 when "auto"), not RFT's KL coefficient.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, Literal

METHODS = ("supervised", "dpo", "reinforcement")
ALL = frozenset(METHODS)
RFT = frozenset({"reinforcement"})
DPO = frozenset({"dpo"})

# LoRA wants a learning rate about 10x that of full fine-tuning; these learn the built-in
# short-answer task in a few dozen steps without the length blow-up a higher rate gives.
BASE_LEARNING_RATE = {"reinforcement": 1e-4, "supervised": 2e-4, "dpo": 5e-5}
# "auto" RL runs shorter than TARGET_STEPS take larger steps: the multiplier grows as
# sqrt(TARGET_STEPS / steps), up to this. On the learning suite (bench/learning.py) at 6-8
# steps, 3x beat 1x on all five task families; at about 64 steps 1x is what learns the
# worked-example task in 8 of 8 seeds.
SHORT_RUN_MAX_MULTIPLIER = 3.0
COMPLETION_TOKENS_BY_EFFORT = {"low": 32, "default": 64, "medium": 64, "high": 128}
DEFAULT_GROUP_SIZE = 8
# "auto" aims at this many optimizer steps: enough for a few dozen prompts to learn a behaviour,
# few enough to finish within minutes on two CPU cores.
TARGET_STEPS = {"reinforcement": 64, "supervised": 24, "dpo": 24}
# DPO's beta when not given: the value of the DPO paper's experiments and TRL's default
DEFAULT_DPO_BETA = 0.1
TARGET_EVALUATIONS = 8
# evaluations sample at least this many validation completions, so the mean is not all noise
MIN_EVAL_COMPLETIONS = 32
DEFAULT_SAMPLING_ROUNDS = 1
# the supervised warm start before RL (an extension): the answers' format is learned in a few
# steps, and more passes over the same few dozen answers cost what the model knew. On the
# short-answer task (bench/learning.py), one pass (8 steps) then RL reached 0.87-0.91
# validation reward at best in 5 seeds of 5, two passes 0.80-0.84, four 0.43.
WARM_START_TARGET_STEPS = 8
# what `method.reinforcement.warm_start` accepts besides `field`, checked as supervised ones
WARM_START_HYPERPARAMETERS = ("n_epochs", "batch_size", "learning_rate_multiplier")


class HyperparameterError(ValueError):
    """A bad hyperparameter: `param` names it, `message` says what was expected."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param
        self.message = message


@dataclass(frozen=True)
class Hyperparameter:
    """One row of the table."""

    name: str
    kind: Literal["int", "number", "choice"]
    methods: frozenset[str]  # the methods that accept it
    doc: str  # what it does, and why its bounds are where they are
    low: float = 0
    high: float = 0
    low_open: bool = False  # numbers only: the value must be greater than `low`
    choices: tuple[str, ...] = ()
    # the methods whose OpenAI hyperparameters include it: there the echo always shows it,
    # `echo_default` until given; elsewhere it is our own knob, echoed only when given
    openai_methods: frozenset[str] = frozenset()
    echo_default: str = "auto"

    @property
    def expected(self) -> str:
        """What a good value looks like, as the error message says it."""
        if self.kind == "choice":
            return "one of " + ", ".join(f'"{choice}"' for choice in self.choices)
        if self.kind == "int":
            return f'"auto" or an integer from {self.low:g} to {self.high:g}'
        low = f"greater than {self.low:g}" if self.low_open else f"at least {self.low:g}"
        return f'"auto" or a number {low} and at most {self.high:g}'

    def check(self, value: Any) -> Any:
        """The value as given ("auto" stays "auto"), or ValueError saying what was expected."""
        if self.kind == "choice":
            if not isinstance(value, str) or value not in self.choices:
                raise ValueError(self.expected)
            return value
        if value == "auto":
            return value
        if self.kind == "int":
            # integral floats (3.0) are what some JSON encoders send for 3
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if type(value) is not int:
                raise ValueError(self.expected)
        elif type(value) not in (int, float) or not math.isfinite(value):
            raise ValueError(self.expected)
        too_low = value <= self.low if self.low_open else value < self.low
        if too_low or value > self.high:
            raise ValueError(self.expected)
        return value


def _int(
    name: str, low: int, high: int, methods: frozenset[str], doc: str, **extra: Any
) -> Hyperparameter:
    return Hyperparameter(name, "int", methods, doc, low=low, high=high, **extra)


def _number(
    name: str, low: float, high: float, methods: frozenset[str], doc: str, **extra: Any
) -> Hyperparameter:
    return Hyperparameter(name, "number", methods, doc, low=low, high=high, **extra)


def _choice(
    name: str, choices: tuple[str, ...], methods: frozenset[str], doc: str, **extra: Any
) -> Hyperparameter:
    return Hyperparameter(name, "choice", methods, doc, choices=choices, **extra)


# OpenAI's names first, in the order the job echoes them, then our own knobs.
TABLE: tuple[Hyperparameter, ...] = (
    _int("batch_size", 1, 256, ALL, "prompts (or examples) per optimizer step",
         openai_methods=ALL),
    _number("learning_rate_multiplier", 0, 100, ALL,
            "times BASE_LEARNING_RATE; 100x gives 1e-2 to 2e-2, past where LoRA on a real "
            "model trains stably",
            low_open=True, openai_methods=ALL),
    _int("n_epochs", 1, 50, ALL, "passes over the training set", openai_methods=ALL),
    _number("compute_multiplier", 0.00001, 10, RFT,
            "scales the completions sampled per prompt (group_size = 8 x this)",
            low_open=True, openai_methods=RFT),
    _int("eval_interval", 1, 10_000, ALL,
         "training steps between evaluations; checkpoints are written at evaluations, so a "
         "longer gap would leave hours of training with nothing to resume from",
         openai_methods=RFT),
    _int("eval_samples", 1, 64, RFT,
         "completions per validation prompt at each evaluation; as many as the largest group",
         openai_methods=RFT),
    _choice("reasoning_effort", tuple(COMPLETION_TOKENS_BY_EFFORT), RFT,
            "sets the completion token budget (COMPLETION_TOKENS_BY_EFFORT)",
            openai_methods=RFT, echo_default="default"),
    _int("lora_rank", 1, 256, ALL, "rank of the LoRA adapter"),
    _number("lora_alpha", 0, 1024, ALL,
            "LoRA scale (the update is multiplied by alpha / rank); 1024 is 4x the largest "
            "rank, twice the usual alpha = 2 x rank", low_open=True),
    _int("group_size", 2, 64, RFT, "completions sampled per prompt"),
    _choice("loss_type", ("dapo", "grpo", "dr_grpo"), RFT,
            "how token losses are averaged (TRL's loss_type)"),
    _number("beta", 0, 10, RFT,
            "KL penalty coefficient; published runs use at most about 0.1, and 10 would pin "
            "the policy to the base model"),
    _number("beta", 0, 2, DPO,
            "DPO's temperature on the log-ratio to the base model (OpenAI's range, (0, 2]): "
            "higher keeps the policy closer to the base model",
            low_open=True, openai_methods=DPO),
    _number("temperature", 0, 2, RFT, "sampling temperature", low_open=True),
    _number("top_p", 0, 1, RFT, "nucleus sampling mass", low_open=True),
    _int("max_completion_tokens", 1, 4096, RFT, "most tokens per sampled completion"),
    _choice("scale_rewards", ("group", "batch", "none"), RFT,
            "what advantages are divided by: the group's reward std, the batch's, or nothing"),
    _int("num_iterations", 1, 16, RFT, "policy updates per batch of samples"),
    _number("epsilon", 0, 1, RFT, "PPO clip range", low_open=True),
    _number("epsilon_high", 0, 1, RFT, "upper clip range, if not epsilon", low_open=True),
    _int("sampling_rounds", 1, 16, RFT,
         "prompt batches sampled per step at most while groups lack signal"),
)  # fmt: skip
HYPERPARAMETERS = {row.name: row for row in TABLE}
# a name may have one row per method (beta: RFT's KL coefficient, DPO's temperature)
ROWS = {(method, row.name): row for row in TABLE for method in row.methods}


def accepted_hyperparameters(method: str) -> frozenset[str]:
    """The names `method` accepts."""
    return frozenset(row.name for row in TABLE if method in row.methods)


def echo_defaults(method: str) -> dict[str, Any]:
    """OpenAI's hyperparameters of `method` as a new job echoes them, before any is given."""
    return {row.name: row.echo_default for row in TABLE if method in row.openai_methods}


def check_hyperparameter(method: str, name: str, value: Any) -> Any:
    """`value` as given, checked against the table ("auto" stays "auto").

    Raises HyperparameterError with the message the API returns.
    """
    if name not in HYPERPARAMETERS:
        raise HyperparameterError(name, f"Unknown hyperparameter {name}.")
    row = ROWS.get((method, name))
    if row is None:
        methods = {m for other in TABLE if other.name == name for m in other.methods}
        only = " and ".join(sorted(methods))
        raise HyperparameterError(name, f"{name} applies to {only} fine-tuning only.")
    try:
        return row.check(value)
    except ValueError as expected:
        raise HyperparameterError(
            name, f"{name} must be {expected}; got {json.dumps(value)}."
        ) from None


@dataclass(frozen=True)
class Hyperparameters:
    """Every hyperparameter of a run, resolved.

    A supervised or DPO run carries the reinforcement-only fields too, at their defaults: it samples
    its validation completions with them when it is given a grader. `as_dict` leaves them out.
    """

    method: str
    batch_size: int
    n_epochs: int
    learning_rate_multiplier: float
    learning_rate: float  # BASE_LEARNING_RATE[method] * learning_rate_multiplier
    eval_interval: int
    lora_rank: int
    lora_alpha: float
    compute_multiplier: float
    reasoning_effort: str
    eval_samples: int
    group_size: int
    max_completion_tokens: int
    temperature: float
    top_p: float
    loss_type: str
    scale_rewards: str
    beta: float  # reinforcement: the KL coefficient; dpo: the temperature on the log-ratios
    num_iterations: int
    sampling_rounds: int
    epsilon: float
    epsilon_high: float

    def steps_per_epoch(self, n_train: int) -> int:
        return math.ceil(n_train / self.batch_size)

    def total_steps(self, n_train: int) -> int:
        return self.n_epochs * self.steps_per_epoch(n_train)

    def as_dict(self) -> dict[str, Any]:
        """The method's hyperparameters and the derived learning rate, for the job's echo and
        its events."""
        return {
            field.name: getattr(self, field.name)
            for field in fields(self)
            if field.name == "learning_rate" or (self.method, field.name) in ROWS
        }


def resolve_hyperparameters(
    method: str, given: Mapping[str, Any], n_train: int, n_valid: int
) -> Hyperparameters:
    """Every hyperparameter of `method`, with those not given ("auto" or None) chosen for the
    dataset's size.

    A few dozen prompts get ~64 GRPO steps (or ~24 SFT or DPO steps) of 4 prompts; `batch_size` never
    exceeds the number of training examples.
    """
    if method not in METHODS:
        raise HyperparameterError("method", f"method must be one of {', '.join(METHODS)}.")
    if n_train < 1:
        raise HyperparameterError("training_file", "The training file has no examples.")
    chosen = _chosen(method, given)
    batch_size = min(chosen.get("batch_size", min(4, max(1, n_train // 4))), n_train)
    per_epoch = math.ceil(n_train / batch_size)
    n_epochs = chosen.get("n_epochs", min(50, max(1, round(TARGET_STEPS[method] / per_epoch))))
    multiplier = chosen.get(
        "learning_rate_multiplier", _auto_multiplier(method, n_epochs * per_epoch)
    )
    lora_rank = chosen.get("lora_rank", 16)
    compute_multiplier = chosen.get("compute_multiplier", 1.0)
    effort = chosen.get("reasoning_effort", "default")
    epsilon = chosen.get("epsilon", 0.2)
    return Hyperparameters(
        method=method,
        batch_size=batch_size,
        n_epochs=n_epochs,
        learning_rate_multiplier=multiplier,
        # 12 significant digits: 3 x 1e-4 is 0.0003, not 0.00030000000000000003
        learning_rate=float(f"{BASE_LEARNING_RATE[method] * multiplier:.12g}"),
        # kept within the table's bound, so that the echoed value passes its check on resume
        eval_interval=chosen.get(
            "eval_interval",
            min(
                HYPERPARAMETERS["eval_interval"].high,
                max(1, math.ceil(n_epochs * per_epoch / TARGET_EVALUATIONS)),
            ),
        ),
        lora_rank=lora_rank,
        lora_alpha=chosen.get("lora_alpha", 2.0 * lora_rank),
        compute_multiplier=compute_multiplier,
        reasoning_effort=effort,
        eval_samples=chosen.get(
            "eval_samples", min(4, max(1, math.ceil(MIN_EVAL_COMPLETIONS / max(1, n_valid))))
        ),
        group_size=chosen.get(
            "group_size", min(64, max(2, round(DEFAULT_GROUP_SIZE * compute_multiplier)))
        ),
        max_completion_tokens=chosen.get(
            "max_completion_tokens", COMPLETION_TOKENS_BY_EFFORT[effort]
        ),
        temperature=chosen.get("temperature", 1.0),
        top_p=chosen.get("top_p", 1.0),
        loss_type=chosen.get("loss_type", "dapo"),
        scale_rewards=chosen.get("scale_rewards", "group"),
        beta=chosen.get("beta", DEFAULT_DPO_BETA if method == "dpo" else 0.0),
        num_iterations=chosen.get("num_iterations", 1),
        sampling_rounds=chosen.get("sampling_rounds", DEFAULT_SAMPLING_ROUNDS),
        epsilon=epsilon,
        epsilon_high=chosen.get("epsilon_high", epsilon),
    )


def _auto_multiplier(method: str, steps: int) -> float:
    """1 for a run of TARGET_STEPS or more; more for a shorter RL run (see
    SHORT_RUN_MAX_MULTIPLIER), rounded to two decimals as the job echoes it."""
    if method != "reinforcement" or steps >= TARGET_STEPS[method]:
        return 1.0
    return round(min(SHORT_RUN_MAX_MULTIPLIER, math.sqrt(TARGET_STEPS[method] / steps)), 2)


def resolve_warm_start(
    given: Mapping[str, Any], reinforcement: Hyperparameters, n_train: int
) -> Hyperparameters:
    """The supervised phase before RL (`method.reinforcement.warm_start`): `given` holds any of
    WARM_START_HYPERPARAMETERS; the rest is chosen for a short phase (about
    WARM_START_TARGET_STEPS steps). Validation samples as the RL phase does, so that the two
    phases' validation rewards compare."""
    chosen = {name: given[name] for name in WARM_START_HYPERPARAMETERS if name in given}
    if "n_epochs" not in chosen or chosen["n_epochs"] == "auto":
        batch_size = chosen.get("batch_size", "auto")
        if batch_size == "auto":
            batch_size = min(4, max(1, n_train // 4))
        per_epoch = math.ceil(n_train / min(batch_size, n_train))
        chosen["n_epochs"] = max(1, round(WARM_START_TARGET_STEPS / per_epoch))
    supervised = resolve_hyperparameters("supervised", chosen, n_train, 1)
    return replace(
        reinforcement,
        method="supervised",
        batch_size=supervised.batch_size,
        n_epochs=supervised.n_epochs,
        learning_rate_multiplier=supervised.learning_rate_multiplier,
        learning_rate=supervised.learning_rate,
    )


def _chosen(method: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """The values given for `method`, checked; "auto" and None count as not given."""
    chosen = {}
    for name, value in given.items():
        if value is None:
            continue
        checked = check_hyperparameter(method, name, value)
        if checked != "auto":
            chosen[name] = float(checked) if ROWS[(method, name)].kind == "number" else checked
    return chosen
