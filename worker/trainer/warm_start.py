"""A short supervised phase, then RL, as one run (`method.reinforcement.warm_start`).

RL reinforces only what the model samples. When the answer the grader scores fully is one the
model never gives (a bare name where it always writes a sentence), a few supervised steps on
the reference answers put it within reach, and RL goes on from there.

Steps 1..S train on the rows with the named field as the assistant's answer (the supervised
method, at its own learning rate); steps S+1.. are GRPO steps, which count their data order
and sampling seeds from 1 as a run without the warm start would. The optimizer's moments are
reset where RL begins: they describe the supervised loss's gradients, not the policy's.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import torch

from worker.trainer.methods import Reinforcement, StepReport, Supervised

PHASE_WARM_START = "warm_start"
PHASE_REINFORCEMENT = "reinforcement"


def answered_rows(rows: Sequence[dict[str, Any]], field: str) -> list[dict[str, Any]]:
    """The rows with `field` appended as the assistant's answer (as text; other values as
    JSON)."""
    answered = []
    for row in rows:
        value = row[field]
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        messages = [*row["messages"], {"role": "assistant", "content": text}]
        answered.append({**row, "messages": messages})
    return answered


class WarmStarted:
    """The supervised phase's steps, then the reinforcement phase's, behind the one interface
    the training loop uses."""

    def __init__(
        self,
        supervised: Supervised,
        reinforcement: Reinforcement,
        warm_steps: int,
        optimizer: torch.optim.Optimizer,
        learning_rates: tuple[float, float],  # (supervised, reinforcement)
        eval_interval: int,
    ) -> None:
        self.supervised = supervised
        self.reinforcement = reinforcement
        self.warm_steps = warm_steps
        self.optimizer = optimizer
        self.learning_rates = learning_rates
        self.eval_interval = eval_interval
        self.step = 0  # the latest step trained; evaluate() describes the weights after it

    def in_warm_start(self, step: int) -> bool:
        return 0 < step <= self.warm_steps

    def evaluates_at(self, step: int, total_steps: int) -> bool:
        """At the end of the warm start, then every `eval_interval` RL steps and at the end."""
        rl_step = step - self.warm_steps
        return (
            step == self.warm_steps
            or step == total_steps
            or (rl_step > 0 and rl_step % self.eval_interval == 0)
        )

    def _set_learning_rate(self, rate: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = rate

    def train_step(self, step: int) -> StepReport:
        self.step = step
        if self.in_warm_start(step):
            self._set_learning_rate(self.learning_rates[0])
            return self.supervised.train_step(step)
        if step == self.warm_steps + 1:
            self.optimizer.state.clear()
        self._set_learning_rate(self.learning_rates[1])
        return self.reinforcement.train_step(step - self.warm_steps)

    def evaluate(self) -> dict[str, Any]:
        """The validation reward RL is judged by, in both phases (and before either); in the
        warm start also the supervised validation loss, where validation rows hold the field."""
        rewards = self.reinforcement.evaluate()
        if not self.in_warm_start(self.step):
            return rewards
        return self.supervised.evaluate() | {
            "valid_reward_mean": rewards["reward_mean"],
            "valid_reward_top_share": rewards["reward_top_share"],
            "rewards": rewards,
        }

    def validation_samples(self) -> list[dict[str, Any]]:
        return self.reinforcement.validation_samples()

    def event(
        self, step: int, total_steps: int, report: StepReport, valid: dict[str, Any] | None
    ) -> tuple[str, dict[str, Any]]:
        if self.in_warm_start(step):
            message, data = self.supervised.event(step, total_steps, report, valid)
            data["phase"] = PHASE_WARM_START
            return f"Warm start (supervised): {message}", data
        message, data = self.reinforcement.event(step, total_steps, report, valid)
        data["phase"] = PHASE_REINFORCEMENT
        return message, data

    def score(self, valid: dict[str, Any]) -> float | None:
        if "rewards" in valid or "full_valid_loss" in valid:
            return self.supervised.score(valid)
        return self.reinforcement.score(valid)
