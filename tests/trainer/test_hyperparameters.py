"""Resolution of OpenAI's hyperparameters ("auto" included) and the trainer's knobs."""

from __future__ import annotations

import subprocess
import sys

import pytest

from worker.trainer.hyperparameters import (
    HyperparameterError,
    resolve_hyperparameters,
    total_steps,
)


def test_auto_for_a_few_dozen_examples() -> None:
    hp = resolve_hyperparameters("reinforcement", {"n_epochs": "auto"}, n_train=32, n_valid=16)
    assert hp["batch_size"] == 4
    assert hp["n_epochs"] == 8
    assert total_steps(hp, 32) == 64
    assert hp["eval_interval"] == 8
    assert hp["eval_samples"] == 2  # 16 validation prompts x 2 >= 32 completions
    assert hp["group_size"] == 8
    assert hp["max_completion_tokens"] == 64
    assert hp["learning_rate"] == pytest.approx(1e-4)
    assert (hp["loss_type"], hp["scale_rewards"], hp["beta"]) == ("dapo", "group", 0.0)
    assert hp["num_iterations"] == 1
    assert hp["sampling_rounds"] == 1


def test_large_dataset_gets_one_epoch() -> None:
    hp = resolve_hyperparameters("reinforcement", {}, n_train=2000, n_valid=100)
    assert hp["n_epochs"] == 1
    assert total_steps(hp, 2000) == 500
    assert hp["eval_samples"] == 1


def test_explicit_values_are_kept() -> None:
    given = {"batch_size": 2, "n_epochs": 3, "learning_rate_multiplier": 2.5, "eval_interval": 5}
    hp = resolve_hyperparameters("reinforcement", given, n_train=10, n_valid=5)
    assert (hp["batch_size"], hp["n_epochs"], hp["eval_interval"]) == (2, 3, 5)
    assert hp["learning_rate"] == pytest.approx(2.5e-4)


def test_compute_multiplier_scales_group_size() -> None:
    def group(value: float) -> int:
        return resolve_hyperparameters("reinforcement", {"compute_multiplier": value}, 10, 5)[
            "group_size"
        ]

    assert group(2) == 16
    assert group(0.5) == 4
    assert group(0.01) == 2
    assert group(10) == 64
    explicit = {"compute_multiplier": 2, "group_size": 6}
    assert resolve_hyperparameters("reinforcement", explicit, 10, 5)["group_size"] == 6


def test_reasoning_effort_sets_the_token_budget() -> None:
    def budget(given: dict) -> int:
        return resolve_hyperparameters("reinforcement", given, 10, 5)["max_completion_tokens"]

    assert budget({"reasoning_effort": "low"}) == 32
    assert budget({"reasoning_effort": "high"}) == 128
    assert budget({"reasoning_effort": "high", "max_completion_tokens": 24}) == 24


def test_batch_size_never_exceeds_the_training_set() -> None:
    hp = resolve_hyperparameters("reinforcement", {"batch_size": 64}, n_train=12, n_valid=4)
    assert hp["batch_size"] == 12


@pytest.mark.parametrize(
    ("given", "param"),
    [
        ({"n_epochs": 0}, "n_epochs"),
        ({"batch_size": 1.5}, "batch_size"),
        ({"learning_rate_multiplier": -1}, "learning_rate_multiplier"),
        ({"loss_type": "ppo"}, "loss_type"),
        ({"reasoning_effort": "extreme"}, "reasoning_effort"),
        ({"group_size": 1}, "group_size"),
        ({"warmup": 3}, "warmup"),
    ],
)
def test_bad_values_name_the_parameter(given: dict, param: str) -> None:
    with pytest.raises(HyperparameterError) as raised:
        resolve_hyperparameters("reinforcement", given, 10, 5)
    assert raised.value.param == param


def test_supervised_has_its_own_set() -> None:
    hp = resolve_hyperparameters("supervised", {}, n_train=32, n_valid=8)
    assert hp["learning_rate"] == pytest.approx(2e-4)
    assert total_steps(hp, 32) == 24
    assert "group_size" not in hp
    with pytest.raises(HyperparameterError):
        resolve_hyperparameters("supervised", {"group_size": 4}, 32, 8)


def test_resolution_imports_no_torch() -> None:
    code = (
        "import sys\n"
        "from worker.trainer.hyperparameters import resolve_hyperparameters\n"
        "resolve_hyperparameters('reinforcement', {}, 10, 5)\n"
        "print('torch' in sys.modules)\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert output.stdout.strip() == "False"
