"""The internal HTTP protocol between the API process and the inference process.

Pydantic only: the API imports this module and must never import torch.

    GET  /health    -> {"status": "ok"}
    POST /generate  GenerateRequest -> GenerateResponse, or with `stream` true one JSON object
                    a line (`StreamEvent`) as tokens are sampled, the last one carrying `usage`
    POST /merge     MergeRequest -> MergeResponse
    errors          {"error": {"message", "type", "param", "code"}} with a 4xx or 5xx status

The API has already checked the caller's access and the request's values; the inference process
re-checks only what it alone can know (the context length). Adapters and merged models are named
by their key in the artefact store, never by a path: the inference process may run on another
host, and fetches what it needs into its own cache.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

FinishReason = Literal["stop", "length", "tool_calls"]
MAX_TOP_LOGPROBS = 20


class Message(BaseModel):
    role: Literal["system", "user", "assistant", "tool"]
    # text; or a user turn with images: OpenAI's "text" and "image_url" parts in order, each
    # image a data URL the API has checked, for a model that reads images
    content: str | list[dict[str, Any]]
    # an assistant turn's calls, in OpenAI's shape (`arguments` a JSON string)
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None


class ForcedTool(BaseModel):
    """`tool_choice` beyond auto/none: a call of `name` (or of any tool when None) is made."""

    name: str | None = None


class GenerateRequest(BaseModel):
    # a catalogue name or a Hugging Face model directory, resolved by the inference process
    base_model: str
    # the artefact-store key of a PEFT adapter applied on top of the base, or None for the base
    adapter_key: str | None = None
    messages: list[Message] = Field(min_length=1)
    # None: as many as the context allows, up to the server's default
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    n: int = Field(default=1, ge=1)
    seed: int | None = None
    stop: list[str] = Field(default_factory=list)
    # "json_object": every choice is one JSON object; "json_schema": every choice matches
    # `json_schema` ({"name", "schema", "strict"}, as in OpenAI's response_format)
    response_format: Literal["text", "json_object", "json_schema"] = "text"
    json_schema: dict[str, Any] | None = None
    # OpenAI's tool definitions, rendered by the model's chat template
    tools: list[dict[str, Any]] = Field(default_factory=list)
    # None: the model may call tools (OpenAI's "auto")
    forced_tool: ForcedTool | None = None
    parallel_tool_calls: bool = True
    logprobs: bool = False
    top_logprobs: int = Field(default=0, ge=0, le=MAX_TOP_LOGPROBS)
    stream: bool = False

    def response_format_object(self) -> dict[str, Any]:
        """The response format in OpenAI's shape."""
        if self.response_format == "json_schema":
            return {"type": "json_schema", "json_schema": self.json_schema or {}}
        return {"type": self.response_format}


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int]


class TokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob] = Field(default_factory=list)


class Choice(BaseModel):
    # the answer's text, without its tool calls
    text: str
    finish_reason: FinishReason
    completion_tokens: int
    tool_calls: list[dict[str, Any]] = Field(default_factory=list)
    logprobs: list[TokenLogprob] | None = None


class GenerateResponse(BaseModel):
    choices: list[Choice]
    prompt_tokens: int

    @property
    def completion_tokens(self) -> int:
        return sum(choice.completion_tokens for choice in self.choices)


class StreamEvent(BaseModel):
    """One line of a streamed generation: new text of choice `index` (with the logprobs of the
    tokens behind it), or its end (`finish_reason` and any tool calls), or, last of all, the
    whole request's token counts (or an `error` that ended it)."""

    index: int = 0
    text: str = ""
    logprobs: list[TokenLogprob] | None = None
    finish_reason: FinishReason | None = None
    tool_calls: list[dict[str, Any]] = Field(default_factory=list)
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    # the generation failed after the stream began
    error: str | None = None


class MergeRequest(BaseModel):
    base_model: str
    adapter_key: str
    # the key, in the merged-model store, to publish the merged model under; nothing is done
    # when a complete one is already stored there
    output_key: str


class MergeResponse(BaseModel):
    output_key: str


class InferenceError(Exception):
    """A request the inference process cannot serve, answered with `status_code`."""

    def __init__(self, status_code: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.param = param
