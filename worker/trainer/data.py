"""Dataset rows: prompts for the chat template, reference items for graders, answers for SFT
and DPO, and the deterministic order in which training rows are visited."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from app.graders import make_item, make_sample
from app.tool_calls import (
    ToolFormat,
    chat_template_text,
    parse_answer,
    row_uses_tools,
    template_messages,
    tool_format,
)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    with open(path, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{line_number}: not JSON ({error.msg})") from error
    return rows


def message_text(content: Any) -> str:
    """A message's text: a string, or the text parts of a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text", "") if isinstance(part, dict) else str(part) for part in content
        )
    return "" if content is None else str(content)


def prompt_turns(row: dict[str, Any]) -> list[dict[str, Any]]:
    """The conversation the model answers, in the dataset's shape: `messages` without a
    trailing assistant answer, so one file can feed both SFT (which needs the answer) and RFT
    (which must not see it)."""
    messages = list(row["messages"])
    return messages[:-1] if messages and messages[-1]["role"] == "assistant" else messages


def prompt_messages(row: dict[str, Any]) -> list[dict[str, Any]]:
    """`prompt_turns` with tool calls and tool results as chat templates read them."""
    return template_messages(prompt_turns(row))


def model_tool_format(tokenizer: Any) -> ToolFormat | None:
    """How the model's chat template has it write tool calls; None when it renders no tools."""
    return tool_format(chat_template_text(getattr(tokenizer, "chat_template", None)))


def answer_text(row: dict[str, Any]) -> str:
    """The SFT target: the last message, which must be the assistant's."""
    last = row["messages"][-1]
    if last["role"] != "assistant":
        raise ValueError("a supervised example must end with an assistant message")
    return message_text(last.get("content"))


def grader_item(row: dict[str, Any]) -> dict[str, Any]:
    return make_item(row)


def encode_prompt(tokenizer: Any, row: dict[str, Any]) -> list[int]:
    """Token ids of the chat-templated prompt (with the row's tool definitions), ending where
    the assistant's answer starts."""
    if row_uses_tools(row) and model_tool_format(tokenizer) is None:
        raise ValueError(
            "the model's chat template renders no tools, and a row has tools or tool messages"
        )
    ids = tokenizer.apply_chat_template(
        prompt_messages(row),
        tools=row.get("tools") or None,
        add_generation_prompt=True,
        tokenize=True,
        return_dict=False,
    )
    return list(ids)


def answer_sample(text: str, answer_format: ToolFormat | None) -> dict[str, Any]:
    """The grader's `sample` of a completion: where the prompt gave tools (`answer_format` is
    then the model's format), calls are parsed into `output_tools` and `output_text` is the text
    outside them."""
    if answer_format is None:
        return make_sample(text)
    parsed = parse_answer(answer_format, text)
    if not parsed.tool_calls:
        return make_sample(text)
    return make_sample(parsed.content, output_tools=parsed.tool_calls)


def encode_answer(tokenizer: Any, row: dict[str, Any]) -> list[int]:
    """Token ids of the assistant answer followed by end-of-turn, as sampling would produce."""
    return encode_text(tokenizer, answer_text(row))


def encode_text(tokenizer: Any, text: str) -> list[int]:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return list(ids) + [tokenizer.eos_token_id]


def encode_preference(tokenizer: Any, row: dict[str, Any]) -> tuple[list[int], ...]:
    """(prompt, preferred answer, non-preferred answer) token ids of a DPO row in OpenAI's
    preference format; the answers are encoded as SFT encodes its answer."""
    prompt = encode_prompt(tokenizer, row["input"])
    preferred, non_preferred = (
        encode_text(tokenizer, message_text(row[key][0].get("content")))
        for key in ("preferred_output", "non_preferred_output")
    )
    return prompt, preferred, non_preferred


class DataOrder:
    """Which training rows each step uses: a fresh shuffle per epoch, seeded by (seed, epoch),
    so the order is a pure function of the step and survives a resume. The last batch of an
    epoch may be smaller."""

    def __init__(self, n_rows: int, batch_size: int, seed: int) -> None:
        self.n_rows = n_rows
        self.batch_size = batch_size
        self.seed = seed
        self.steps_per_epoch = -(-n_rows // batch_size)

    def epoch_permutation(self, epoch: int) -> list[int]:
        order = list(range(self.n_rows))
        random.Random(f"{self.seed}:{epoch}").shuffle(order)
        return order

    def indices(self, step: int) -> list[int]:
        epoch, position = divmod(step, self.steps_per_epoch)
        start = position * self.batch_size
        return self.epoch_permutation(epoch)[start : start + self.batch_size]
