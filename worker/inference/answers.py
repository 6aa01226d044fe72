"""Sampled rows as chat answers: their text and tool calls, whole or as a stream of deltas."""

from __future__ import annotations

from dataclasses import dataclass

from app.inference_protocol import Choice, StreamEvent
from app.tool_calls import ToolFormat, parse_answer, settled_length
from worker.inference.sampling import Completion, SamplingParams, Vocabulary


@dataclass(frozen=True)
class AnswerRules:
    """How a request's rows become answers."""

    params: SamplingParams
    # the model's tool-call format when the request lets it call tools, else None
    tool_format: ToolFormat | None = None
    parallel_tool_calls: bool = True


def final_choice(row: Completion, rules: AnswerRules) -> Choice:
    """A finished row as a choice: tool calls parsed out of its text, where tools were given."""
    text, tool_calls = row.text, []
    if rules.tool_format is not None:
        parsed = parse_answer(rules.tool_format, row.text)
        if parsed.tool_calls:
            text = parsed.content
            tool_calls = parsed.tool_calls if rules.parallel_tool_calls else parsed.tool_calls[:1]
    finish_reason = "tool_calls" if tool_calls else (row.finish_reason or "length")
    return Choice(
        text=text,
        finish_reason=finish_reason,
        completion_tokens=row.completion_tokens,
        tool_calls=tool_calls,
        logprobs=row.logprobs if rules.params.logprobs else None,
    )


def _stop_hold(text: str, stop: tuple[str, ...]) -> int:
    """Characters at the end of `text` that may begin a stop string."""
    held = 0
    for marker in stop:
        for keep in range(min(len(marker) - 1, len(text)), held, -1):
            if marker.startswith(text[-keep:]):
                held = keep
                break
    return held


class ChoiceStream:
    """One choice's deltas: text is sent once nothing later can change it (a character still
    missing bytes, the start of a stop string or of a tool call, and a plain-template model's
    trailing whitespace are held back), so the deltas join to the text of the finished
    choice."""

    def __init__(self, index: int, vocab: Vocabulary, rules: AnswerRules) -> None:
        self.index = index
        self.vocab = vocab
        self.rules = rules
        self.sent_text = 0
        self.sent_logprobs = 0
        self.finished = False

    def events(self, row: Completion) -> list[StreamEvent]:
        if self.finished:
            return []
        if row.finish_reason is not None:
            return [self._finish(row)]
        text = self.vocab.decode(row.token_ids)
        settled = len(text.rstrip("\ufffd")) if text.endswith("\ufffd") else len(text)
        settled -= _stop_hold(text[:settled], self.rules.params.stop)
        if self.vocab.turn_stops:  # whitespace that may lead into the next turn, which is cut
            settled = len(text[:settled].rstrip())
        if self.rules.tool_format is not None:
            settled = min(settled, settled_length(self.rules.tool_format, text[:settled]))
        if settled <= self.sent_text:
            return []
        delta = text[self.sent_text : settled]
        self.sent_text = settled
        return [StreamEvent(index=self.index, text=delta, logprobs=self._new_logprobs(row))]

    def _finish(self, row: Completion) -> StreamEvent:
        self.finished = True
        choice = final_choice(row, self.rules)
        return StreamEvent(
            index=self.index,
            text=choice.text[self.sent_text :],
            logprobs=self._new_logprobs(row),
            finish_reason=choice.finish_reason,
            tool_calls=choice.tool_calls,
        )

    def _new_logprobs(self, row: Completion) -> list | None:
        if not self.rules.params.logprobs:
            return None
        new = row.logprobs[self.sent_logprobs :]
        self.sent_logprobs = len(row.logprobs)
        return new
