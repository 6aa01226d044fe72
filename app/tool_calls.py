"""Tool calls in a model's own output format, and in OpenAI's `tool_calls` shape.

A chat template that renders `tools` also fixes how the model writes a call; the two formats
here are the ones their model families document:

- `hermes` (Hermes 2 Pro, Qwen2.5): each call is `<tool_call>\n{"name": ..., "arguments": {...}}
  \n</tool_call>`, possibly several, after optional text.
- `llama3_json` (Llama 3.1/3.2 JSON tool calling): the whole answer is one JSON object
  `{"name": ..., "parameters": {...}}`, optionally after `<|python_tag|>`.

The format is recognised from the template's own text, so a template that renders tools in
some other way is treated as having no tool support rather than parsed wrongly. Torch-free: the
API reads templates from model files to refuse tools early, the workers parse outputs.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from typing import Any, Literal

ToolFormat = Literal["hermes", "llama3_json"]
TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"
PYTHON_TAG = "<|python_tag|>"
# the instruction Meta's Llama 3.1+ templates give with tool definitions
LLAMA3_JSON_MARKER = '"parameters": dictionary of argument name and its value'
_HERMES_CALL = re.compile(
    re.escape(TOOL_CALL_OPEN) + r"\s*(.*?)\s*(?:" + re.escape(TOOL_CALL_CLOSE) + r"|$)", re.DOTALL
)
# a function declared without parameters takes none (OpenAI's reading), not any object
NO_PARAMETERS = {"type": "object", "properties": {}, "additionalProperties": False}
_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


@dataclass(frozen=True)
class ParsedAnswer:
    """An answer split into its text and its tool calls (OpenAI's shape, ids `call_...`)."""

    content: str
    tool_calls: list[dict[str, Any]]


def tool_format(chat_template: str | None) -> ToolFormat | None:
    """The tool-call format a chat template teaches its model, or None when it has none."""
    if not chat_template or "tools" not in chat_template:
        return None
    if TOOL_CALL_OPEN in chat_template:
        return "hermes"
    if LLAMA3_JSON_MARKER in chat_template:
        return "llama3_json"
    return None


def chat_template_text(template: str | list[dict[str, str]] | None) -> str | None:
    """The default template of a tokenizer's `chat_template`, which may be a list of named
    templates (the `tool_use` one included) in older tokenizer files: all are joined so that
    tool support anywhere is seen."""
    if isinstance(template, list):
        texts = [entry.get("template", "") for entry in template if isinstance(entry, dict)]
        return "\n".join(texts) or None
    return template


def row_uses_tools(row: dict[str, Any]) -> bool:
    """Whether a dataset row gives tools or has tool calls or results in its conversation."""
    messages = row.get("messages")
    return bool(row.get("tools")) or (
        isinstance(messages, list)
        and any(
            isinstance(message, dict)
            and (message.get("tool_calls") or message.get("role") == "tool")
            for message in messages
        )
    )


def new_call_id() -> str:
    return "call_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(24))


def openai_call(name: str, arguments: Any) -> dict[str, Any]:
    """One call in OpenAI's shape; `arguments` is always a JSON string there."""
    text = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
    return {"id": new_call_id(), "type": "function", "function": {"name": name, "arguments": text}}


def parse_answer(answer_format: ToolFormat, text: str) -> ParsedAnswer:
    """Split a model's answer into text and tool calls; text that is not a well-formed call
    stays text."""
    if answer_format == "hermes":
        return _parse_hermes(text)
    return _parse_llama3_json(text)


def _call_object(text: str, arguments_key: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        return None
    arguments = value.get(arguments_key, {})
    if not isinstance(arguments, dict):
        return None
    return openai_call(value["name"], arguments)


def _parse_hermes(text: str) -> ParsedAnswer:
    start = text.find(TOOL_CALL_OPEN)
    if start < 0:
        return ParsedAnswer(text, [])
    calls = [_call_object(match.group(1), "arguments") for match in _HERMES_CALL.finditer(text)]
    if not calls or any(call is None for call in calls):
        return ParsedAnswer(text, [])
    return ParsedAnswer(text[:start], [call for call in calls if call is not None])


def _parse_llama3_json(text: str) -> ParsedAnswer:
    body = text.strip().removeprefix(PYTHON_TAG).strip()
    if not body.startswith("{"):
        return ParsedAnswer(text, [])
    # several calls may be joined by ';' (Meta's format for parallel calls)
    calls = [_call_object(part, "parameters") for part in _split_top_level(body)]
    if not calls or any(call is None for call in calls):
        return ParsedAnswer(text, [])
    return ParsedAnswer("", [call for call in calls if call is not None])


def _split_top_level(body: str) -> list[str]:
    """`{...}; {...}` into its objects; a ';' inside a string or an object does not split."""
    parts, depth, in_string, escaped, start = [], 0, False, False, 0
    for index, char in enumerate(body):
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "{[":
            depth += 1
        elif char in "}]":
            depth -= 1
        elif char == ";" and depth == 0:
            parts.append(body[start:index].strip())
            start = index + 1
    parts.append(body[start:].strip())
    return [part for part in parts if part]


def settled_length(answer_format: ToolFormat, text: str) -> int:
    """How much of a growing answer is text whatever comes next: what may still turn into a
    tool call is held back while streaming."""
    if answer_format == "hermes":
        start = text.find(TOOL_CALL_OPEN)
        if start >= 0:
            return start
        for keep in range(min(len(TOOL_CALL_OPEN) - 1, len(text)), 0, -1):
            if TOOL_CALL_OPEN.startswith(text[-keep:]):
                return len(text) - keep
        return len(text)
    stripped = text.lstrip()
    if not stripped or stripped[0] == "{" or PYTHON_TAG.startswith(stripped[: len(PYTHON_TAG)]):
        return 0
    return len(text)


def call_prefix(answer_format: ToolFormat) -> str:
    """The text a forced call starts with, before the call's JSON object."""
    return TOOL_CALL_OPEN + "\n" if answer_format == "hermes" else ""


def call_suffix(answer_format: ToolFormat) -> str:
    """The text a forced call ends with, after its JSON object."""
    return "\n" + TOOL_CALL_CLOSE if answer_format == "hermes" else ""


def call_schema(answer_format: ToolFormat, tools: list[dict[str, Any]]) -> dict[str, Any]:
    """The JSON schema of one call object of any of `tools` in the model's format."""
    arguments_key = "arguments" if answer_format == "hermes" else "parameters"
    options = [
        {
            "type": "object",
            "properties": {
                "name": {"const": tool["function"]["name"]},
                arguments_key: tool["function"].get("parameters") or NO_PARAMETERS,
            },
            "required": ["name", arguments_key],
            "additionalProperties": False,
        }
        for tool in tools
    ]
    return options[0] if len(options) == 1 else {"anyOf": options}


def template_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI chat messages as chat templates read them: `developer` as `system`, text parts
    joined, and each call's `arguments` as an object (templates write it out with `tojson`)."""
    rendered = []
    for message in messages:
        role = "system" if message["role"] == "developer" else message["role"]
        shown: dict[str, Any] = {"role": role, "content": _text(message.get("content"))}
        if message.get("tool_calls"):
            shown["tool_calls"] = [_template_call(call) for call in message["tool_calls"]]
        if message.get("tool_call_id"):
            shown["tool_call_id"] = message["tool_call_id"]
        if role == "tool" and message.get("name"):
            shown["name"] = message["name"]
        rendered.append(shown)
    return rendered


def _template_call(call: dict[str, Any]) -> dict[str, Any]:
    function = call.get("function") or {}
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            pass
    shown = {"name": function.get("name"), "arguments": arguments}
    return {"id": call.get("id"), "type": "function", "function": shown}


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text", "") if isinstance(part, dict) else str(part) for part in content
        )
    return "" if content is None else str(content)
