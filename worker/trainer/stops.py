"""Stop strings while sampling: a completion ends on the token that completes one of them.

A pretrained model in the plain template rarely writes end-of-sequence; it answers and goes on
to write the user's next line. Training stops it where the inference engine does (at the
model's turn stops), so the grader scores the answer it would give in chat, and the tokens of
the stop string are trained like an end-of-sequence token.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def text_before_stop(text: str, stops: tuple[str, ...]) -> str:
    """`text` up to the first of `stops` in it, which is left out (OpenAI's rule)."""
    cuts = [index for index in (text.find(stop) for stop in stops) if index >= 0]
    return text[: min(cuts)] if cuts else text


def turn_answer(text: str, separator: str, turn_stops: tuple[str, ...]) -> str:
    """The answer in a completion's text: after the template's separator, up to the first turn
    stop, without the whitespace that leads into that next turn."""
    text = text.removeprefix(separator)
    answer = text_before_stop(text, turn_stops)
    return answer.rstrip() if len(answer) < len(text) else answer


class StopWatch:
    """Tells which rows have just written one of `stops`, reading only each row's last few
    tokens: every token but a special one decodes to at least one character, so a stop string
    of n characters fits in its last n + 1 tokens (one more for a tokenizer that strips the
    first token's leading space)."""

    def __init__(self, tokenizer: Any, stops: tuple[str, ...]) -> None:
        if not stops or not all(stops):
            raise ValueError("stop strings must be non-empty")
        self.tokenizer = tokenizer
        self.stops = stops
        self.window = max(len(stop) for stop in stops) + 1

    def finished(self, tokens: Tensor, rows: Tensor, t: int) -> Tensor:
        """Of `rows` of `tokens` (sampled up to position `t`), those whose text contains a
        stop string: a bool per row. Call at every position, so that a stop found now was
        completed by token `t`."""
        start = max(0, t + 1 - self.window)
        tails = self.tokenizer.batch_decode(
            tokens[rows, start : t + 1].tolist(), skip_special_tokens=True
        )
        hits = [any(stop in tail for stop in self.stops) for tail in tails]
        return torch.tensor(hits, dtype=torch.bool, device=rows.device)
