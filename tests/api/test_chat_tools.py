"""Tools in chat completions: definitions and tool turns rendered by the model's template, calls
parsed into OpenAI's `tool_calls`, and models without tool support refused."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from app.tool_calls import template_messages
from tests.conftest import make_client
from tests.inference.models import ServedModels, shared_served_models

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
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


@pytest.fixture(scope="module")
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> ServedModels:
    return shared_served_models(request, tmp_path_factory)


@pytest.fixture(scope="module")
def client(served: ServedModels) -> openai.OpenAI:
    return make_client(served.service)


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
    for options in ({"messages": QUESTION, "tools": [WEATHER]}, {"messages": HISTORY}):
        with pytest.raises(openai.BadRequestError) as raised:
            client.chat.completions.create(model=served.base_dir.name, max_tokens=2, **options)
        assert served.base_dir.name in raised.value.message
        assert "tool" in raised.value.message
    assert raised.value.param == "messages"
