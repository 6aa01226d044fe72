"""Sampling chat completions from a causal LM: n choices of one prompt in one batch.

All n choices share the prompt, so they batch without padding and share one KV cache. A
`torch.Generator` seeded per request, rather than the global RNG, makes `seed` reproducible.
A `response_format` is enforced token by token (worker/constrained): each step's logits are
masked to what the choice's grammar allows before the draw. A choice whose budget runs out
before its JSON is complete ends with finish_reason "length" and the text so far, as OpenAI's
do.
"""

from __future__ import annotations

import secrets
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

import torch

from app.inference_protocol import TokenLogprob, TopLogprob
from app.tool_calls import ToolFormat, chat_template_text, tool_format
from worker.constrained import Constraint, ConstraintBatch, vocab_info
from worker.trainer.models import answer_separator, turn_stops
from worker.trainer.stops import text_before_stop


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    n: int = 1
    seed: int | None = None
    stop: tuple[str, ...] = ()
    # what every choice must match (a response_format, or a forced tool call)
    constraint: Constraint | None = None
    # per sampled token: its log-probability and those of the `top_logprobs` likeliest
    logprobs: bool = False
    top_logprobs: int = 0


FinishReason = Literal["stop", "length"]


@dataclass
class Completion:
    text: str = ""
    # set once a stop string has cut `text`; until then a text choice's tokens are its truth
    text_is_final: bool = False
    # generated tokens, the end-of-sequence token included
    completion_tokens: int = 0
    finish_reason: FinishReason | None = None
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)


class Vocabulary:
    """What sampling needs from a tokenizer."""

    def __init__(self, tokenizer: Any, extra_eos_ids: set[int] | None = None) -> None:
        """`extra_eos_ids`: tokens that also end a completion (the generation config's)."""
        self.tokenizer = tokenizer
        self.size = len(tokenizer)
        eos = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
        self.eos_ids = frozenset(eos | (extra_eos_ids or set()))
        # how the chat template has the model write tool calls; None: it renders no tools
        self.tool_format: ToolFormat | None = tool_format(
            chat_template_text(getattr(tokenizer, "chat_template", None))
        )
        # stop strings every answer ends at: the next turn, for a model without a template
        self.turn_stops = turn_stops(tokenizer)
        self.answer_separator = answer_separator(tokenizer)

    def encode_chat(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None
    ) -> list[int]:
        """The prompt: the messages (and tool definitions) in the model's chat template, ready
        for the assistant."""
        text = self.tokenizer.apply_chat_template(
            messages, tools=tools or None, add_generation_prompt=True, tokenize=False
        )
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def decode(self, token_ids: list[int]) -> str:
        """A completion's text, without the template's separator before the answer."""
        text = self.tokenizer.decode(token_ids, skip_special_tokens=True)
        return text.removeprefix(self.answer_separator)

    def token_bytes(self, token: int) -> bytes:
        """A token's own bytes, which may be part of a UTF-8 character."""
        piece = self.tokenizer.convert_ids_to_tokens(token)
        decoder = _byte_decoder()
        # byte-level BPE (GPT-2, Llama 3, SmolLM2) spells each byte as one character
        if isinstance(piece, str) and piece and all(char in decoder for char in piece):
            return bytes(decoder[char] for char in piece)
        return self.tokenizer.decode([token]).encode("utf-8")

    def token_logprob(self, token: int, logprob: float) -> TopLogprob:
        raw = self.token_bytes(token)
        # OpenAI's spelling of a token that is part of a character: its bytes escaped
        text = raw.decode("utf-8", errors="backslashreplace")
        return TopLogprob(token=text, logprob=logprob, bytes=list(raw))

    def constraints(self, constraint: Constraint | None, n: int) -> ConstraintBatch | None:
        """Token masks for n choices under `constraint`; None when there is none."""
        if constraint is None:
            return None
        return ConstraintBatch(vocab_info(self.tokenizer, self.eos_ids), [constraint] * n)


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet, inverted: printable bytes stand for themselves, the others
    for the characters from U+0100 on, in byte order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    characters = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            characters.append(256 + extra)
            extra += 1
    return {chr(character): byte for byte, character in zip(printable, characters, strict=True)}


def sample(
    model: Any,
    vocab: Vocabulary,
    prompt_ids: list[int],
    params: SamplingParams,
    pixel_values: torch.Tensor | None = None,
) -> list[Completion]:
    """`params.n` completions of `prompt_ids`, each stopped by EOS, a stop string or the budget.
    `pixel_values`: the prompt's images, for a vision model (its placeholders are in the ids)."""
    # every step yields the same rows, finished after the last one
    return deque(sample_steps(model, vocab, prompt_ids, params, pixel_values), maxlen=1)[0]


def sample_steps(
    model: Any,
    vocab: Vocabulary,
    prompt_ids: list[int],
    params: SamplingParams,
    pixel_values: torch.Tensor | None = None,
) -> Iterator[list[Completion]]:
    """`sample`, yielding the rows after each token: a finished row's text is final."""
    seed = params.seed if params.seed is not None else secrets.randbits(63)
    device = model.device
    generator = torch.Generator(device=device).manual_seed(seed)
    rows = [Completion() for _ in range(params.n)]
    constraints = vocab.constraints(params.constraint, params.n)
    input_ids = torch.tensor([prompt_ids] * params.n, device=device)
    # the images go with the prompt's forward only; each row holds their placeholders
    images: dict[str, Any] = {}
    if pixel_values is not None:
        images["pixel_values"] = pixel_values.to(device, model.dtype).repeat(params.n, 1, 1, 1)
    cache = None
    with torch.inference_mode():
        while True:
            output = model(input_ids=input_ids, cache=cache, use_cache=True, **images)
            images = {}
            cache = output.cache
            logits = output.logits[:, -1, :].float()
            # a model may have more output rows than the tokenizer has tokens
            logits[:, vocab.size :] = float("-inf")
            # the model's own distribution, before any grammar narrows it (OpenAI's logprobs)
            log_probs = torch.log_softmax(logits, dim=-1) if params.logprobs else None
            if constraints is not None:
                constraints.mask(logits)
            scores = _draw_scores(logits, params.temperature, params.top_p, generator)
            for index, (row, row_scores) in enumerate(zip(rows, scores, strict=True)):
                if row.finish_reason is None:
                    token = _extend(row, row_scores, vocab, params)
                    if constraints is not None:
                        constraints.advance([token], [index])
                    if log_probs is not None and token not in vocab.eos_ids:
                        row.logprobs.append(_token_logprob(vocab, log_probs[index], token, params))
                    if row.finish_reason is not None and not row.text_is_final:
                        row.text = vocab.decode(row.token_ids)
                        row.text_is_final = True
            yield rows
            if all(row.finish_reason is not None for row in rows):
                break
            last = [row.token_ids[-1] if row.token_ids else prompt_ids[-1] for row in rows]
            input_ids = torch.tensor(last, device=device).unsqueeze(1)


def _token_logprob(
    vocab: Vocabulary, log_probs: torch.Tensor, token: int, params: SamplingParams
) -> TokenLogprob:
    """The logprobs of the model's own distribution, before temperature and top_p (OpenAI's)."""
    chosen = vocab.token_logprob(token, float(log_probs[token]))
    top: list[TopLogprob] = []
    if params.top_logprobs:
        values, indices = torch.topk(log_probs, params.top_logprobs)
        top = [
            vocab.token_logprob(int(index), float(value))
            for value, index in zip(values.tolist(), indices.tolist(), strict=True)
        ]
    return TokenLogprob(**chosen.model_dump(), top_logprobs=top)


def _draw_scores(
    logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator
) -> torch.Tensor:
    """Per row, scores whose argmax samples the filtered distribution (greedy: the logits).

    The exponential race: with E_i ~ Exp(1), argmax p_i / E_i is distributed as p, and the
    highest-scoring token of any subset is a sample from p renormalised to that subset.
    Masked tokens (-inf logits) have p = 0 and score 0, so they are never drawn.
    """
    if temperature == 0:
        return logits
    probs = torch.softmax(logits / temperature, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        # keep the smallest prefix whose mass reaches top_p (the first token always stays)
        outside = sorted_probs.cumsum(dim=-1) - sorted_probs >= top_p
        sorted_probs[outside] = 0.0
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    noise = torch.empty_like(probs).exponential_(1.0, generator=generator)
    return probs / noise


def _extend(
    row: Completion, scores: torch.Tensor, vocab: Vocabulary, params: SamplingParams
) -> int:
    """Append the row's next token (the best-scoring one) and see whether the row is done."""
    row.completion_tokens += 1
    token = int(scores.argmax())
    if token in vocab.eos_ids:
        row.finish_reason = "stop"
    else:
        row.token_ids.append(token)
    if row.finish_reason is None and params.stop:
        _apply_stop(row, vocab, params.stop)
    if row.finish_reason is None and row.completion_tokens >= params.max_tokens:
        row.finish_reason = "length"
    return token


def _apply_stop(row: Completion, vocab: Vocabulary, stop: tuple[str, ...]) -> None:
    """Cut the text before the first stop string, which is not returned (OpenAI's rule); a
    model's turn stop takes the whitespace before it too."""
    text = vocab.decode(row.token_ids)
    answer = text_before_stop(text, stop)
    if len(answer) < len(text):
        if len(text_before_stop(text, vocab.turn_stops)) == len(answer):
            answer = answer.rstrip()  # the whitespace leading into the next turn is not said
        row.text = answer
        row.text_is_final = True
        row.finish_reason = "stop"
