"""Streamed chat completions and logprobs through the official SDK."""

from __future__ import annotations

import time

import openai
import pytest

from tests.inference.models import ServedModels

HELLO = [{"role": "user", "content": "Say hello."}]


def test_streamed_chunks_join_to_the_completion_of_the_same_seed(
    client: openai.OpenAI, served: ServedModels
) -> None:
    options = {"model": served.fine_tuned_model, "messages": HELLO, "n": 2, "seed": 5}
    whole = client.chat.completions.create(max_tokens=12, **options)
    texts, finishes, usage = ["", ""], [None, None], None
    text_chunks = 0
    chunks = client.chat.completions.create(
        max_tokens=12, stream=True, stream_options={"include_usage": True}, **options
    )
    for chunk in chunks:
        assert chunk.object == "chat.completion.chunk" and chunk.id.startswith("chatcmpl-")
        if chunk.usage is not None:
            assert chunk.choices == []
            usage = chunk.usage
        for choice in chunk.choices:
            text_chunks += bool(choice.delta.content)
            texts[choice.index] += choice.delta.content or ""
            finishes[choice.index] = choice.finish_reason or finishes[choice.index]
    assert texts == [choice.message.content for choice in whole.choices]
    assert all(texts)
    # text is sent as it is sampled, not in one piece at the end
    assert text_chunks > 2 * len(texts)
    assert finishes == [choice.finish_reason for choice in whole.choices]
    assert usage is not None and whole.usage is not None
    assert usage.model_dump() == whole.usage.model_dump()


def test_a_stream_without_include_usage_has_no_usage_and_stops_at_a_stop_string(
    client: openai.OpenAI, served: ServedModels
) -> None:
    options = {"model": served.checkpoint_model, "messages": HELLO, "seed": 3}
    text = client.chat.completions.create(max_tokens=10, **options).choices[0].message.content
    assert text
    stop = text[4:7]
    stream = client.chat.completions.create(max_tokens=10, stop=stop, stream=True, **options)
    chunks = list(stream)
    assert all(chunk.usage is None for chunk in chunks)
    joined = "".join(choice.delta.content or "" for chunk in chunks for choice in chunk.choices)
    assert joined == text[: text.index(stop)]
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_logprobs_and_top_logprobs_describe_each_token(
    client: openai.OpenAI, served: ServedModels
) -> None:
    options = {
        "model": served.base_dir.name,
        "messages": HELLO,
        "temperature": 0,
        "max_tokens": 6,
        "logprobs": True,
        "top_logprobs": 3,
    }
    completion = client.chat.completions.create(**options)
    [choice] = completion.choices
    assert choice.logprobs is not None and choice.logprobs.content is not None
    tokens = choice.logprobs.content
    assert completion.usage is not None and len(tokens) == completion.usage.completion_tokens
    # the tokens' bytes spell the answer
    assert b"".join(bytes(token.bytes or []) for token in tokens).decode() == (
        choice.message.content
    )
    for token in tokens:
        assert token.logprob <= 0 and len(token.top_logprobs) == 3
        # greedy decoding takes the likeliest token, listed first and most likely
        assert token.top_logprobs[0].token == token.token
        assert token.top_logprobs[0].logprob == pytest.approx(token.logprob)
        ranked = [top.logprob for top in token.top_logprobs]
        assert ranked == sorted(ranked, reverse=True)

    streamed = [
        token.model_dump()
        for chunk in client.chat.completions.create(stream=True, **options)
        for part in chunk.choices
        if part.logprobs is not None
        for token in part.logprobs.content or []
    ]
    assert streamed == [token.model_dump() for token in tokens]


def test_a_caller_that_leaves_mid_stream_frees_the_model(
    client: openai.OpenAI, served: ServedModels
) -> None:
    """The inference process stops sampling for a stream nobody reads: the next request does
    not wait behind the rest of a 3,000-token answer (which takes minutes here)."""
    stream = client.chat.completions.create(
        model=served.base_dir.name, messages=HELLO, max_tokens=3000, seed=1, stream=True
    )
    for number, _ in enumerate(stream):
        if number == 3:
            break
    stream.close()
    started = time.monotonic()
    client.chat.completions.create(model=served.base_dir.name, messages=HELLO, max_tokens=2)
    assert time.monotonic() - started < 20
