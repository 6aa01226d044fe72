"""POST /v1/chat/completions through the official SDK, on base, fine-tuned and checkpoint models."""

from __future__ import annotations

import json
import socket
from typing import Literal

import openai
import pytest
from pydantic import BaseModel, ConfigDict

from app.errors import APIError
from app.inference_protocol import GenerateRequest, Message
from tests.conftest import make_client
from tests.inference.models import ServedModels
from tests.loops import run_in_fresh_loop

HELLO = [{"role": "user", "content": "Say hello."}]


@pytest.fixture(scope="module")
def other_client(served: ServedModels) -> openai.OpenAI:
    return make_client(served.service, served.service.key_for("other-project"))


def greedy(client: openai.OpenAI, model: str) -> str:
    completion = client.chat.completions.create(
        model=model, messages=HELLO, temperature=0, max_tokens=8
    )
    return completion.choices[0].message.content or ""


def test_base_fine_tuned_and_checkpoint_models_answer_differently(
    client: openai.OpenAI, served: ServedModels
) -> None:
    completion = client.chat.completions.create(
        model=served.base_dir.name, messages=HELLO, max_tokens=5
    )
    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == served.base_dir.name
    [choice] = completion.choices
    assert choice.index == 0 and choice.message.role == "assistant"
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(served.base_dir)
    prompt = tokenizer.apply_chat_template(HELLO, add_generation_prompt=True, tokenize=False)
    usage = completion.usage
    assert usage is not None
    assert usage.prompt_tokens == len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    answers = {
        greedy(client, model)
        for model in (served.base_dir.name, served.fine_tuned_model, served.checkpoint_model)
    }
    assert len(answers) == 3


def test_n_choices_with_a_seed_repeat_exactly(client: openai.OpenAI, served: ServedModels) -> None:
    def sample(seed: int) -> list[str]:
        completion = client.chat.completions.create(
            model=served.fine_tuned_model, messages=HELLO, n=3, seed=seed, max_tokens=6
        )
        assert [choice.index for choice in completion.choices] == [0, 1, 2]
        return [choice.message.content or "" for choice in completion.choices]

    first = sample(42)
    assert len(set(first)) == 3
    assert sample(42) == first


def test_stop_and_max_tokens_set_the_finish_reason(
    client: openai.OpenAI, served: ServedModels
) -> None:
    def create(**options: object) -> openai.types.chat.ChatCompletion:
        return client.chat.completions.create(
            model=served.checkpoint_model, messages=HELLO, seed=9, **options
        )

    full = create(max_completion_tokens=10)
    assert full.choices[0].finish_reason == "length"
    assert full.usage is not None and full.usage.completion_tokens == 10
    text = full.choices[0].message.content or ""
    stop = text[5:8]
    stopped = create(max_completion_tokens=10, stop=[stop, "never-appears"])
    assert stopped.choices[0].finish_reason == "stop"
    assert stopped.choices[0].message.content == text[: text.index(stop)]


def test_json_object_responses_are_objects_or_cut_by_max_tokens(
    client: openai.OpenAI, served: ServedModels
) -> None:
    completion = client.chat.completions.create(
        model=served.fine_tuned_model,
        messages=[{"role": "user", "content": "Give a colour as JSON."}],
        response_format={"type": "json_object"},
        n=4,
        max_tokens=16,
        seed=5,
    )
    for choice in completion.choices:
        content = choice.message.content or ""
        if choice.finish_reason == "stop":
            assert isinstance(json.loads(content), dict)
        else:  # as on OpenAI: the budget ran out first, the object is unfinished
            assert content.startswith("{")
    # every token counted, the end-of-turn token of finished choices included
    assert completion.usage is not None and completion.usage.completion_tokens >= 4


class City(BaseModel):
    model_config = ConfigDict(extra="forbid")

    city: Literal["東京", "Zürich", "São Paulo"]
    population_known: bool


def test_json_schema_is_enforced_with_unicode_through_the_sdk_parse_helper(
    client: openai.OpenAI, served: ServedModels
) -> None:
    # the SDK turns the model class into a strict json_schema response_format and parses
    completion = client.chat.completions.parse(
        model=served.base_dir.name,
        messages=[{"role": "user", "content": "Which city?"}],
        response_format=City,
        n=3,
        max_tokens=40,
        seed=2,
    )
    for choice in completion.choices:
        assert choice.finish_reason == "stop"
        city = choice.message.parsed
        assert isinstance(city, City)
        # multi-byte characters come back whole, not as replacement characters
        assert choice.message.content == json.dumps(city.model_dump(), ensure_ascii=False)


def test_a_json_schema_that_cannot_be_enforced_is_a_400(
    client: openai.OpenAI, served: ServedModels
) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(
            model=served.base_dir.name,
            messages=HELLO,
            max_tokens=4,
            response_format={
                "type": "json_schema",
                "json_schema": {
                    "name": "zip",
                    "strict": True,
                    "schema": {"type": "string", "pattern": "(?<=a)b"},
                },
            },  # fmt: skip
        )
    assert raised.value.param == "response_format.json_schema.schema"
    assert "look-around" in raised.value.message


def test_json_object_needs_the_word_json(client: openai.OpenAI, served: ServedModels) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(
            model=served.base_dir.name, messages=HELLO, response_format={"type": "json_object"}
        )
    assert raised.value.param == "messages"


def test_a_seed_beyond_64_bits_is_refused_by_name(
    client: openai.OpenAI, served: ServedModels
) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(
            model=served.base_dir.name, messages=HELLO, seed=2**64, max_tokens=2
        )
    assert raised.value.param == "seed"


def test_unknown_and_other_projects_models_are_not_found(
    client: openai.OpenAI, other_client: openai.OpenAI, served: ServedModels
) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        client.chat.completions.create(model="ft:nope:default::ftjob-x", messages=HELLO)
    assert raised.value.code == "model_not_found"
    for model in (served.fine_tuned_model, served.checkpoint_model):
        with pytest.raises(openai.NotFoundError) as raised:
            other_client.chat.completions.create(model=model, messages=HELLO, max_tokens=2)
        assert raised.value.code == "model_not_found" and raised.value.param == "model"


@pytest.mark.parametrize(
    ("options", "param"),
    [
        ({"temperature": 2.5}, "temperature"),
        ({"n": 0}, "n"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"messages": []}, "messages"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
            "messages[0].content[0]",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]},
            "messages[0].content",
        ),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
    ],
)
def test_bad_parameters_are_named(
    client: openai.OpenAI, served: ServedModels, options: dict[str, object], param: str
) -> None:
    arguments: dict[str, object] = {"model": served.base_dir.name, "messages": HELLO, **options}
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(**arguments)  # type: ignore[call-overload]
    assert raised.value.param == param


def test_an_unreachable_inference_process_is_a_503() -> None:
    from app.models.inference import InferenceClient

    request = GenerateRequest(base_model="any", messages=[Message(role="user", content="hi")])
    # a port held bound but not listening refuses at once; a port merely found free may be
    # picked by the kernel as this very connection's source port and connect to itself
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        client = InferenceClient(f"http://127.0.0.1:{closed.getsockname()[1]}")
        with pytest.raises(APIError) as raised:
            run_in_fresh_loop(client.generate(request))
    assert raised.value.status_code == 503
    assert raised.value.type == "server_error"
