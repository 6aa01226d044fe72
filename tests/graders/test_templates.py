from __future__ import annotations

import pytest

from app.graders import GraderConfig, grade, make_sample
from app.graders.errors import GraderError
from app.graders.templates import check_template, render

SAMPLE = make_sample('{"answer": {"city": "Paris", "list": [10, 20]}, "n": null}')
ITEM = {"ground_truth": {"date": "2024-01-01"}, "tags": ["a", "b"], "count": 3, "flag": True}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{item.ground_truth.date}}", "2024-01-01"),
        ("{{  item.ground_truth.date  }}", "2024-01-01"),
        ("x {{item.tags[1]}} y {{ item.tags[0] }}", "x b y a"),
        ("{{item.count}}/{{item.flag}}", "3/true"),
        ("{{sample.output_json.answer.city}}", "Paris"),
        ("{{ sample.output_json.answer.list[1] }}", "20"),
        ("{{sample.output_json.answer.list}}", "[10, 20]"),
        ("{{sample.output_json.n}}", "null"),
        ("{{ item.tags[-1] }}", "b"),
        ("{{item[\"ground_truth\"]['date']}}", "2024-01-01"),
        ("no variables", "no variables"),
    ],
)
def test_render_resolves_paths(template: str, expected: str) -> None:
    assert render(template, SAMPLE, ITEM) == expected


def test_render_reaches_tools_and_choices() -> None:
    tool_call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    sample = make_sample("", output_tools=[tool_call])
    assert render("{{sample.output_tools[0].function.name}}", sample, {}) == "f"
    assert render("{{sample.choices[0].message.tool_calls[0].id}}", sample, {}) == "c1"
    assert render("{{ sample.choices[0].finish_reason }}", sample, {}) == "stop"


@pytest.mark.parametrize(
    "template",
    ["{{item.missing}}", "{{item.tags[5]}}", "{{item.count.x}}", "{{other.x}}", "{{ item..x }}"],
)
def test_unresolvable_variable_raises_invalid_variable(template: str) -> None:
    with pytest.raises(GraderError) as caught:
        render(template, SAMPLE, ITEM)
    assert caught.value.flag == "invalid_variable_error"


def test_output_json_of_non_json_output_is_a_sample_parse_error() -> None:
    with pytest.raises(GraderError) as caught:
        render("{{sample.output_json.city}}", make_sample("Paris, I think"), {})
    assert caught.value.flag == "sample_parse_error"


def test_make_sample_parses_json_only_when_valid() -> None:
    assert make_sample('{"a": 1}')["output_json"] == {"a": 1}
    assert make_sample("not json")["output_json"] is None
    sample = make_sample("hi")
    assert sample["choices"][0]["message"]["content"] == "hi"
    assert set(sample) == {"output_text", "output_json", "output_tools", "choices", "output_audio"}


def test_grade_never_raises_on_bad_variable(config: GraderConfig) -> None:
    grader = {"type": "string_check", "input": "{{item.nope}}", "reference": "x", "operation": "eq"}
    result = grade(grader, make_sample("x"), {}, config)
    assert result.reward == 0.0
    assert result.errors["invalid_variable_error"] is True


def test_check_template_names_bad_namespaces() -> None:
    assert check_template("{{item.a}} {{ sample.output_text }}") == []
    assert "namespace 'foo'" in check_template("{{foo.bar}}")[0]
    assert check_template("{{ 1 + 2 }}") != []
