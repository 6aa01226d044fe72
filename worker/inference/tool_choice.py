"""`tool_choice` "required" or a named function: the answer is one call, in the model's own
format, whose arguments match the function's JSON schema, enforced token by token."""

from __future__ import annotations

import json
from typing import Any

from app.inference_protocol import ForcedTool
from app.tool_calls import ToolFormat, call_prefix, call_schema, call_suffix
from worker.constrained import Constraint
from worker.constrained.grammars import JSON_LAYOUT


def forced_call(
    answer_format: ToolFormat, tools: list[dict[str, Any]], forced: ForcedTool
) -> Constraint:
    """The grammar of one call of `forced.name` (of any of `tools` when None). Schemas are
    enforced as far as llguidance can, unless a function asks for `strict`: then a keyword it
    cannot enforce is refused (ConstraintError)."""
    chosen = [tool for tool in tools if forced.name in (None, tool["function"]["name"])]
    strict = any(tool["function"].get("strict") for tool in chosen)
    # llguidance reads its JSON options from the schema's own "x-guidance" key
    options = {**JSON_LAYOUT, "lenient": not strict}
    schema = {**call_schema(answer_format, chosen), "x-guidance": options}
    lark = f"start: {_literal(call_prefix(answer_format))} %json{json.dumps(schema)} {_literal(call_suffix(answer_format))}"
    return Constraint.from_grammar(lark).with_description("tool call")


def _literal(text: str) -> str:
    """A Lark string literal (an empty text is no symbol at all)."""
    return json.dumps(text) if text else ""
