"""Refusing, when a job is created, training data with tools for a model whose chat template
cannot render them: the model would be trained without seeing its tools."""

from __future__ import annotations

import json
from collections.abc import Iterable

from app.chat_templates import base_model_chat_template
from app.errors import APIError, bad_request
from app.settings import Settings
from app.storage import storage_from_settings
from app.tables import File
from app.tool_calls import row_uses_tools, tool_format


def first_line_with_tools(lines: Iterable[bytes]) -> int | None:
    """The number of the first line that gives tools or has tool calls or tool messages."""
    for number, line in enumerate(lines, start=1):
        # every such line spells one of "tools", "tool_calls" or "tool" (a role)
        if b'"tool' not in line:
            continue
        try:
            row = json.loads(line)
        except ValueError:
            continue  # the file's own check names bad lines
        if isinstance(row, dict) and row_uses_tools(row):
            return number
    return None


def check_tool_support(
    settings: Settings, base_model: str, model: str, files: list[tuple[str, File]]
) -> None:
    """A 400 naming `model` when its template renders no tools and a file's line uses them."""
    if tool_format(base_model_chat_template(settings, base_model)) is not None:
        return
    storage = storage_from_settings(settings)
    for param, file in files:
        with storage.open(file.storage_key) as lines:
            line = first_line_with_tools(lines)
        if line is not None:
            raise _refused(model, param, file.id, line)


def _refused(model: str, param: str, file_id: str, line: int) -> APIError:
    return bad_request(
        f"Model '{model}' has a chat template without tool support, but line {line} of "
        f"{param} '{file_id}' has tools or tool messages; use a model whose chat template "
        "renders tools (Hermes/Qwen2.5 or Llama 3.1+ JSON tool calling).",
        param=param,
        code="model_without_tool_support",
    )
