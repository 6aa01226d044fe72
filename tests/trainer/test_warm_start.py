"""A supervised warm start on a dataset field, then RL, as one run."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.trainer.job import train
from worker.trainer.spec import WarmStart

from .conftest import question_rows
from .reporting import RecordingReporter
from .test_signal import HALF_CREDIT_AT_MOST
from .test_train import FAST, read_csv, spec_for, store_in

# the answer "e" scores 0.5 under HALF_CREDIT_AT_MOST; the grader never gives 1
ROWS = question_rows(8, letter="e", answer="e")


def warm_spec(tiny_model_dir: Path, tmp_path: Path, warm: dict) -> object:
    spec = spec_for(
        tiny_model_dir,
        tmp_path,
        FAST | {"n_epochs": 1, "eval_interval": 2},
        train_rows=ROWS,
        valid_rows=ROWS[:4],
        grader=HALF_CREDIT_AT_MOST,
    )
    warm_start = WarmStart.resolve(warm, spec.hyperparameters, len(ROWS))
    return type(spec)(**{**spec.__dict__, "warm_start": warm_start})


def test_warm_start_then_reinforcement_in_one_run(tiny_model_dir: Path, tmp_path: Path) -> None:
    reporter = RecordingReporter()
    store = store_in(tmp_path)
    warm = {"field": "answer", "n_epochs": 2, "batch_size": 4, "learning_rate_multiplier": 50}
    result = train(warm_spec(tiny_model_dir, tmp_path, warm), reporter, store)
    assert result.status == "completed"
    # 2 supervised epochs of 8 rows in batches of 4, then 2 RL steps
    assert result.total_steps == 6
    phases = [data["phase"] for data in reporter.steps]
    assert phases == ["warm_start"] * 4 + ["reinforcement"] * 2
    assert all("train_loss" in data for data in reporter.steps[:4])
    assert all("train_reward_mean" in data for data in reporter.steps[4:])
    assert reporter.messages[0].startswith("Warm start (supervised): Step 1/6")
    announced = [m for _, m, d in reporter.events if d and "warm_start" in d]
    assert announced and '"answer" as the answer' in announced[0]
    # evaluated where the warm start ends and at the end; the rewards compare with the baseline
    baseline = next(d for _, m, d in reporter.events if m.startswith("Validation before"))
    evaluated = {
        data["step"]: data["valid_reward_mean"]
        for data in reporter.steps
        if "valid_reward_mean" in data
    }
    assert sorted(evaluated) == [4, 6]
    # the supervised steps taught the answer "e" (0.5): nearly every validation sample has it
    assert evaluated[4] > baseline["valid_reward_mean"] + 0.1
    assert evaluated[4] >= 0.45
    # the grades RL starts from are those of the warm-started model, at its first step
    [(level, message)] = [(lv, m) for lv, m, d in reporter.events if d and "base_model" in d]
    assert "after the warm start" in message and level == "warn"
    assert "base_model" in reporter.steps[4]
    assert reporter.steps[4]["learning_rate"] == pytest.approx(
        FAST["learning_rate_multiplier"] * 1e-4
    )
    rows = read_csv(tmp_path / "metrics.csv")
    assert [row["phase"] for row in rows[1:]] == phases
    assert sorted(c.step for c in store.list()) == [4, 6]
