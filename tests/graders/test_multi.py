from __future__ import annotations

from app.graders import GraderConfig, grade, make_sample, normalize_grader

EXACT = {
    "type": "string_check",
    "input": "{{sample.output_json.city}}",
    "reference": "{{item.city}}",
    "operation": "eq",
}
FUZZY = {
    "type": "text_similarity",
    "input": "{{sample.output_json.city}}",
    "reference": "{{item.city}}",
    "evaluation_metric": "fuzzy_match",
}


def multi(formula: str, **graders: dict) -> dict:
    return {"type": "multi", "name": "combined", "graders": graders, "calculate_output": formula}


def test_formula_combines_sub_rewards(config: GraderConfig) -> None:
    grader = multi("0.25 * exact + 0.75 * fuzzy", exact=EXACT, fuzzy=FUZZY)
    result = grade(grader, make_sample('{"city": "Paris"}'), {"city": "Paris"}, config)
    assert result.sub_rewards == {"exact": 1.0, "fuzzy": 1.0}
    assert result.reward == 1.0
    assert result.type == "multi" and result.name == "combined"
    response = result.to_run_response()
    assert response["sub_rewards"] == {"exact": 1.0, "fuzzy": 1.0}
    assert response["metadata"]["type"] == "multi"


def test_sub_grader_error_flags_propagate(config: GraderConfig) -> None:
    grader = multi("exact + fuzzy", exact=EXACT, fuzzy=FUZZY)
    result = grade(grader, make_sample("not json"), {"city": "Paris"}, config)
    assert result.reward == 0.0
    assert result.errors["sample_parse_error"] is True


def test_formula_parse_error_flag(config: GraderConfig) -> None:
    result = grade(multi("exact +* 2", exact=EXACT), make_sample('{"city": "x"}'), {}, config)
    assert result.errors["formula_parse_error"] is True
    assert result.reward == 0.0
    unknown = grade(multi("missing", exact=EXACT), make_sample('{"city": "x"}'), {}, config)
    assert unknown.errors["formula_parse_error"] is True


def test_division_by_zero_is_other_error(config: GraderConfig) -> None:
    result = grade(
        multi("1 / exact", exact=EXACT), make_sample('{"city": "x"}'), {"city": "y"}, config
    )
    assert result.errors["other_error"] is True
    assert result.reward == 0.0


def test_single_grader_is_wrapped_by_its_name(config: GraderConfig) -> None:
    grader = {
        "type": "multi",
        "graders": {**EXACT, "name": "exact"},
        "calculate_output": "2 * exact",
    }
    normal = normalize_grader(grader)
    assert list(normal["graders"]) == ["exact"]
    assert normal["name"] == "multi"
    result = grade(grader, make_sample('{"city": "Paris"}'), {"city": "Paris"}, config)
    assert result.reward == 2.0


def test_normalize_fills_names_and_spelling() -> None:
    grader = multi("a", a={**EXACT, "operation": "neq"})
    normal = normalize_grader(grader)
    assert normal["graders"]["a"]["name"] == "a"
    assert normal["graders"]["a"]["operation"] == "ne"
    assert grader["graders"]["a"]["operation"] == "neq"  # the input is not modified
