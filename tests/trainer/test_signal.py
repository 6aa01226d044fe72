"""The learning signal made visible: the share of samples at the grader's top score and the
completion length per step, and the grades of the model RL starts from, said in plain words
when the top score was never sampled."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.trainer.job import train
from worker.trainer.signal import GradeDistribution, top_score, top_share

from .conftest import CONTAINS_E
from .reporting import RecordingReporter
from .test_train import FAST, read_csv, spec_for, store_in

# rewards 0 or 0.5: groups differ, so RL has a signal, but the top score 1 is out of reach
HALF_CREDIT_AT_MOST = {
    "type": "multi",
    "name": "half_e",
    "graders": {"e": CONTAINS_E},
    "calculate_output": "0.5 * e",
}


def test_top_score_is_one_or_the_top_of_a_score_model_range() -> None:
    assert top_score(CONTAINS_E) == 1.0
    assert top_score(HALF_CREDIT_AT_MOST) == 1.0
    assert top_score({"type": "score_model", "range": [0, 10]}) == 10.0


def test_top_share_counts_rewards_at_the_top() -> None:
    assert top_share([1.0, 0.5, 1.0, 0.0], 1.0) == 0.5
    assert top_share([0.9999999999, 0.3], 1.0) == 0.5
    assert top_share([], 1.0) == 0.0


def test_grade_distribution_by_hand() -> None:
    # two prompts of three completions: the first group all 0, the second differs
    distribution = GradeDistribution.of([0.0, 0.0, 0.0, 0.1, 0.6, 1.0], 3, 1.0)
    assert distribution.samples == 6 and distribution.prompts == 2
    assert distribution.groups_with_signal == 1
    assert distribution.top_share == pytest.approx(1 / 6)
    assert distribution.reward_mean == pytest.approx(1.7 / 6)
    assert distribution.buckets == {
        "0": 3,
        "0-0.25": 1,
        "0.25-0.5": 0,
        "0.5-0.75": 1,
        "0.75-1": 0,
        "1": 1,
    }
    assert distribution.describe("m")[0] == "info"


def test_every_step_reports_the_share_at_top_score_and_the_length(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    reporter = RecordingReporter()
    store = store_in(tmp_path)
    spec = spec_for(tiny_model_dir, tmp_path, FAST | {"n_epochs": 1, "eval_interval": 2})
    train(spec, reporter, store)
    for data in reporter.steps:
        # CONTAINS_E gives 0 or 1, so the share at the top is the mean reward
        assert data["train_reward_top_share"] == pytest.approx(data["train_reward_mean"])
        assert data["completions/mean_length"] == data["completion_tokens_mean"]
        assert "at top score=" in reporter.messages[data["step"] - 1]
    last = reporter.steps[-1]
    assert last["valid_reward_top_share"] == pytest.approx(last["valid_reward_mean"])
    rows = read_csv(tmp_path / "metrics.csv")
    assert [float(row["train_reward_top_share"] or "nan") for row in rows[1:]] == [
        pytest.approx(data["train_reward_top_share"]) for data in reporter.steps
    ]
    assert float(rows[0]["valid_reward_top_share"]) == pytest.approx(
        float(rows[0]["valid_reward_mean"])
    )
    checkpoint = store.list()[-1]
    assert checkpoint.metrics["train_reward_top_share"] == last["train_reward_top_share"]
    assert checkpoint.metrics["completions/mean_length"] == last["completions/mean_length"]


def test_first_step_reports_the_grades_of_the_model_it_starts_from(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    reporter = RecordingReporter()
    spec = spec_for(tiny_model_dir, tmp_path, FAST | {"n_epochs": 1})
    train(spec, reporter, store_in(tmp_path))
    reports = [(level, data) for level, _, data in reporter.events if data and "base_model" in data]
    assert len(reports) == 1
    level, data = reports[0]
    grades = data["base_model"]
    # step 1's own 4 prompts x 8 samples, reused; the top score turned up among them
    assert grades["samples"] == 32 and grades["prompts"] == 4
    assert grades["top_share"] == pytest.approx(reporter.steps[0]["train_reward_top_share"])
    assert level == "info"
    assert reporter.steps[0]["base_model"] == grades
    assert "base_model" not in reporter.steps[1]


def test_a_top_score_never_sampled_is_said_before_training_goes_on(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    reporter = RecordingReporter()
    spec = spec_for(tiny_model_dir, tmp_path, FAST | {"n_epochs": 1}, grader=HALF_CREDIT_AT_MOST)
    result = train(spec, reporter, store_in(tmp_path))
    assert result.status == "completed"
    [(message, data)] = [(m, d) for _, m, d in reporter.events if d and "base_model" in d]
    grades = data["base_model"]
    # none of step 1's 32 samples reached 1, so the other 4 training prompts were tried too
    assert grades["samples"] == 64 and grades["top_share"] == 0.0
    assert grades["groups_with_signal"] > 0
    warning = next(w for w in reporter.warnings() if "cannot reinforce what it never samples" in w)
    assert warning == message
    assert "worked example" in warning and "larger base model" in warning
    assert "warm_start" in warning
    assert reporter.steps[0]["base_model"]["top_share"] == 0.0
