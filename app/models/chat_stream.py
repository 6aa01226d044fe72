"""A streamed chat completion: the inference process's events relayed as OpenAI's server-sent
`chat.completion.chunk` events, ending with `data: [DONE]`."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

from app.errors import error_envelope
from app.inference_protocol import StreamEvent
from app.models.chat_schemas import (
    ChatCompletionChunk,
    ChoiceLogprobs,
    ChunkChoice,
    ChunkDelta,
    CompletionUsage,
    FunctionCall,
    ToolCallDelta,
)


@dataclass(frozen=True)
class ChunkHeader:
    """What every chunk of one completion repeats."""

    id: str
    created: int
    model: str


def _event(payload: str) -> str:
    return f"data: {payload}\n\n"


def _chunk(header: ChunkHeader, choices: list[ChunkChoice], usage: CompletionUsage | None = None):
    chunk = ChatCompletionChunk(
        id=header.id, created=header.created, model=header.model, choices=choices, usage=usage
    )
    return _event(chunk.model_dump_json())


def _choice_chunks(header: ChunkHeader, event: StreamEvent) -> list[str]:
    chunks = []
    if event.text or event.logprobs:
        logprobs = ChoiceLogprobs(content=event.logprobs) if event.logprobs is not None else None
        delta = ChunkDelta(content=event.text)
        chunks.append(
            _chunk(header, [ChunkChoice(index=event.index, delta=delta, logprobs=logprobs)])
        )
    if event.tool_calls:
        calls = [
            ToolCallDelta(index=position, id=call["id"], function=FunctionCall(**call["function"]))
            for position, call in enumerate(event.tool_calls)
        ]
        delta = ChunkDelta(tool_calls=calls)
        chunks.append(_chunk(header, [ChunkChoice(index=event.index, delta=delta)]))
    if event.finish_reason is not None:
        finish = ChunkChoice(
            index=event.index, delta=ChunkDelta(), finish_reason=event.finish_reason
        )
        chunks.append(_chunk(header, [finish]))
    return chunks


async def sse_chunks(
    events: AsyncIterator[StreamEvent], header: ChunkHeader, choices: int, include_usage: bool
) -> AsyncIterator[str]:
    """Each choice opens with the assistant's role; text, tool calls and the finish follow as
    they are sampled; with `include_usage`, a last chunk with no choices carries `usage`."""
    for index in range(choices):
        opening = ChunkChoice(index=index, delta=ChunkDelta(role="assistant", content=""))
        yield _chunk(header, [opening])
    finished = False
    async for event in events:
        if event.error is not None:
            yield _event(json.dumps(error_envelope(event.error, type="server_error")))
            return
        if event.prompt_tokens is not None:
            finished = True
            if include_usage:
                prompt, completion = event.prompt_tokens, event.completion_tokens or 0
                usage = CompletionUsage(
                    prompt_tokens=prompt,
                    completion_tokens=completion,
                    total_tokens=prompt + completion,
                )
                yield _chunk(header, [], usage)
            continue
        for chunk in _choice_chunks(header, event):
            yield chunk
    if not finished:
        message = "The inference process ended the stream early."
        yield _event(json.dumps(error_envelope(message, type="server_error")))
        return
    yield _event("[DONE]")
