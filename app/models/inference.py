"""Chat completions: check the request, resolve the model, forward it to the inference process.

The API never loads a model; the inference process (`openrft inference`, or the one `openrft
serve` starts) does, at `Settings.resolved_inference_url`. `app.inference_protocol` has the
shapes both sides speak.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import httpx
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from sqlalchemy.orm import Session

from app import ids
from app.base_models import base_model_config
from app.errors import APIError, bad_request
from app.images import ImageError, check_image_part, vision_refusal
from app.inference_protocol import (
    Choice,
    GenerateRequest,
    GenerateResponse,
    MergeRequest,
    MergeResponse,
    Message,
    StreamEvent,
)
from app.models.chat_schemas import (
    MAX_STOP_SEQUENCES,
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChoice,
    ChatCompletionRequest,
    ChatMessage,
    ChoiceLogprobs,
    CompletionUsage,
    ToolCall,
)
from app.models.chat_stream import ChunkHeader, sse_chunks
from app.models.chat_tools import ToolUse, checked_tool_calls, tool_use
from app.models.service import ServedModel, resolve_model
from app.projects import ProjectRef
from app.settings import Settings
from app.tables import now

# generation runs on a CPU, one request at a time: a long queue is normal, not a failure
INFERENCE_TIMEOUT = httpx.Timeout(1800.0, connect=5.0)
JSON_INSTRUCTION = "Reply with a single JSON object and nothing else."
Response = TypeVar("Response", bound=BaseModel)


class InferenceClient:
    """The API's side of the internal protocol; every failure becomes an `APIError`."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")

    async def generate(self, request: GenerateRequest) -> GenerateResponse:
        return await self._post("/generate", request, GenerateResponse)

    async def merge(self, request: MergeRequest) -> MergeResponse:
        return await self._post("/merge", request, MergeResponse)

    async def stream(self, request: GenerateRequest) -> AsyncIterator[StreamEvent]:
        """The events of a streamed generation; a refused request raises here, before any."""
        http = httpx.AsyncClient(timeout=INFERENCE_TIMEOUT)
        try:
            outgoing = http.build_request(
                "POST", self.base_url + "/generate", json=request.model_dump()
            )
            response = await self._send(http, outgoing)
            if response.status_code >= 400:
                await response.aread()
                raise _inference_failure(response)
        except BaseException:
            await http.aclose()
            raise
        return _stream_events(http, response)

    async def _post(self, path: str, body: BaseModel, response_type: type[Response]) -> Response:
        async with httpx.AsyncClient(timeout=INFERENCE_TIMEOUT) as http:
            outgoing = http.build_request("POST", self.base_url + path, json=body.model_dump())
            response = await self._send(http, outgoing, stream=False)
        if response.status_code >= 400:
            raise _inference_failure(response)
        return response_type.model_validate(response.json())

    async def _send(
        self, http: httpx.AsyncClient, request: httpx.Request, stream: bool = True
    ) -> httpx.Response:
        try:
            return await http.send(request, stream=stream)
        except httpx.TimeoutException as error:
            raise APIError(504, "The inference process timed out.", type="server_error") from error
        except httpx.TransportError as error:
            raise APIError(
                503,
                f"The inference process at {self.base_url} is not reachable; start it with "
                "`openrft inference` (`openrft serve` starts one).",
                type="server_error",
                code="inference_unavailable",
            ) from error


async def _stream_events(
    http: httpx.AsyncClient, response: httpx.Response
) -> AsyncIterator[StreamEvent]:
    try:
        async for line in response.aiter_lines():
            if line.strip():
                yield StreamEvent.model_validate_json(line)
    except httpx.HTTPError as error:
        yield StreamEvent(error=f"The inference process's stream broke: {error}")
    finally:
        await response.aclose()
        await http.aclose()


def _inference_failure(response: httpx.Response) -> APIError:
    try:
        error = response.json()["error"]
        message, param = str(error["message"]), error.get("param")
    except (ValueError, KeyError, TypeError):
        message, param = response.text[:500] or "The inference process failed.", None
    if response.status_code >= 500:
        return APIError(500, message, type="server_error")
    # the inference process names its own fields; the caller knows only `model` and `messages`
    if param in ("base_model", "adapter_key"):
        return APIError(response.status_code, message, param="model", code="model_not_found")
    return APIError(response.status_code, message, param=param)


async def create_chat_completion(
    session: Session, settings: Settings, project: ProjectRef, body: ChatCompletionRequest
) -> ChatCompletion | StreamingResponse:
    _check_supported(body)
    tools = tool_use(body)
    if _has_images(body):  # reading and checking images is slow work: off the event loop
        messages = await run_in_threadpool(_prompt_messages, body)
    else:
        messages = _prompt_messages(body)
    model = await run_in_threadpool(resolve_model, session, settings, project, body.model)
    if any(isinstance(message.content, list) for message in messages):
        await run_in_threadpool(_check_reads_images, settings, model.base_model, body.model)
    request = _generate_request(model, body, messages, tools)
    client = InferenceClient(settings.resolved_inference_url)
    header = ChunkHeader(id=ids.new_chat_completion_id(), created=now(), model=body.model)
    if body.stream:
        events = await client.stream(request)
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        chunks = sse_chunks(events, header, request.n, include_usage)
        return StreamingResponse(chunks, media_type="text/event-stream")
    response = await client.generate(request)
    return ChatCompletion(
        id=header.id,
        created=header.created,
        model=body.model,
        choices=[
            _completion_choice(index, choice) for index, choice in enumerate(response.choices)
        ],
        usage=CompletionUsage(
            prompt_tokens=response.prompt_tokens,
            completion_tokens=response.completion_tokens,
            total_tokens=response.prompt_tokens + response.completion_tokens,
        ),
    )


def _completion_choice(index: int, choice: Choice) -> ChatCompletionChoice:
    calls = [ToolCall.model_validate(call) for call in choice.tool_calls] or None
    # an answer that only calls tools has no content (OpenAI's null)
    content = None if calls and not choice.text.strip() else choice.text
    logprobs = ChoiceLogprobs(content=choice.logprobs) if choice.logprobs is not None else None
    return ChatCompletionChoice(
        index=index,
        message=AssistantMessage(content=content, tool_calls=calls),
        finish_reason=choice.finish_reason,
        logprobs=logprobs,
    )


def _generate_request(
    model: ServedModel, body: ChatCompletionRequest, messages: list[Message], tools: ToolUse
) -> GenerateRequest:
    response_format = body.response_format
    return GenerateRequest(
        base_model=model.base_model,
        adapter_key=model.adapter_key,
        messages=messages,
        # OpenAI's newer name wins when both are sent
        max_tokens=body.max_completion_tokens or body.max_tokens,
        temperature=1.0 if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p,
        n=body.n or 1,
        seed=body.seed,
        stop=_stop_sequences(body.stop),
        response_format=response_format.type if response_format else "text",
        json_schema=response_format.json_schema if response_format else None,
        tools=tools.tools,
        forced_tool=tools.forced,
        parallel_tool_calls=tools.parallel,
        logprobs=bool(body.logprobs),
        top_logprobs=body.top_logprobs or 0,
        stream=bool(body.stream),
    )


def _check_supported(body: ChatCompletionRequest) -> None:
    """Refuse, by name, the options this server would otherwise silently ignore."""
    if body.stream_options is not None and not body.stream:
        raise bad_request(
            "'stream_options' is only allowed when 'stream' is true.", param="stream_options"
        )
    if body.top_logprobs is not None and not body.logprobs:
        raise bad_request(
            "'logprobs' must be true when 'top_logprobs' is set.", param="top_logprobs"
        )
    unsupported: list[tuple[str, bool]] = [
        ("presence_penalty", bool(body.presence_penalty)),
        ("frequency_penalty", bool(body.frequency_penalty)),
        ("logit_bias", bool(body.logit_bias)),
    ]
    for param, is_set in unsupported:
        if is_set:
            raise bad_request(
                f"'{param}' is not supported by this server.", param=param, code="unsupported_value"
            )


def _stop_sequences(stop: str | list[str] | None) -> list[str]:
    sequences = [stop] if isinstance(stop, str) else list(stop or [])
    if len(sequences) > MAX_STOP_SEQUENCES:
        raise bad_request(f"'stop' takes at most {MAX_STOP_SEQUENCES} sequences.", param="stop")
    if any(not sequence for sequence in sequences):
        raise bad_request("'stop' sequences must not be empty.", param="stop")
    return sequences


def _prompt_messages(body: ChatCompletionRequest) -> list[Message]:
    """The messages as plain text, `developer` read as `system`, plus any JSON instruction."""
    messages = [
        Message(
            role="system" if message.role == "developer" else message.role,
            content=_text_content(message, index),
            tool_calls=checked_tool_calls(message, index),
            tool_call_id=message.tool_call_id,
        )
        for index, message in enumerate(body.messages)
    ]
    instruction = _json_instruction(body, messages)
    if instruction is None:
        return messages
    if messages[0].role == "system":
        messages[0] = Message(role="system", content=f"{messages[0].content}\n\n{instruction}")
    else:
        messages.insert(0, Message(role="system", content=instruction))
    return messages


def _text_content(message: ChatMessage, index: int) -> str | list[dict[str, Any]]:
    """The message's text; a user turn with images keeps its parts, each image checked."""
    if isinstance(message.content, str):
        return message.content
    param = f"messages[{index}].content"
    if message.content is None and message.tool_calls:
        return ""  # an assistant turn that only called tools
    if message.content is None:
        raise bad_request("Each message needs text content.", param=param)
    texts = []
    parts: list[dict[str, Any]] = []
    for number, part in enumerate(message.content):
        if part.get("type") == "image_url" and message.role == "user":
            parts.append(_image_part(part, f"{param}[{number}]"))
            continue
        if part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise bad_request(
                f"Only text content parts (and image_url parts in user messages) are "
                f"supported, not {part.get('type')!r}.",
                param=param,
            )
        texts.append(part["text"])
        parts.append({"type": "text", "text": part["text"]})
    return parts if len(parts) > len(texts) else "".join(texts)


def _has_images(body: ChatCompletionRequest) -> bool:
    return any(
        isinstance(message.content, list)
        and any(part.get("type") == "image_url" for part in message.content)
        for message in body.messages
    )


def _image_part(part: dict[str, Any], param: str) -> dict[str, Any]:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else None
    if not isinstance(url, str):
        raise bad_request('An "image_url" part needs an "image_url" with a "url".', param=param)
    try:
        check_image_part(image)  # type: ignore[arg-type]
    except ImageError as error:
        raise bad_request(f"{error}.", param=param) from None
    return {"type": "image_url", "image_url": {"url": url}}


def _check_reads_images(settings: Settings, base_model: str, model: str) -> None:
    refusal = vision_refusal(base_model_config(settings, base_model))
    if refusal is not None:
        raise bad_request(
            f"Model '{model}' cannot be given images: {refusal}.",
            param="messages",
            code="model_without_image_support",
        )


def _json_instruction(body: ChatCompletionRequest, messages: list[Message]) -> str | None:
    """The system instruction a JSON response format adds; the inference process enforces
    the format token by token, and the instruction lets a model write what it is held to."""
    response_format = body.response_format
    if response_format is None or response_format.type == "text":
        return None
    if response_format.type == "json_object":
        # OpenAI's rule, kept so that code written against it behaves the same here
        if not any("json" in message.content.lower() for message in messages):
            raise bad_request(
                "'messages' must contain the word 'json' in some form, to use "
                "'response_format' of type 'json_object'.",
                param="messages",
            )
        return JSON_INSTRUCTION
    json_schema = response_format.json_schema
    if not isinstance(json_schema, dict) or not isinstance(json_schema.get("name"), str):
        raise bad_request(
            "'response_format.json_schema' must be an object with a 'name' (and a 'schema').",
            param="response_format.json_schema",
        )
    schema: Any = json_schema.get("schema", {"type": "object"})
    if not isinstance(schema, dict):
        raise bad_request(
            "'response_format.json_schema.schema' must be a JSON schema object.",
            param="response_format.json_schema.schema",
        )
    return f"{JSON_INSTRUCTION} It must follow this JSON schema:\n{json.dumps(schema)}"
