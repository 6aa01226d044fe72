"""The tool-call formats: recognised from a template, parsed from answers, held back while
streaming."""

from __future__ import annotations

import json

from app.tool_calls import call_schema, parse_answer, settled_length, tool_format
from tests.tool_models import HERMES_TEMPLATE

SMOLLM2_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
)
LLAMA3_TEMPLATE = (
    '{%- if tools %}Respond in the format {"name": function name, "parameters": dictionary of '
    "argument name and its value}.{% for t in tools %}{{ t | tojson }}{% endfor %}{% endif %}"
)


def arguments(call: dict) -> dict:
    return json.loads(call["function"]["arguments"])


def test_formats_are_recognised_from_the_template() -> None:
    assert tool_format(HERMES_TEMPLATE) == "hermes"
    assert tool_format(LLAMA3_TEMPLATE) == "llama3_json"
    assert tool_format(SMOLLM2_TEMPLATE) is None
    assert tool_format(None) is None


def test_hermes_calls_are_parsed_with_the_text_before_them() -> None:
    answer = parse_answer(
        "hermes",
        'Let me look.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Zürich"}}\n'
        '</tool_call>\n<tool_call>\n{"name": "now", "arguments": {}}\n</tool_call>',
    )
    assert answer.content == "Let me look.\n"
    assert [call["function"]["name"] for call in answer.tool_calls] == ["get_weather", "now"]
    assert arguments(answer.tool_calls[0]) == {"city": "Zürich"}
    assert all(call["id"].startswith("call_") for call in answer.tool_calls)
    assert len({call["id"] for call in answer.tool_calls}) == 2


def test_malformed_calls_stay_text() -> None:
    for text in ("<tool_call>\n{not json}\n</tool_call>", "plain", '<tool_call>{"arguments": {}}'):
        assert parse_answer("hermes", text).tool_calls == []
        assert parse_answer("hermes", text).content == text
    assert parse_answer("llama3_json", "The answer is {1}").tool_calls == []


def test_llama3_json_calls_with_python_tag_and_several_calls() -> None:
    answer = parse_answer(
        "llama3_json",
        '<|python_tag|>{"name": "f", "parameters": {"q": "a;b}"}}; {"name": "g", "parameters": {}}',
    )
    assert answer.content == ""
    assert [(call["function"]["name"], arguments(call)) for call in answer.tool_calls] == [
        ("f", {"q": "a;b}"}),
        ("g", {}),
    ]


def test_what_may_become_a_call_is_held_back() -> None:
    assert settled_length("hermes", "Hello <tool") == len("Hello ")
    assert settled_length("hermes", "Hello <tool_call>{") == len("Hello ")
    assert settled_length("hermes", "Hello there") == len("Hello there")
    assert settled_length("llama3_json", ' {"name"') == 0
    assert settled_length("llama3_json", "Paris") == len("Paris")


def test_the_call_schema_names_each_tool() -> None:
    tools = [
        {"type": "function", "function": {"name": "a", "parameters": {"type": "object"}}},
        {"type": "function", "function": {"name": "b"}},
    ]
    schema = call_schema("hermes", tools)
    assert [option["properties"]["name"] for option in schema["anyOf"]] == [
        {"const": "a"},
        {"const": "b"},
    ]
    assert call_schema("llama3_json", tools[:1])["required"] == ["name", "parameters"]
