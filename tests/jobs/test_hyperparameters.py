"""The hyperparameter table: resolution of OpenAI's names ("auto" included) and our knobs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from app.jobs.hyperparameters import (
    HYPERPARAMETERS,
    TABLE,
    HyperparameterError,
    accepted_hyperparameters,
    resolve_hyperparameters,
    resolve_warm_start,
)

# what the trainer resolved before the table existed, for these inputs
# supervised runs no longer echo max_completion_tokens: only reinforcement accepts it
RESOLVED_BEFORE = [
    (
        ("reinforcement", {}, 32, 16),
        {"batch_size": 4, "n_epochs": 8, "learning_rate_multiplier": 1.0, "learning_rate": 0.0001,
         "eval_interval": 8, "lora_rank": 16, "lora_alpha": 32.0, "compute_multiplier": 1.0,
         "reasoning_effort": "default", "eval_samples": 2, "group_size": 8,
         "max_completion_tokens": 64, "temperature": 1.0, "top_p": 1.0, "loss_type": "dapo",
         "scale_rewards": "group", "beta": 0.0, "num_iterations": 1, "sampling_rounds": 1,
         "epsilon": 0.2, "epsilon_high": 0.2},
    ),
    (
        ("reinforcement", {"batch_size": 8, "lora_alpha": 16, "reasoning_effort": "high"}, 2000, 100),
        {"batch_size": 8, "n_epochs": 1, "learning_rate_multiplier": 1.0, "learning_rate": 0.0001,
         "eval_interval": 32, "lora_rank": 16, "lora_alpha": 16.0, "compute_multiplier": 1.0,
         "reasoning_effort": "high", "eval_samples": 1, "group_size": 8,
         "max_completion_tokens": 128, "temperature": 1.0, "top_p": 1.0, "loss_type": "dapo",
         "scale_rewards": "group", "beta": 0.0, "num_iterations": 1, "sampling_rounds": 1,
         "epsilon": 0.2, "epsilon_high": 0.2},
    ),
    (
        ("supervised", {}, 32, 8),
        {"batch_size": 4, "n_epochs": 3, "learning_rate_multiplier": 1.0, "learning_rate": 0.0002,
         "eval_interval": 3, "lora_rank": 16, "lora_alpha": 32.0},
    ),
    (
        ("supervised", {"n_epochs": 2, "learning_rate_multiplier": 2}, 5, 0),
        {"batch_size": 1, "n_epochs": 2, "learning_rate_multiplier": 2.0, "learning_rate": 0.0004,
         "eval_interval": 2, "lora_rank": 16, "lora_alpha": 32.0},
    ),
]  # fmt: skip


@pytest.mark.parametrize(("inputs", "expected"), RESOLVED_BEFORE)
def test_as_dict_is_the_resolved_echo(inputs: tuple, expected: dict) -> None:
    resolved = resolve_hyperparameters(*inputs).as_dict()
    # the same keys in the same order, and the same JSON (3 stays 3, 32.0 stays 32.0)
    assert json.dumps(resolved) == json.dumps(expected)


def test_auto_for_a_few_dozen_examples() -> None:
    hp = resolve_hyperparameters("reinforcement", {"n_epochs": "auto"}, n_train=32, n_valid=16)
    assert hp.batch_size == 4
    assert hp.n_epochs == 8
    assert hp.total_steps(32) == 64
    assert hp.eval_interval == 8
    assert hp.eval_samples == 2  # 16 validation prompts x 2 >= 32 completions
    assert hp.group_size == 8
    assert hp.max_completion_tokens == 64
    assert hp.learning_rate == pytest.approx(1e-4)
    assert (hp.loss_type, hp.scale_rewards, hp.beta) == ("dapo", "group", 0.0)
    assert hp.num_iterations == 1
    assert hp.sampling_rounds == 1


def test_large_dataset_gets_one_epoch() -> None:
    hp = resolve_hyperparameters("reinforcement", {}, n_train=2000, n_valid=100)
    assert hp.n_epochs == 1
    assert hp.total_steps(2000) == 500
    assert hp.eval_samples == 1


def test_explicit_values_are_kept() -> None:
    given = {"batch_size": 2, "n_epochs": 3, "learning_rate_multiplier": 2.5, "eval_interval": 5}
    hp = resolve_hyperparameters("reinforcement", given, n_train=10, n_valid=5)
    assert (hp.batch_size, hp.n_epochs, hp.eval_interval) == (2, 3, 5)
    assert hp.learning_rate == pytest.approx(2.5e-4)


def test_auto_and_none_count_as_not_given() -> None:
    given = {"batch_size": "auto", "group_size": None, "reasoning_effort": "default"}
    assert resolve_hyperparameters("reinforcement", given, 10, 5) == resolve_hyperparameters(
        "reinforcement", {}, 10, 5
    )


def test_compute_multiplier_scales_group_size() -> None:
    def group(value: float) -> int:
        return resolve_hyperparameters(
            "reinforcement", {"compute_multiplier": value}, 10, 5
        ).group_size

    assert group(2) == 16
    assert group(0.5) == 4
    assert group(0.01) == 2
    assert group(10) == 64
    explicit = {"compute_multiplier": 2, "group_size": 6}
    assert resolve_hyperparameters("reinforcement", explicit, 10, 5).group_size == 6


def test_reasoning_effort_sets_the_token_budget() -> None:
    def budget(given: dict) -> int:
        return resolve_hyperparameters("reinforcement", given, 10, 5).max_completion_tokens

    assert budget({"reasoning_effort": "low"}) == 32
    assert budget({"reasoning_effort": "high"}) == 128
    assert budget({"reasoning_effort": "high", "max_completion_tokens": 24}) == 24


def test_batch_size_never_exceeds_the_training_set() -> None:
    hp = resolve_hyperparameters("reinforcement", {"batch_size": 64}, n_train=12, n_valid=4)
    assert hp.batch_size == 12


@pytest.mark.parametrize(
    ("given", "param"),
    [
        ({"n_epochs": 0}, "n_epochs"),
        ({"batch_size": 1.5}, "batch_size"),
        ({"learning_rate_multiplier": -1}, "learning_rate_multiplier"),
        ({"learning_rate_multiplier": 101}, "learning_rate_multiplier"),
        ({"beta": 11}, "beta"),
        ({"loss_type": "ppo"}, "loss_type"),
        ({"loss_type": "auto"}, "loss_type"),
        ({"reasoning_effort": "extreme"}, "reasoning_effort"),
        ({"group_size": 1}, "group_size"),
        ({"warmup": 3}, "warmup"),
    ],
)
def test_bad_values_name_the_parameter(given: dict, param: str) -> None:
    with pytest.raises(HyperparameterError) as raised:
        resolve_hyperparameters("reinforcement", given, 10, 5)
    assert raised.value.param == param


def test_errors_read_as_the_api_says_them() -> None:
    with pytest.raises(HyperparameterError) as raised:
        resolve_hyperparameters("reinforcement", {"batch_size": 0}, 10, 5)
    assert raised.value.message == 'batch_size must be "auto" or an integer from 1 to 256; got 0.'
    with pytest.raises(HyperparameterError) as raised:
        resolve_hyperparameters("supervised", {"group_size": 4}, 10, 5)
    assert raised.value.message == "group_size applies to reinforcement fine-tuning only."


def test_supervised_has_its_own_set() -> None:
    hp = resolve_hyperparameters("supervised", {}, n_train=32, n_valid=8)
    assert hp.learning_rate == pytest.approx(2e-4)
    assert hp.total_steps(32) == 24
    assert "group_size" not in hp.as_dict()
    assert accepted_hyperparameters("supervised") == {
        "batch_size",
        "learning_rate_multiplier",
        "n_epochs",
        "eval_interval",
        "lora_rank",
        "lora_alpha",
    }
    assert accepted_hyperparameters("reinforcement") == {row.name for row in TABLE}


def test_dpo_has_its_own_set_and_beta() -> None:
    hp = resolve_hyperparameters("dpo", {}, n_train=32, n_valid=8)
    assert hp.beta == 0.1 and hp.learning_rate == pytest.approx(5e-5)
    assert hp.total_steps(32) == 24
    assert hp.as_dict() == {
        "batch_size": 4, "n_epochs": 3, "learning_rate_multiplier": 1.0, "learning_rate": 5e-5,
        "eval_interval": 3, "lora_rank": 16, "lora_alpha": 32.0, "beta": 0.1,
    }  # fmt: skip
    assert resolve_hyperparameters("dpo", {"beta": 2}, 32, 8).beta == 2.0
    # the same name, RFT's own row: a KL coefficient from 0 to 10
    assert resolve_hyperparameters("reinforcement", {"beta": 5}, 32, 8).beta == 5.0
    with pytest.raises(HyperparameterError) as raised:
        resolve_hyperparameters("dpo", {"beta": 5}, 32, 8)
    assert raised.value.message == (
        'beta must be "auto" or a number greater than 0 and at most 2; got 5.'
    )
    with pytest.raises(HyperparameterError) as raised:
        resolve_hyperparameters("supervised", {"beta": 0.1}, 32, 8)
    assert raised.value.message == "beta applies to dpo and reinforcement fine-tuning only."


def test_every_number_has_bounds() -> None:
    numbers = [row for row in TABLE if row.kind != "choice"]
    unbounded_before = {
        "eval_interval",
        "eval_samples",
        "learning_rate_multiplier",
        "lora_alpha",
        "beta",
    }
    assert unbounded_before <= {row.name for row in numbers}
    for row in numbers:
        assert row.low < row.high, row.name
        assert f"{row.high:g}" in row.expected, row.name
        row.check(row.high)
        with pytest.raises(ValueError):
            row.check(row.high + 1)


def test_resolution_imports_no_torch() -> None:
    code = (
        "import sys\n"
        "from app.jobs.hyperparameters import resolve_hyperparameters\n"
        "resolve_hyperparameters('reinforcement', {}, 10, 5)\n"
        "print('torch' in sys.modules)\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert output.stdout.strip() == "False"


def test_an_auto_eval_interval_stays_within_its_bound() -> None:
    resolved = resolve_hyperparameters(
        "reinforcement", {"n_epochs": 50, "batch_size": 1}, n_train=2000, n_valid=10
    )
    assert resolved.eval_interval == HYPERPARAMETERS["eval_interval"].high
    # the echo passes the table again, as a resume resolves it
    echo = {k: v for k, v in resolved.as_dict().items() if k != "learning_rate"}
    again = resolve_hyperparameters("reinforcement", echo, n_train=2000, n_valid=10)
    assert again.eval_interval == resolved.eval_interval


def test_auto_learning_rate_grows_for_short_reinforcement_runs() -> None:
    """A run of about 64 steps or more keeps 1x; a shorter one steps harder, up to 3x, as the
    learning suite measured; a given multiplier, and other methods, are left alone."""
    full = resolve_hyperparameters("reinforcement", {}, 32, 16)
    assert full.n_epochs * 8 == 64 and full.learning_rate_multiplier == 1.0
    eight = resolve_hyperparameters("reinforcement", {"n_epochs": 1}, 32, 16)
    assert eight.learning_rate_multiplier == pytest.approx(2.83)
    assert eight.learning_rate == pytest.approx(2.83e-4)
    two = resolve_hyperparameters("reinforcement", {"n_epochs": 1}, 8, 4)
    assert two.learning_rate_multiplier == 3.0
    assert two.learning_rate == 0.0003  # as echoed, not 0.00030000000000000003
    given = resolve_hyperparameters(
        "reinforcement", {"n_epochs": 1, "learning_rate_multiplier": 1}, 32, 16
    )
    assert given.learning_rate_multiplier == 1.0
    supervised = resolve_hyperparameters("supervised", {"n_epochs": 1}, 32, 16)
    assert supervised.learning_rate_multiplier == 1.0


def test_an_auto_warm_start_is_one_short_pass_over_a_few_dozen_answers() -> None:
    """More passes over the same answers cost the model what it knew (the learning suite's
    short-answer task); a large dataset still gets one whole pass, a given count is kept."""
    rl = resolve_hyperparameters("reinforcement", {}, 32, 16)
    warm = resolve_warm_start({"field": "answer"}, rl, 32)
    assert (warm.method, warm.batch_size, warm.n_epochs) == ("supervised", 4, 1)
    assert warm.total_steps(32) == 8
    assert warm.learning_rate == pytest.approx(2e-4)
    assert resolve_warm_start({"field": "answer"}, rl, 8).total_steps(8) == 8  # 2 passes of 4
    assert resolve_warm_start({"field": "answer"}, rl, 2000).n_epochs == 1
    assert resolve_warm_start({"field": "answer", "n_epochs": 3}, rl, 32).n_epochs == 3
