"""Forced tool calls in each format the parser knows, sampled from the tiny random model."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from app.inference_protocol import ForcedTool
from app.tool_calls import ToolFormat, parse_answer
from tests.inference.models import build_tiny_base
from worker.inference.sampling import SamplingParams, Vocabulary, sample
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
