"""The `sample` namespace graders see: the model's answer in its several forms."""

from __future__ import annotations

import json
from typing import Any

# Dataset-row keys that feed the prompt rather than the `item` namespace (reference section 4).
RESERVED_ROW_KEYS = frozenset({"messages", "tools"})


def parse_output_json(output_text: str) -> Any:
    try:
        return json.loads(output_text)
    except (ValueError, RecursionError):
        return None


def make_sample(
    output_text: str,
    *,
    choices: list | None = None,
    output_tools: list | None = None,
) -> dict:
    """Build the `sample` dict: output_text, output_json (None unless valid JSON),
    output_tools, choices and output_audio."""
    output_json = parse_output_json(output_text)
    if choices is None:
        message: dict[str, Any] = {"role": "assistant", "content": output_text}
        if output_tools:
            message["tool_calls"] = output_tools
        choices = [{"index": 0, "message": message, "finish_reason": "stop"}]
    if output_tools is None:
        first_message = (choices[0].get("message") or {}) if choices else {}
        output_tools = first_message.get("tool_calls") or []
    return {
        "output_text": output_text,
        "output_json": output_json,
        "output_tools": output_tools,
        "choices": choices,
        "output_audio": None,
    }


def make_item(row: dict) -> dict:
    """The `item` namespace of a dataset row: every top-level key except messages and tools."""
    return {key: value for key, value in row.items() if key not in RESERVED_ROW_KEYS}


def output_is_json(sample: dict) -> bool:
    """Whether output_json holds a parse of output_text (a JSON `null` included)."""
    if sample.get("output_json") is not None:
        return True
    return str(sample.get("output_text", "")).strip() == "null"
