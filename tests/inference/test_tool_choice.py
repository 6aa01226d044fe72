"""Forced tool calls in each format the parser knows, sampled from the tiny random model."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import jsonschema
import pytest

from app.inference_protocol import ForcedTool
from app.tool_calls import ToolFormat, parse_answer
from tests.inference.models import build_tiny_base
from worker.inference.answers import AnswerRules, ChoiceStream, final_choice
from worker.inference.sampling import Completion, SamplingParams, Vocabulary, sample
from worker.inference.tool_choice import forced_call

LOOKUP = {
    "type": "function",
    "function": {
        "name": "lookup",
        "parameters": {
            "type": "object",
            "properties": {"id": {"type": "integer", "minimum": 0, "maximum": 99}},
            "required": ["id"],
            "additionalProperties": False,
        },
    },
}
CLEAR = {"type": "function", "function": {"name": "clear"}}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Vocabulary]:
    from worker.trainer.models import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(build_tiny_base(tmp_path_factory.mktemp("m")))
    return model, Vocabulary(tokenizer)


@pytest.mark.parametrize("answer_format", ["hermes", "llama3_json"])
def test_a_forced_call_parses_and_matches_its_schema(
    tiny: tuple[Any, Vocabulary], answer_format: ToolFormat
) -> None:
    model, vocab = tiny
    prompt = vocab.encode_chat([{"role": "user", "content": "Look up item 7."}])
    constraint = forced_call(answer_format, [LOOKUP, CLEAR], ForcedTool(name="lookup"))
    params = SamplingParams(max_tokens=40, n=3, seed=1, constraint=constraint)
    for row in sample(model, vocab, prompt, params):
        assert row.finish_reason == "stop"
        [call] = parse_answer(answer_format, row.text).tool_calls
        assert call["function"]["name"] == "lookup"
        schema = LOOKUP["function"]["parameters"]
        jsonschema.validate(json.loads(call["function"]["arguments"]), schema)


def test_required_picks_among_the_tools(tiny: tuple[Any, Vocabulary]) -> None:
    model, vocab = tiny
    prompt = vocab.encode_chat([{"role": "user", "content": "Do something."}])
    constraint = forced_call("hermes", [LOOKUP, CLEAR], ForcedTool())
    params = SamplingParams(max_tokens=40, n=4, seed=3, constraint=constraint)
    names = {
        parse_answer("hermes", row.text).tool_calls[0]["function"]["name"]
        for row in sample(model, vocab, prompt, params)
    }
    assert names <= {"lookup", "clear"} and names


TWO_CALLS = (
    'Sure. <tool_call>\n{"name": "lookup", "arguments": {"id": 1}}\n</tool_call>\n'
    '<tool_call>\n{"name": "clear", "arguments": {}}\n</tool_call>'
)


def finished_row(vocab: Vocabulary, text: str) -> Completion:
    token_ids = vocab.tokenizer(text, add_special_tokens=False)["input_ids"]
    return Completion(
        text=text,
        text_is_final=True,
        finish_reason="stop",
        token_ids=token_ids,
        completion_tokens=len(token_ids) + 1,
    )


def test_parallel_tool_calls_false_keeps_the_first_call(tiny: tuple[Any, Vocabulary]) -> None:
    row = finished_row(tiny[1], TWO_CALLS)
    rules = AnswerRules(SamplingParams(max_tokens=8), tool_format="hermes")
    both = final_choice(row, rules)
    assert [call["function"]["name"] for call in both.tool_calls] == ["lookup", "clear"]
    assert (both.text, both.finish_reason) == ("Sure. ", "tool_calls")
    one = final_choice(row, replace(rules, parallel_tool_calls=False))
    assert [call["function"]["name"] for call in one.tool_calls] == ["lookup"]


def test_a_stream_holds_back_what_becomes_a_call(tiny: tuple[Any, Vocabulary]) -> None:
    vocab = tiny[1]
    finished = finished_row(vocab, TWO_CALLS)
    stream = ChoiceStream(0, vocab, AnswerRules(SamplingParams(max_tokens=99), "hermes"))
    events = []
    for length in range(1, len(finished.token_ids) + 1):
        growing = Completion(token_ids=finished.token_ids[:length], completion_tokens=length)
        events += stream.events(growing)
    events += stream.events(finished)
    assert "".join(event.text for event in events) == "Sure. "
    assert len([event for event in events if event.text]) > 1  # sent as it grew
    assert events[-1].finish_reason == "tool_calls" and len(events[-1].tool_calls) == 2
