from __future__ import annotations

import pytest

from app.graders import GraderConfig, grade, make_sample


def check(text: str, reference: str, operation: str, config: GraderConfig) -> float:
    grader = {
        "type": "string_check",
        "name": "s",
        "input": "{{sample.output_text}}",
        "reference": "{{item.reference}}",
        "operation": operation,
    }
    result = grade(grader, make_sample(text), {"reference": reference}, config)
    assert not result.has_error
    return result.reward


@pytest.mark.parametrize(
    ("text", "reference", "operation", "reward"),
    [
        ("Paris", "Paris", "eq", 1.0),
        ("paris", "Paris", "eq", 0.0),
        ("Paris ", "Paris", "eq", 0.0),
        ("Paris", "Lyon", "ne", 1.0),
        ("Paris", "Paris", "ne", 0.0),
        ("Paris", "Lyon", "neq", 1.0),
        ("It is Paris.", "Paris", "like", 1.0),
        ("It is paris.", "Paris", "like", 0.0),
        ("It is PARIS.", "paris", "ilike", 1.0),
        ("Straße", "STRASSE", "ilike", 1.0),
        ("", "", "eq", 1.0),
        ("", "x", "like", 0.0),
        ("anything", "", "like", 1.0),
        ("日本語のテキスト", "テキスト", "like", 1.0),
        ("\u00e9", "e\u0301", "eq", 0.0),  # composed vs decomposed: exact means exact
    ],
)
def test_operations(
    text: str, reference: str, operation: str, reward: float, config: GraderConfig
) -> None:
    assert check(text, reference, operation, config) == reward


def test_very_long_input(config: GraderConfig) -> None:
    long_text = "word " * 200_000 + "needle"
    assert check(long_text, "needle", "like", config) == 1.0
    assert check(long_text, long_text, "eq", config) == 1.0
