"""Streaming validation of fine-tuning JSONL files (reference section 4).

Files can be hundreds of megabytes, so lines are checked one at a time and never held together.
The first bad line stops the check; its 1-based number is in the message.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from app.images import ImageError, check_image_part

Method = Literal["reinforcement", "supervised", "dpo"]
FileParam = Literal["training_file", "validation_file"]

RESERVED_KEYS = frozenset({"messages", "tools"})

_ROLES: dict[str, tuple[str, ...]] = {
    "reinforcement": ("developer", "user", "assistant", "tool"),
    "supervised": ("system", "developer", "user", "assistant", "tool"),
    "dpo": ("system", "developer", "user", "assistant", "tool"),
}
# DPO lines (OpenAI's preference format): the conversation so far, then the two answers
PREFERENCE_OUTPUTS = ("preferred_output", "non_preferred_output")
_LAST_ROLE = {"reinforcement": "user", "supervised": "assistant"}
_MIN_EXAMPLES: dict[FileParam, int] = {"training_file": 10, "validation_file": 1}
# Only reinforcement has published upper limits (the RFT guide).
_MAX_EXAMPLES: dict[tuple[Method, FileParam], int] = {
    ("reinforcement", "training_file"): 50_000,
    ("reinforcement", "validation_file"): 1_000,
}
_UNSUPPORTED_PART_TYPES = {
    "input_audio": "audio inputs are not supported",
    "file": "file inputs are not supported",
}


@dataclass(frozen=True)
class DatasetError:
    """A file problem as the job's `error` object: `{code, message, param}`."""

    code: str
    message: str
    param: FileParam

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message, "param": self.param}


@dataclass(frozen=True)
class DatasetReport:
    """`example_count` counts the valid examples read before the check stopped."""

    example_count: int
    error: DatasetError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class _LineProblem(Exception):
    """One line breaks a rule; the message says which, without the line number."""


# what a model that can read images answers: None where the job may train on them, else why
# not ("it reads text only"); asked only when a file has an image
ImageSupport = Callable[[], "str | None"]


def default_example_limits(method: Method, role: FileParam) -> tuple[int, int | None]:
    """(min, max) examples for a file; max is None where no limit is published."""
    return _MIN_EXAMPLES[role], _MAX_EXAMPLES.get((method, role))


def validate_dataset(
    lines: Iterable[bytes],
    *,
    method: Method,
    role: FileParam,
    min_examples: int | None = None,
    max_examples: int | None = None,
    model: str | None = None,
    image_support: ImageSupport | None = None,
) -> DatasetReport:
    """Check a JSONL file line by line; stop at the first bad line.

    `min_examples`/`max_examples` default to `default_example_limits(method, role)`. Images
    are trained on only by reinforcement jobs on a model `image_support` accepts (asked at the
    first image); elsewhere the line is refused, naming `model`, the job's base model.
    Blank lines are skipped but still counted in line numbers.
    """
    default_min, default_max = default_example_limits(method, role)
    min_examples = default_min if min_examples is None else min_examples
    max_examples = default_max if max_examples is None else max_examples
    kind = "training" if role == "training_file" else "validation"
    images = _ImageRules(method, model, image_support)

    def failed(message: str, example_count: int) -> DatasetReport:
        return DatasetReport(example_count, DatasetError(f"invalid_{role}", message, role))

    example_count = 0
    for line_number, raw_line in enumerate(lines, start=1):
        try:
            example = _parse_line(raw_line, first=line_number == 1)
            if example is None:
                continue
            _check_example(example, method)
            images.check(example)
        except _LineProblem as problem:
            return failed(f"Line {line_number}: {problem}", example_count)
        example_count += 1
        if max_examples is not None and example_count > max_examples:
            return failed(
                f"Line {line_number}: the {kind} file has more than {max_examples:,} examples, "
                f"the limit for {method} fine-tuning.",
                example_count - 1,
            )
    if example_count == 0:
        return failed(f"The {kind} file is empty; it must hold at least one example.", 0)
    if example_count < min_examples:
        return failed(
            f"The {kind} file has {example_count} examples; at least {min_examples} are required.",
            example_count,
        )
    return DatasetReport(example_count)


def iter_examples(lines: Iterable[bytes | str]) -> Iterator[dict[str, Any]]:
    """Yield each non-blank line of an already validated file as a dict."""
    for line_number, raw_line in enumerate(lines, start=1):
        try:
            example = _parse_line(raw_line, first=line_number == 1)
        except _LineProblem as problem:
            raise ValueError(f"Line {line_number}: {problem}") from None
        if example is not None:
            yield example


def line_without_field(lines: Iterable[bytes | str], field: str) -> int | None:
    """The 1-based number of the first line whose example has no `field` (or null there), or
    None when every example has it. Lines that are not JSON objects are left to
    validate_dataset."""
    for line_number, raw_line in enumerate(lines, start=1):
        try:
            example = _parse_line(raw_line, first=line_number == 1)
        except _LineProblem:
            continue
        if example is not None and example.get(field) is None:
            return line_number
    return None


def line_with_image(lines: Iterable[bytes | str]) -> int | None:
    """The 1-based number of the first line with an image part, or None."""
    for line_number, raw_line in enumerate(lines, start=1):
        marker = "image_url" if isinstance(raw_line, str) else b"image_url"
        if marker not in raw_line:  # type: ignore[operator]
            continue
        try:
            example = _parse_line(raw_line, first=line_number == 1)
        except _LineProblem:
            continue
        if example is not None and next(_image_parts(example), None) is not None:
            return line_number
    return None


def item_fields(example: dict[str, Any]) -> dict[str, Any]:
    """The example without `messages` and `tools`: what graders see as `item`."""
    return {key: value for key, value in example.items() if key not in RESERVED_KEYS}


def _reject_constant(name: str) -> Any:
    raise _LineProblem(f"invalid JSON ({name} is not a JSON value).")


def _parse_line(raw_line: bytes | str, *, first: bool) -> dict[str, Any] | None:
    """The line's JSON object, or None for a blank line."""
    if isinstance(raw_line, bytes):
        try:
            # utf-8-sig on the first line only: editors on Windows prepend a byte-order mark.
            text = raw_line.decode("utf-8-sig" if first else "utf-8")
        except UnicodeDecodeError as exc:
            raise _LineProblem(f"not valid UTF-8 (byte {exc.start + 1}).") from None
    else:
        text = raw_line.removeprefix("\ufeff") if first else raw_line
    if not text.strip():
        return None
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise _LineProblem(f"invalid JSON ({exc.msg} at column {exc.colno}).") from None
    if not isinstance(value, dict):
        raise _LineProblem(f"expected a JSON object, got {_json_type(value)}.")
    return value


def _check_example(example: dict[str, Any], method: Method) -> None:
    if method == "dpo":
        _check_preference(example)
        return
    if "messages" not in example:
        raise _LineProblem('missing "messages".')
    messages = example["messages"]
    if not isinstance(messages, list) or not messages:
        raise _LineProblem('"messages" must be a non-empty list of messages.')
    for index, message in enumerate(messages):
        _check_message(message, f"messages[{index}]", method)
    last_role = _LAST_ROLE[method]
    if messages[-1]["role"] != last_role:
        raise _LineProblem(
            f'the last message must have role "{last_role}" for {method} fine-tuning, '
            f'got "{messages[-1]["role"]}".'
        )
    if "tools" in example:
        _check_tools(example["tools"], "tools")
        if example["tools"] and method != "reinforcement":
            # an SFT answer that calls tools would be trained on as text without its calls
            raise _LineProblem(
                '"tools" must be empty for supervised fine-tuning: tool definitions are used by '
                "reinforcement fine-tuning only."
            )


def _check_preference(example: dict[str, Any]) -> None:
    """`{"input": {"messages", "tools"?, "parallel_tool_calls"?}, "preferred_output": [assistant
    message], "non_preferred_output": [assistant message]}`."""
    if "input" not in example:
        raise _LineProblem(
            'missing "input" (DPO lines hold "input", "preferred_output" and '
            '"non_preferred_output").'
        )
    prompt = example["input"]
    if not isinstance(prompt, dict):
        raise _LineProblem(f'"input" must be an object, got {_json_type(prompt)}.')
    messages = prompt.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _LineProblem('"input.messages" must be a non-empty list of messages.')
    for index, message in enumerate(messages):
        _check_message(message, f"input.messages[{index}]", "dpo")
    if messages[-1]["role"] == "assistant":
        raise _LineProblem(
            "the last message of input.messages must not be an assistant message: the answers "
            "go in preferred_output and non_preferred_output."
        )
    if "tools" in prompt:
        _check_tools(prompt["tools"], "input.tools")
        if prompt["tools"]:
            # the prompt is rendered without tool definitions: refused rather than ignored
            raise _LineProblem(
                '"input.tools" must be empty: tool definitions are not supported for DPO.'
            )
    parallel = prompt.get("parallel_tool_calls")
    if parallel is not None and not isinstance(parallel, bool):
        raise _LineProblem('"input.parallel_tool_calls" must be true or false.')
    for key in PREFERENCE_OUTPUTS:
        _check_preference_output(example, key)


def _check_preference_output(example: dict[str, Any], key: str) -> None:
    """One assistant message with text: the trainer scores the answer's text."""
    if key not in example:
        raise _LineProblem(f'missing "{key}".')
    output = example[key]
    if not isinstance(output, list) or len(output) != 1:
        raise _LineProblem(f'"{key}" must be a list of exactly one assistant message.')
    message = output[0]
    _check_message(message, f"{key}[0]", "dpo")
    if message["role"] != "assistant":
        raise _LineProblem(
            f'{key}[0] must have role "assistant", got {json.dumps(message["role"])}.'
        )
    if "weight" in message:
        raise _LineProblem(f"{key}[0].weight is not used by DPO; leave it out.")
    if message.get("content") is None:
        raise _LineProblem(
            f"{key}[0] has no content; answers that only call tools are not supported for DPO."
        )


def _check_message(message: Any, where: str, method: Method) -> None:
    if not isinstance(message, dict):
        raise _LineProblem(f"{where} must be an object, got {_json_type(message)}.")
    role = message.get("role")
    allowed_roles = _ROLES[method]
    if role == "system" and method == "reinforcement":
        raise _LineProblem(
            f'{where} has role "system", which reinforcement fine-tuning does not support; '
            'use "developer" instead.'
        )
    if role not in allowed_roles:
        raise _LineProblem(
            f"{where}.role must be one of {', '.join(allowed_roles)}; got {json.dumps(role)}."
        )
    _check_content(message, where)
    if "weight" in message:
        if role != "assistant":
            raise _LineProblem(f'{where}.weight is only allowed on "assistant" messages.')
        if type(message["weight"]) is not int or message["weight"] not in (0, 1):
            raise _LineProblem(
                f"{where}.weight must be 0 or 1, got {json.dumps(message['weight'])}."
            )


def _check_content(message: dict[str, Any], where: str) -> None:
    content = message.get("content")
    # An assistant turn that only calls tools has no content (Chat Completions shape).
    if content is None and message["role"] == "assistant" and message.get("tool_calls"):
        return
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise _LineProblem(
            f"{where}.content must be a string or a list of content parts, "
            f"got {_json_type(content)}."
        )
    for index, part in enumerate(content):
        _check_content_part(part, f"{where}.content[{index}]", message["role"])


def _check_content_part(part: Any, where: str, role: str) -> None:
    if not isinstance(part, dict):
        raise _LineProblem(f"{where} must be an object, got {_json_type(part)}.")
    part_type = part.get("type")
    if part_type == "text":
        if not isinstance(part.get("text"), str):
            raise _LineProblem(f'{where} of type "text" needs a string "text".')
    elif part_type == "image_url":
        if role != "user":
            raise _LineProblem(f'{where}: images are only allowed in "user" messages.')
        image = part.get("image_url")
        if not isinstance(image, dict) or not isinstance(image.get("url"), str):
            raise _LineProblem(f'{where} of type "image_url" needs an "image_url" with a "url".')
    elif part_type in _UNSUPPORTED_PART_TYPES:
        raise _LineProblem(f"{where}: {_UNSUPPORTED_PART_TYPES[part_type]}.")
    else:
        raise _LineProblem(
            f'{where}.type must be "text" or "image_url", got {json.dumps(part_type)}.'
        )


class _ImageRules:
    """Whether a file's images can be trained on (the method and the model are asked once,
    at the first image), and each image checked. Refused rather than dropped: training on
    the text without its image would answer a different question."""

    def __init__(self, method: Method, model: str | None, support: ImageSupport | None) -> None:
        self.method = method
        self.model = model or "the model"
        self.support = support
        self.refusal: str | None = None
        self.asked = False

    def check(self, example: dict[str, Any]) -> None:
        for where, image in _image_parts(example):
            refusal = self._refusal()
            if refusal is not None:
                raise _LineProblem(f"{where}: images are not supported: {refusal}.")
            try:
                check_image_part(image)
            except ImageError as error:
                raise _LineProblem(f"{where}: {error}.") from None

    def _refusal(self) -> str | None:
        if not self.asked:
            self.asked = True
            if self.method != "reinforcement":
                self.refusal = (
                    f"they are trained on by reinforcement fine-tuning only, not {self.method}"
                )
            else:
                reason = self.support() if self.support else "it reads text only"
                if reason is not None:
                    self.refusal = (
                        f"{self.model} {reason.removeprefix('it ')}, and training on the text "
                        "without the image would answer a different question"
                    )
        return self.refusal


def _image_parts(example: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, `image_url` object) of each well-formed image part of an example."""
    prompt = example.get("input") if "input" in example else example
    prefix = "input.messages" if "input" in example else "messages"
    messages = prompt.get("messages") if isinstance(prompt, dict) else None
    for index, message in enumerate(messages if isinstance(messages, list) else []):
        content = message.get("content") if isinstance(message, dict) else None
        for part_index, part in enumerate(content if isinstance(content, list) else []):
            image = part.get("image_url") if isinstance(part, dict) else None
            if isinstance(image, dict) and part.get("type") == "image_url":
                if isinstance(image.get("url"), str):
                    yield f"{prefix}[{index}].content[{part_index}]", image


def _check_tools(tools: Any, where: str) -> None:
    if not isinstance(tools, list):
        raise _LineProblem(f'"{where}" must be a list, got {_json_type(tools)}.')
    for index, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if (
            not isinstance(tool, dict)
            or tool.get("type") != "function"
            or not isinstance(function, dict)
            or not isinstance(function.get("name"), str)
        ):
            raise _LineProblem(
                f'{where}[{index}] must be {{"type": "function", "function": {{"name": ...}}}}.'
            )


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
