from __future__ import annotations

import pytest

from app.graders import validate_grader

STRING_CHECK = {
    "type": "string_check",
    "name": "exact",
    "input": "{{sample.output_text}}",
    "reference": "{{item.answer}}",
    "operation": "eq",
}
SCORE_MODEL = {
    "type": "score_model",
    "name": "judge",
    "model": "judge-model",
    "input": [
        {"role": "system", "content": "Score the answer."},
        {"role": "user", "content": [{"type": "input_text", "text": "{{sample.output_text}}"}]},
    ],
    "range": [0, 1],
    "sampling_params": {"temperature": 0.2, "seed": 1, "max_completions_tokens": 50},
}
LABEL_MODEL = {
    "type": "label_model",
    "name": "label",
    "model": "judge-model",
    "input": [{"role": "user", "content": "{{sample.output_text}}"}],
    "labels": ["good", "bad"],
    "passing_labels": ["good"],
}
PYTHON = {"type": "python", "name": "py", "source": "def grade(sample, item):\n    return 1.0\n"}


def paths(grader: object) -> list[str]:
    return [error.path for error in validate_grader(grader)]


@pytest.mark.parametrize(
    "grader",
    [
        STRING_CHECK,
        {**STRING_CHECK, "operation": "neq"},
        {k: v for k, v in STRING_CHECK.items() if k != "name"},
        {
            "type": "text_similarity",
            "name": "t",
            "input": "{{ sample.output_text }}",
            "reference": "{{item.ref}}",
            "evaluation_metric": "rouge_l",
            "pass_threshold": 0.5,
        },
        PYTHON,
        SCORE_MODEL,
        {
            "type": "multi",
            "graders": {"exact": STRING_CHECK, "label": LABEL_MODEL, "py": PYTHON},
            "calculate_output": "0.5 * exact + 0.25 * label + 0.25 * py",
        },
        {"type": "multi", "graders": STRING_CHECK, "calculate_output": "exact"},
    ],
)
def test_valid_graders(grader: dict) -> None:
    assert validate_grader(grader) == []


@pytest.mark.parametrize(
    ("grader", "path"),
    [
        ("not an object", "grader"),
        ({"type": "nope"}, "grader.type"),
        ({**STRING_CHECK, "operation": "equals"}, "grader.operation"),
        ({**STRING_CHECK, "input": 3}, "grader.input"),
        ({k: v for k, v in STRING_CHECK.items() if k != "reference"}, "grader.reference"),
        ({**STRING_CHECK, "input": "{{ secrets.key }}"}, "grader.input"),
        ({**STRING_CHECK, "operaton": "eq"}, "grader.operaton"),
        ({**STRING_CHECK, "type": "text_similarity", "evaluation_metric": "x"}, None),
        (LABEL_MODEL, "grader.type"),
        ({**PYTHON, "source": "def grade(sample):\n    return 1\n"}, "grader.source"),
        ({**PYTHON, "source": "def grade(a, b):\n  return (\n"}, "grader.source"),
        ({**PYTHON, "source": "def score(a, b):\n    return 1\n"}, "grader.source"),
        ({**PYTHON, "source": "x = 1\n" + "#" * 300_000}, "grader.source"),
        ({**SCORE_MODEL, "range": [1, 0]}, "grader.range"),
        ({**SCORE_MODEL, "input": []}, "grader.input"),
        ({**SCORE_MODEL, "input": [{"role": "robot", "content": "x"}]}, "grader.input[0].role"),
        (
            {**SCORE_MODEL, "input": [{"role": "user", "content": [{"type": "video"}]}]},
            "grader.input[0].content[0].type",
        ),
        (
            {**SCORE_MODEL, "input": [{"role": "user", "content": "{{ bad.ns }}"}]},
            "grader.input[0].content",
        ),
        ({**SCORE_MODEL, "sampling_params": {"seed": "x"}}, "grader.sampling_params.seed"),
        ({**SCORE_MODEL, "sampling_params": {"seed": 2**64}}, "grader.sampling_params.seed"),
        (
            {**SCORE_MODEL, "sampling_params": {"reasoning_effort": "huge"}},
            "grader.sampling_params.reasoning_effort",
        ),
        ({**SCORE_MODEL, "model": ""}, "grader.model"),
    ],
)
def test_invalid_graders_name_the_field(grader: object, path: str | None) -> None:
    errors = validate_grader(grader)
    assert errors, "expected a validation error"
    expected = path or "grader.evaluation_metric"
    assert expected in [error.path for error in errors]
    assert all(error.message for error in errors)


def test_multi_rules_and_paths() -> None:
    nested = {"type": "multi", "graders": {"a": STRING_CHECK}, "calculate_output": "a"}
    grader = {
        "type": "multi",
        "graders": {
            "exact": {**STRING_CHECK, "operation": "bogus"},
            "inner": nested,
            "label": {**LABEL_MODEL, "passing_labels": ["great"]},
        },
        "calculate_output": "exact + unknown",
    }
    assert sorted(paths(grader)) == [
        "grader.calculate_output",
        "grader.graders.exact.operation",
        "grader.graders.inner.type",
        "grader.graders.label.passing_labels[0]",
    ]


def test_formula_syntax_error_is_reported() -> None:
    grader = {"type": "multi", "graders": {"a": STRING_CHECK}, "calculate_output": "a +"}
    errors = validate_grader(grader)
    assert [error.path for error in errors] == ["grader.calculate_output"]
    assert "parse" in errors[0].message


def test_empty_multi_and_custom_root_path() -> None:
    assert paths({"type": "multi", "graders": {}, "calculate_output": "1"}) == ["grader.graders"]
    errors = validate_grader({"type": "x"}, path="method.reinforcement.grader")
    assert errors[0].path == "method.reinforcement.grader.type"


def test_source_limit_is_configurable() -> None:
    source = "def grade(sample, item):\n    return 1.0\n"
    assert validate_grader({**PYTHON, "source": source}, max_source_bytes=10)
    assert validate_grader({**PYTHON, "source": source}, max_source_bytes=1000) == []


def test_a_multi_grader_is_limited_in_size() -> None:
    def multi(count: int) -> dict:
        graders = {f"g{index}": STRING_CHECK for index in range(count)}
        return {"type": "multi", "graders": graders, "calculate_output": "g0"}

    assert validate_grader(multi(32)) == []
    errors = validate_grader(multi(33))
    assert [error.path for error in errors] == ["grader.graders"]
    assert "at most 32 sub-graders" in errors[0].message
