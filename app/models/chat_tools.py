"""`tools`, `tool_choice` and the tool turns of a chat request, checked and put in the shape
the inference process takes."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from app.errors import bad_request
from app.inference_protocol import ForcedTool
from app.models.chat_schemas import ChatCompletionRequest, ChatMessage

# OpenAI's rule for function names
FUNCTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class ToolUse:
    """The tools the model is shown (none for `tool_choice: "none"`) and any call it must make."""

    tools: list[dict[str, Any]]
    forced: ForcedTool | None = None
    parallel: bool = True


def tool_use(body: ChatCompletionRequest) -> ToolUse:
    tools = [_checked_tool(tool, index) for index, tool in enumerate(body.tools or [])]
    choice = body.tool_choice
    if choice is None or choice == "none":
        return ToolUse(tools=tools if choice is None else [])
    if not tools:
        raise bad_request(
            "'tool_choice' is only allowed when 'tools' are specified.", param="tool_choice"
        )
    parallel = body.parallel_tool_calls is not False
    if choice == "auto":
        return ToolUse(tools, None, parallel)
    if choice == "required":
        return ToolUse(tools, ForcedTool(), parallel)
    name = _named_choice(choice)
    if name not in {tool["function"]["name"] for tool in tools}:
        raise bad_request(
            f"'tool_choice' names function '{name}', which is not among 'tools'.",
            param="tool_choice",
        )
    return ToolUse(tools, ForcedTool(name=name), parallel)


def _named_choice(choice: str | dict[str, Any]) -> str:
    function = choice.get("function") if isinstance(choice, dict) else None
    if (
        not isinstance(choice, dict)
        or choice.get("type") != "function"
        or not isinstance(function, dict)
        or not isinstance(function.get("name"), str)
    ):
        raise bad_request(
            "'tool_choice' must be 'none', 'auto', 'required' or "
            '{"type": "function", "function": {"name": ...}}.',
            param="tool_choice",
        )
    return str(function["name"])


def _checked_tool(tool: dict[str, Any], index: int) -> dict[str, Any]:
    param = f"tools[{index}]"
    function = tool.get("function")
    if tool.get("type") != "function" or not isinstance(function, dict):
        raise bad_request(
            f'{param} must be {{"type": "function", "function": {{...}}}}.', param=param
        )
    name = function.get("name")
    if not isinstance(name, str) or not FUNCTION_NAME.match(name):
        raise bad_request(
            f"{param}.function.name must be 1 to 64 letters, digits, '_' or '-'.",
            param=f"{param}.function.name",
        )
    parameters = function.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise bad_request(
            f"{param}.function.parameters must be a JSON schema object.",
            param=f"{param}.function.parameters",
        )
    return {"type": "function", "function": function}


def checked_tool_calls(message: ChatMessage, index: int) -> list[dict[str, Any]] | None:
    """An assistant turn's calls in OpenAI's shape, as the history gives them."""
    if not message.tool_calls:
        return None
    param = f"messages[{index}].tool_calls"
    if message.role != "assistant":
        raise bad_request("Only assistant messages have 'tool_calls'.", param=param)
    for call in message.tool_calls:
        function = call.get("function")
        if (
            not isinstance(function, dict)
            or not isinstance(function.get("name"), str)
            or not isinstance(function.get("arguments"), str)
        ):
            raise bad_request(
                'Each tool call needs "function": {"name": ..., "arguments": "<JSON>"}.',
                param=param,
            )
    return message.tool_calls
