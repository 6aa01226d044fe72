"""Tools in chat completions: definitions and tool turns rendered by the model's template, calls
parsed into OpenAI's `tool_calls`, and models without tool support refused."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import openai
import pytest

from app.tool_calls import template_messages
from tests.inference.models import ServedModels

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            # bounded, so that a random model's arguments end within a few tokens
            "properties": {
                "city": {"type": "string", "maxLength": 12},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
            },
            "required": ["city", "days"],
            "additionalProperties": False,
        },
    },
}
QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]
HISTORY = [
    *QUESTION,
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris", "days": 1}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 21 C"},
]


def rendered_length(served: ServedModels, messages: list[dict[str, Any]], tools: Any) -> int:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(served.tool_model_dir)
    text = tokenizer.apply_chat_template(
        template_messages(messages), tools=tools, add_generation_prompt=True, tokenize=False
    )
    assert "<tool_call>" in text  # the template's tool instructions or a call in the history
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def test_tool_definitions_and_tool_turns_are_rendered_by_the_template(
    client: openai.OpenAI, served: ServedModels
) -> None:
    model = served.tool_model_dir.name
    for messages, tools in ((QUESTION, [WEATHER]), (HISTORY, [WEATHER]), (HISTORY, None)):
        completion = client.chat.completions.create(
            model=model, messages=messages, max_tokens=2, **({"tools": tools} if tools else {})
        )
        assert completion.usage is not None
        assert completion.usage.prompt_tokens == rendered_length(served, messages, tools)


def test_a_model_without_tool_support_is_refused_naming_it(
    client: openai.OpenAI, served: ServedModels
) -> None:
    for options in (
        {"messages": QUESTION, "tools": [WEATHER]},
        {"messages": QUESTION, "tools": [WEATHER], "stream": True},  # refused before streaming
        {"messages": HISTORY},
    ):
        with pytest.raises(openai.BadRequestError) as raised:
            client.chat.completions.create(model=served.base_dir.name, max_tokens=2, **options)
        assert served.base_dir.name in raised.value.message
        assert "tool" in raised.value.message
    assert raised.value.param == "messages"


CLOCK = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {
            "type": "object",
            "properties": {"zone": {"type": "string", "enum": ["UTC", "CET"]}},
            "required": ["zone"],
            "additionalProperties": False,
        },
    },
}
SCHEMAS = {tool["function"]["name"]: tool["function"]["parameters"] for tool in (WEATHER, CLOCK)}


def assert_one_valid_call(choice: Any, names: set[str]) -> str:
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    [call] = choice.message.tool_calls
    assert call.id.startswith("call_") and call.type == "function"
    assert call.function.name in names
    jsonschema.validate(json.loads(call.function.arguments), SCHEMAS[call.function.name])
    return call.function.name


def test_required_and_named_tool_choice_force_a_call_matching_the_schema(
    client: openai.OpenAI, served: ServedModels
) -> None:
    options = {
        "model": served.tool_model_dir.name,
        "messages": QUESTION,
        "tools": [WEATHER, CLOCK],
        "max_tokens": 60,
        "n": 3,
        "seed": 11,
    }
    required = client.chat.completions.create(tool_choice="required", **options)
    for choice in required.choices:
        assert_one_valid_call(choice, {"get_weather", "get_time"})
    named = client.chat.completions.create(
        tool_choice={"type": "function", "function": {"name": "get_time"}},
        parallel_tool_calls=False,
        **options,
    )
    assert {assert_one_valid_call(choice, {"get_time"}) for choice in named.choices} == {"get_time"}


def test_a_streamed_forced_call_arrives_as_a_tool_call_delta(
    client: openai.OpenAI, served: ServedModels
) -> None:
    chunks = list(
        client.chat.completions.create(
            model=served.tool_model_dir.name,
            messages=QUESTION,
            tools=[WEATHER],
            tool_choice="required",
            max_tokens=60,
            seed=2,
            stream=True,
        )
    )
    deltas = [choice.delta for chunk in chunks for choice in chunk.choices]
    assert "".join(delta.content or "" for delta in deltas) == ""
    [call] = [call for delta in deltas for call in delta.tool_calls or []]
    assert call.index == 0 and call.id.startswith("call_")
    assert call.function.name == "get_weather"
    jsonschema.validate(json.loads(call.function.arguments), SCHEMAS["get_weather"])
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_tool_choice_none_shows_the_model_no_tools(
    client: openai.OpenAI, served: ServedModels
) -> None:
    completion = client.chat.completions.create(
        model=served.tool_model_dir.name,
        messages=QUESTION,
        tools=[WEATHER],
        tool_choice="none",
        max_tokens=2,
    )
    assert completion.usage is not None
    without = client.chat.completions.create(
        model=served.tool_model_dir.name, messages=QUESTION, max_tokens=2
    )
    assert without.usage is not None
    assert completion.usage.prompt_tokens == without.usage.prompt_tokens


@pytest.mark.parametrize(
    ("options", "param"),
    [
        ({"tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
        ({"tool_choice": "sometimes"}, "tool_choice"),
        (
            {"tools": [{"type": "function", "function": {"name": "bad name"}}]},
            "tools[0].function.name",
        ),
        ({"tools": [{"type": "retrieval"}]}, "tools[0]"),
    ],
)
def test_bad_tool_options_are_named(
    client: openai.OpenAI, served: ServedModels, options: dict[str, Any], param: str
) -> None:
    arguments = {"model": served.tool_model_dir.name, "messages": QUESTION, "tools": [WEATHER]}
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(**(arguments | options))  # type: ignore[call-overload]
    assert raised.value.param == param
