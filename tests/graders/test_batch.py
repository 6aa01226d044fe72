from __future__ import annotations

from dataclasses import replace

import pytest

from app.graders import BOOLEAN_FLAGS, BatchGrader, GraderConfig, make_sample

COUNTER = """
calls = 0
def grade(sample, item):
    global calls
    calls += 1
    return float(calls)
"""
FLAKY = """
import os, time
def grade(sample, item):
    if item["mode"] == "crash":
        os._exit(3)
    if item["mode"] == "hang":
        time.sleep(3600)
    if item["mode"] == "raise":
        raise ValueError("bad item")
    return 1.0
"""
STRING_CHECK = {
    "type": "string_check",
    "name": "exact",
    "input": "{{sample.output_text}}",
    "reference": "{{item.answer}}",
    "operation": "eq",
}


def test_string_check_batch_rewards_in_order(config: GraderConfig) -> None:
    samples = [make_sample(text) for text in ["a", "b", "c", "a"]]
    with BatchGrader(STRING_CHECK, config) as grader:
        grades = grader.grade(samples, [{"answer": "a"}] * 4)
    assert grades.rewards == [1.0, 0.0, 0.0, 1.0]
    assert [result.name for result in grades.results] == ["exact"] * 4


def test_python_sandboxes_stay_warm_across_calls(config: GraderConfig) -> None:
    definition = {"type": "python", "name": "count", "source": COUNTER}
    with BatchGrader(definition, replace(config, sandbox_pool_size=1)) as grader:
        first = grader.grade([make_sample("x")] * 3, [{}] * 3).rewards
        second = grader.grade([make_sample("x")] * 2, [{}] * 2).rewards
    assert first == [1.0, 2.0, 3.0]
    assert second == [4.0, 5.0]  # the same process kept its state


def test_python_batch_spreads_over_the_pool(config: GraderConfig) -> None:
    source = "def grade(sample, item):\n    return float(item['n'])\n"
    definition = {"type": "python", "name": "echo", "source": source}
    items = [{"n": n} for n in range(500)]
    with BatchGrader(definition, config) as grader:
        grades = grader.grade([make_sample("x")] * 500, items)
    assert grades.rewards == [float(n) for n in range(500)]


def test_crashes_hangs_and_exceptions_cost_only_their_own_sample(config: GraderConfig) -> None:
    definition = {"type": "python", "name": "flaky", "source": FLAKY}
    modes = ["ok", "crash", "ok", "raise", "hang", "ok"]
    config = replace(config, timeout_seconds=1.5, sandbox_pool_size=1)
    with BatchGrader(definition, config) as grader:
        grades = grader.grade([make_sample("x")] * len(modes), [{"mode": m} for m in modes])
        again = grader.grade([make_sample("x")], [{"mode": "ok"}])
    results = grades.results
    assert grades.rewards == [1.0, 0.0, 1.0, 0.0, 0.0, 1.0]
    assert results[1].errors["python_grader_server_error"] is True
    assert "exited with status 3" in results[1].errors["python_grader_server_error_type"]
    assert "ValueError: bad item" in results[3].errors["python_grader_runtime_error_details"]
    assert results[4].errors["unresponsive_reward_error"] is True
    assert again.rewards == [1.0]
    metrics = grades.metrics("train")
    error_entry = metrics["errors"]["graders"][0]
    assert error_entry["train_python_grader_server_error_count"] == 1
    assert error_entry["train_python_grader_runtime_error_count"] == 2
    assert error_entry["train_unresponsive_reward_error_mean"] == pytest.approx(1 / 6)
    assert metrics["error_rate"] == pytest.approx(3 / 6)


def test_source_that_fails_to_load_is_a_runtime_error_for_every_sample(
    config: GraderConfig,
) -> None:
    source = "import no_such_module\ndef grade(sample, item):\n    return 1.0\n"
    with BatchGrader({"type": "python", "name": "p", "source": source}, config) as grader:
        grades = grader.grade([make_sample("x")] * 3, [{}] * 3)
    assert grades.rewards == [0.0] * 3
    for result in grades.results:
        assert (
            "No module named 'no_such_module'"
            in (result.errors["python_grader_runtime_error_details"])
        )


def test_non_float_and_nan_returns_are_runtime_errors(config: GraderConfig) -> None:
    source = "def grade(sample, item):\n    return item['value']\n"
    values = ["high", float("nan"), None, True, 3]
    with BatchGrader({"type": "python", "name": "p", "source": source}, config) as grader:
        grades = grader.grade([make_sample("x")] * len(values), [{"value": v} for v in values])
    assert grades.rewards == [0.0, 0.0, 0.0, 0.0, 3.0]
    details = [r.errors["python_grader_runtime_error_details"] for r in grades.results]
    assert "returned str" in details[0] and "returned bool" in details[3]


def test_metrics_shape_for_a_multi_grader(config: GraderConfig) -> None:
    definition = {
        "type": "multi",
        "name": "both",
        "graders": {
            "exact": STRING_CHECK,
            "fuzzy": {**STRING_CHECK, "type": "text_similarity", "evaluation_metric": "bleu"},
        },
        "calculate_output": "exact",
    }
    del definition["graders"]["fuzzy"]["operation"]
    with BatchGrader(definition, config) as grader:
        grades = grader.grade([make_sample("a"), make_sample("b")], [{"answer": "a"}] * 2)
        empty = grader.grade([], [])
    metrics = grades.metrics("valid")
    assert metrics["reward_mean"] == 0.5
    assert (metrics["reward_min"], metrics["reward_max"]) == (0.0, 1.0)
    scores = metrics["scores"]["graders"]
    assert [(s["name"], s["type"]) for s in scores] == [
        ("exact", "string_check"),
        ("fuzzy", "text_similarity"),
    ]
    assert scores[0]["valid_reward_mean"] == 0.5
    for entry in metrics["errors"]["graders"]:
        for flag in BOOLEAN_FLAGS:
            assert entry[f"valid_{flag}_mean"] == 0.0
            assert entry[f"valid_{flag}_count"] == 0
    assert all("valid_execution_latency_mean" in t for t in metrics["timing"]["graders"])
    assert empty.rewards == [] and empty.metrics("train")["reward_mean"] == 0.0


def test_mismatched_lengths_are_refused(config: GraderConfig) -> None:
    with BatchGrader(STRING_CHECK, config) as grader, pytest.raises(ValueError):
        grader.grade([make_sample("a")], [])
