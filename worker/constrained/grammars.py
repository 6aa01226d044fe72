"""What a completion must match: a JSON schema, any JSON object, a Lark grammar or a regex,
compiled by llguidance into a grammar string (no tokenizer or torch needed to build one)."""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import llguidance

if TYPE_CHECKING:
    from llguidance._lib import JsonCompileOptions

# JSON as models are used to writing it (Python's json.dumps separators), with no other
# whitespace: free whitespace lets a weak model pad an object until its budget runs out
JSON_LAYOUT: JsonCompileOptions = {
    "whitespace_flexible": False,
    "item_separator": ", ",
    "key_separator": ": ",
}


class ConstraintError(ValueError):
    """A schema or grammar that cannot be enforced; the message says why."""


@dataclass(frozen=True)
class Constraint:
    """A compiled grammar; immutable and shared by every row and request that uses it."""

    grammar: str  # llguidance's grammar string
    description: str  # for messages: "JSON schema 'answer'", "JSON object", ...
    # a matcher compiled once per vocabulary and copied for each row (vocab.py)
    _templates: weakref.WeakKeyDictionary[Any, Any] = field(
        default_factory=weakref.WeakKeyDictionary, compare=False, repr=False
    )

    @classmethod
    def from_json_schema(
        cls, schema: dict[str, Any], *, strict: bool = True, name: str | None = None
    ) -> Constraint:
        """Completions that parse as JSON and match `schema`. `strict` refuses keywords
        llguidance cannot enforce; otherwise they are ignored (OpenAI's non-strict mode does
        not promise adherence either)."""
        if not isinstance(schema, dict):
            raise ConstraintError("The JSON schema must be an object.")
        options: JsonCompileOptions = {**JSON_LAYOUT, "lenient": not strict}
        try:
            grammar = llguidance.LLMatcher.grammar_from_json_schema(schema, overrides=options)
        except ValueError as error:
            raise ConstraintError(f"The JSON schema is not valid: {error}") from None
        label = f"JSON schema {name!r}" if name else "JSON schema"
        return cls(grammar, label).checked()

    @classmethod
    def from_json_object(cls) -> Constraint:
        """Completions that are one JSON object, of any content (OpenAI's JSON mode)."""
        return cls.from_json_schema({"type": "object"}).with_description("JSON object")

    @classmethod
    def from_grammar(cls, lark: str) -> Constraint:
        """Completions in the language of a Lark grammar (llguidance's dialect: `%json{...}`
        embeds a JSON schema, `<|special|>` names a special token)."""
        return cls(llguidance.LLMatcher.grammar_from_lark(lark), "grammar").checked()

    @classmethod
    def from_regex(cls, pattern: str) -> Constraint:
        return cls(llguidance.LLMatcher.grammar_from_regex(pattern), "regex").checked()

    @classmethod
    def from_response_format(cls, response_format: dict[str, Any] | None) -> Constraint | None:
        """The constraint of an OpenAI `response_format` (`text` or None: no constraint).

        Accepts the chat completions shape, `{"type": "json_schema", "json_schema": {"name",
        "schema", "strict"}}`, as RFT's `method.reinforcement.response_format` uses it too."""
        if response_format is None or response_format.get("type", "text") == "text":
            return None
        if response_format["type"] == "json_object":
            return cls.from_json_object()
        if response_format["type"] != "json_schema":
            raise ConstraintError(f"Unknown response_format type {response_format['type']!r}.")
        json_schema = response_format.get("json_schema") or {}
        schema = json_schema.get("schema")
        if schema is None:  # OpenAI's default: any JSON object
            schema = {"type": "object"}
        return cls.from_json_schema(
            schema, strict=bool(json_schema.get("strict")), name=json_schema.get("name")
        )

    def with_description(self, description: str) -> Constraint:
        return Constraint(self.grammar, description)

    def checked(self) -> Constraint:
        """Self, once llguidance has compiled the grammar; ConstraintError says what it refused."""
        message = llguidance.LLMatcher.validate_grammar(self.grammar)
        if message:
            raise ConstraintError(f"The {self.description} cannot be enforced: {message}")
        return self
