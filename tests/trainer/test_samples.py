"""The graded completions a run reports for people to read: bounded, whole groups, with the
reward and each sub-grader's score."""

from __future__ import annotations

from pathlib import Path

from app.graders import GradeResult
from worker.trainer.data import DataOrder
from worker.trainer.job import train
from worker.trainer.samples import kept_samples, shown_prompt, spread

from .conftest import CONTAINS_E, question_rows
from .reporting import RecordingReporter
from .test_train import FAST, spec_for, store_in

# "e" in the answer, and how close the answer is to "e": a multi grader with two sub-scores
MULTI = {
    "type": "multi",
    "name": "e_and_close",
    "graders": {
        "contains": CONTAINS_E | {"name": "contains"},
        "close": {
            "type": "text_similarity",
            "name": "close",
            "input": "{{sample.output_text}}",
            "reference": "{{item.letter}}",
            "evaluation_metric": "fuzzy_match",
        },
    },
    "calculate_output": "0.5 * contains + 0.5 * close",
}


def test_spread_picks_evenly_from_lowest_to_highest() -> None:
    values = [0.5, 0.1, 0.9, 0.3, 0.7]  # ranked: 1, 3, 0, 4, 2
    assert spread(values, 2) == [1, 2]
    assert spread(values, 3) == [0, 1, 2]
    assert spread(values, 1) == [0]  # the median
    assert spread(values, 9) == [0, 1, 2, 3, 4]


def _results(rewards: list[float]) -> list[GradeResult]:
    return [GradeResult(name="g", type="string_check", reward=r) for r in rewards]


def test_whole_groups_spread_over_mean_rewards_are_kept() -> None:
    # four groups of two; group means 0.5, 0.0, 1.0, 0.25
    rewards = [1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.5, 0.0]
    texts = [f"t{i}" for i in range(8)]
    prompts = [[{"role": "user", "content": f"p{g}"}] for g in range(4)]
    references = [{"n": g} for g in range(4)]
    kept = kept_samples(texts, _results(rewards), 2, prompts, references, bound=5)
    # 5 // 2 = two groups: the lowest mean (group 1) and the highest (group 2)
    assert [(s["group"], s["completion"], s["reward"]) for s in kept] == [
        (1, "t2", 0.0),
        (1, "t3", 0.0),
        (2, "t4", 1.0),
        (2, "t5", 1.0),
    ]
    assert kept[0]["prompt"] == [{"role": "user", "content": "p1"}]
    assert kept[0]["reference"] == {"n": 1} and kept[0]["sub_rewards"] is None
    assert kept_samples(texts, _results(rewards), 2, prompts, references, bound=0) == []
    # a group bigger than the bound: the median group, cut to the bound over its rewards
    groups_of_four = kept_samples(texts, _results(rewards), 4, prompts[:2], references[:2], 2)
    assert [(s["group"], s["completion"]) for s in groups_of_four] == [(0, "t0"), (0, "t1")]


def test_a_run_reports_bounded_graded_samples_with_sub_scores(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    rows = question_rows(8, letter="e")
    valid_rows = question_rows(4, letter="e")[::-1]  # validation prompts in another order
    hp = FAST | {"n_epochs": 1, "group_size": 2, "eval_interval": 1, "eval_samples": 2,
                 "max_completion_tokens": 3}  # fmt: skip
    spec = spec_for(
        tiny_model_dir, tmp_path, hp, grader=MULTI, train_rows=rows, valid_rows=valid_rows,
        samples_per_step=4,
    )  # fmt: skip
    reporter = RecordingReporter()
    assert train(spec, reporter, store_in(tmp_path)).status == "completed"

    # the baseline's validation, then each step's batch and validation before its metrics
    assert reporter.calls == [
        ("validation", 0),
        ("train", 1), ("validation", 1), ("step", 1),
        ("train", 2), ("validation", 2), ("step", 2),
    ]  # fmt: skip
    order = DataOrder(len(rows), 4, seed=0)
    for step, split, samples in reporter.samples:
        # four completions of eight: two whole groups of two
        assert len(samples) == 4
        groups = [sample["group"] for sample in samples]
        assert len(set(groups)) == 2 and all(groups.count(g) == 2 for g in groups)
        for sample in samples:
            source = valid_rows if split == "validation" else rows
            index = (
                sample["group"]
                if split == "validation"
                else order.indices(step - 1)[sample["group"]]
            )
            assert sample["prompt"] == source[index]["messages"]
            assert sample["reference"] == {"letter": "e"}
            sub = sample["sub_rewards"]
            assert set(sub) == {"contains", "close"}
            # each sub-score belongs to this completion, and the reward is the formula's
            assert sub["contains"] == (1.0 if "e" in sample["completion"] else 0.0)
            assert 0.0 <= sub["close"] <= 1.0
            assert abs(sample["reward"] - (0.5 * sub["contains"] + 0.5 * sub["close"])) < 1e-9


def test_supervised_and_a_zero_bound_report_no_samples(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    rows = [
        {"messages": [{"role": "user", "content": f"Say e {i}"},
                      {"role": "assistant", "content": "e"}], "letter": "e"}
        for i in range(4)
    ]  # fmt: skip
    supervised = RecordingReporter()
    spec = spec_for(
        tiny_model_dir, tmp_path / "sft", {"n_epochs": 1, "batch_size": 4},
        method="supervised", train_rows=rows, valid_rows=rows[:2], grader=CONTAINS_E,
    )  # fmt: skip
    train(spec, supervised, store_in(tmp_path / "sft"))
    assert supervised.steps and supervised.samples == []

    off = RecordingReporter()
    hp = FAST | {"n_epochs": 1, "group_size": 2, "max_completion_tokens": 1}
    spec = spec_for(tiny_model_dir, tmp_path / "off", hp, samples_per_step=0)
    train(spec, off, store_in(tmp_path / "off"))
    assert off.steps and off.samples == []


def test_the_shown_prompt_keeps_tool_calls_and_their_results() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    row = {
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Go."}]},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c1", "content": "done"},
            {"role": "user", "content": "And?"},
        ],
        "tools": [{"type": "function", "function": {"name": "f"}}],
    }
    assert shown_prompt(row) == [
        {"role": "user", "content": "Go."},
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "content": "done", "tool_call_id": "c1"},
        {"role": "user", "content": "And?"},
    ]
