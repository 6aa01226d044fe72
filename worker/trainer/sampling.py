"""Sampling completions: one prompt forward shared by its whole group, then token-by-token
decoding with a KV cache and logits only for the last position.

Decoding is bound by per-token latency, so the loop avoids work rather than FLOPs alone: the
KV cache appends in place (kv_cache.py), rows that have ended are dropped from the batch (and
the cache), the attention mask is passed only when prompts are padded, and tokens are drawn by
inverse CDF (torch.multinomial costs ~40 ms per step over a 49k vocabulary on two CPU cores).

With a `response_format`, a ConstraintBatch (worker/constrained) masks each step's logits to the
tokens its grammar allows before the draw: the recorded log-probs and entropies are those of
the distribution the tokens were drawn from, while training scores the completions under the
policy's own, unmasked distribution (as TRL does with guided decoding), so the policy learns to
put its mass on valid output by itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from worker.constrained import ConstraintBatch
from worker.trainer.fused_decoder import FusedDecoder
from worker.trainer.kv_cache import sampling_cache
from worker.trainer.models import Policy
from worker.trainer.stops import StopWatch

# compact the decoding batch once this fraction of its rows has ended
COMPACT_FRACTION = 0.25
# tokens searched first for the top-p nucleus (top_p_filter)
TOP_P_CANDIDATES = 1024


@dataclass
class PromptBatch:
    """Prompts left-padded to a common length, so every completion starts at the same column."""

    input_ids: Tensor  # [B, P]
    attention_mask: Tensor  # [B, P], 0 on padding
    position_ids: Tensor  # [B, P], counting real tokens only
    lengths: list[int]
    # a vision model's prompts: each one's images' pixel values, or None where it has none
    images: list[Tensor | None] | None = None

    @classmethod
    def from_ids(
        cls,
        prompts: list[list[int]],
        pad_id: int,
        device: torch.device,
        images: list[Tensor | None] | None = None,
    ) -> PromptBatch:
        width = max(len(ids) for ids in prompts)
        input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, ids in enumerate(prompts):
            input_ids[row, width - len(ids) :] = torch.tensor(ids)
            attention_mask[row, width - len(ids) :] = 1
        position_ids = (attention_mask.cumsum(1) - 1).clamp(min=0)
        return cls(
            input_ids.to(device),
            attention_mask.to(device),
            position_ids.to(device),
            [len(ids) for ids in prompts],
            images,
        )

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    @property
    def has_images(self) -> bool:
        return self.images is not None and any(pixels is not None for pixels in self.images)

    @property
    def padded(self) -> bool:
        return min(self.lengths) != max(self.lengths)

    def token_lists(self) -> list[list[int]]:
        return [
            row[row.shape[0] - length :].tolist()
            for row, length in zip(self.input_ids, self.lengths, strict=True)
        ]


@dataclass
class Rollout:
    """`group_size` completions per prompt, rows ordered prompt-major (prompt i owns rows
    i*G .. i*G+G-1). Tokens after a completion's end-of-turn are padding, masked out."""

    completion_ids: Tensor  # [B*G, C]
    completion_mask: Tensor  # [B*G, C] float, 1 up to and including the end-of-turn token
    logprobs: Tensor  # [B*G, C] log-probs of the sampled tokens at `temperature`
    entropies: Tensor  # [B*G, C] entropy of the sampling distribution
    ended: Tensor  # [B*G] bool, the completion produced end-of-turn within the budget

    @property
    def lengths(self) -> Tensor:
        return self.completion_mask.sum(1)

    def completions(self) -> list[list[int]]:
        """Each row's tokens, end-of-turn included, padding dropped."""
        lengths = self.lengths.long().tolist()
        return [row[:n] for row, n in zip(self.completion_ids.tolist(), lengths, strict=True)]

    def rows(self, indices: list[int]) -> Rollout:
        return Rollout(
            self.completion_ids[indices],
            self.completion_mask[indices],
            self.logprobs[indices],
            self.entropies[indices],
            self.ended[indices],
        )

    @staticmethod
    def concat(parts: list[Rollout], pad_id: int) -> Rollout:
        """The rows of `parts` in order, padded to the widest."""
        width = max(part.completion_ids.shape[1] for part in parts)

        def padded(tensors: list[Tensor], value: float) -> Tensor:
            return torch.cat([F.pad(t, (0, width - t.shape[1]), value=value) for t in tensors])

        return Rollout(
            padded([part.completion_ids for part in parts], pad_id),
            padded([part.completion_mask for part in parts], 0.0),
            padded([part.logprobs for part in parts], 0.0),
            padded([part.entropies for part in parts], 0.0),
            torch.cat([part.ended for part in parts]),
        )


def top_p_filter(logprobs: Tensor, top_p: float) -> Tensor:
    """Nucleus filtering: keep the most likely tokens whose mass reaches `top_p`.

    The nucleus is looked for among the TOP_P_CANDIDATES most likely tokens first: where they
    hold more than `top_p` in every row, no token outside them can be kept, and sorting those
    few replaces sorting the whole vocabulary (~40 ms a decoding step over 49k tokens on two
    CPU cores). Otherwise the whole vocabulary is sorted."""
    if top_p >= 1.0:
        return logprobs
    candidates = min(TOP_P_CANDIDATES, logprobs.shape[-1])
    top_logprobs, top_order = logprobs.topk(candidates, dim=-1)  # sorted, most likely first
    if bool((top_logprobs.exp().sum(-1) > top_p).all()):
        kept = nucleus(top_logprobs, top_p)
        return torch.full_like(logprobs, float("-inf")).scatter_(-1, top_order, kept)
    sorted_logprobs, order = logprobs.sort(dim=-1, descending=True)
    return torch.empty_like(logprobs).scatter_(-1, order, nucleus(sorted_logprobs, top_p))


def nucleus(sorted_logprobs: Tensor, top_p: float) -> Tensor:
    """Log-probs sorted most likely first, with -inf past the nucleus of mass `top_p`."""
    sorted_probs = sorted_logprobs.exp()
    # a token is dropped when the tokens ranked above it already hold top_p of the mass
    drop = (sorted_probs.cumsum(-1) - sorted_probs) > top_p
    return sorted_logprobs.masked_fill(drop, float("-inf"))


class StepDistribution:
    """One decoding step's next-token distribution over the vocabulary, from fp32 logits
    [rows, vocab] (taken over and changed in place), at a temperature.

    Over a large vocabulary the few passes each step makes over its logits cost as much as
    the decoder's multiplies (Gemma 3's 262k tokens: ~60 ms a step for 32 rows when each of
    log-softmax, the draw's exponentials and the entropy made its own). Here the shifted
    logits z and their exponentials e are made once; the entropy is log(sum e) - (e . z) /
    sum e; the draw runs on e itself. Each pass writes into memory it was given, as a fresh
    tensor of that size costs more in page faults than the pass itself."""

    def __init__(
        self, logits: Tensor, temperature: float, weights: Tensor, masked: bool = False
    ) -> None:
        """`weights`: a buffer of the logits' shape for e. `masked`: some logits are -inf (a
        grammar's mask)."""
        if temperature != 1.0:
            logits.div_(temperature)
        logits.sub_(logits.amax(-1, keepdim=True))
        if masked:  # e * z is 0, not 0 * -inf = nan, for a masked token
            logits.clamp_(min=torch.finfo(logits.dtype).min)
        self.shifted = logits  # z, the largest 0 in each row
        self.weights = torch.exp(logits, out=weights)  # e, the unnormalised probabilities
        total = self.weights.sum(-1)
        self.log_total = total.log()
        # e . z row by row: a dot per row is 3x faster than one batched multiply on the CPU
        weighted = torch.stack(
            [torch.dot(e, z) for e, z in zip(self.weights, self.shifted, strict=True)]
        )
        self.entropy = self.log_total - weighted / total

    def logprob(self, token: Tensor) -> Tensor:
        """log p of each row's `token` [rows]."""
        return self.shifted.gather(1, token[:, None]).squeeze(1) - self.log_total

    def logprobs(self) -> Tensor:
        return self.shifted - self.log_total[:, None]

    def draw(self, top_p: float, generator: torch.Generator) -> Tensor:
        """One token per row, by inverse CDF: the first token whose cumulative mass exceeds
        u times the row's total (the same u and rule as a draw from the normalised
        probabilities). Call once: it accumulates the weights in place."""
        weights = self.weights if top_p >= 1.0 else top_p_filter(self.logprobs(), top_p).exp()
        cumulative = weights.cumsum_(-1)
        uniform = torch.rand(
            (weights.shape[0], 1), generator=generator, device=weights.device, dtype=weights.dtype
        )
        # right: a draw of exactly 0 lands on the first token with mass, not on a masked one
        token = torch.searchsorted(cumulative, uniform * cumulative[:, -1:], right=True)
        return token.squeeze(1).clamp(max=weights.shape[-1] - 1)


@contextmanager
def decoding(policy: Policy) -> Iterator[FusedDecoder | None]:
    """The policy's current weights prepared for decoding: the fused fast decoder where the
    architecture allows it, else the model's own forward with LoRA merged into the weights."""
    fused = policy.fused_model()
    if fused is not None:
        fused.read_adapter()
        yield fused
    else:
        with policy.merged():
            yield None


@torch.no_grad()
def sample(
    policy: Policy,
    prompts: PromptBatch,
    group_size: int,
    max_tokens: int,
    temperature: float,
    top_p: float,
    generator: torch.Generator,
    eos_ids: Tensor | None = None,
    fast: FusedDecoder | None = None,
    constraints: ConstraintBatch | None = None,
    stops: tuple[str, ...] | None = None,
) -> Rollout:
    """Sample `group_size` completions of up to `max_tokens` tokens for each prompt, within a
    `decoding(policy)` block (`fast` is what it yields). `eos_ids` (default: the policy's)
    are the tokens that end a completion, and so is the token that completes one of `stops`
    (default: the policy's turn stops). `constraints` (one row per completion, in the
    rollout's order) restrict each token to what the row's grammar allows."""
    eos_ids = policy.eos_ids if eos_ids is None else eos_ids
    stops = policy.turn_stops if stops is None else stops
    watch = StopWatch(policy.tokenizer, stops) if stops else None
    n_rows = len(prompts) * group_size
    device = prompts.input_ids.device
    tokens = torch.full((n_rows, max_tokens), policy.pad_id, dtype=torch.long, device=device)
    logprobs = torch.zeros((n_rows, max_tokens), device=device)
    entropies = torch.zeros((n_rows, max_tokens), device=device)
    lengths = torch.full((n_rows,), max_tokens, dtype=torch.long, device=device)
    ended = torch.zeros(n_rows, dtype=torch.bool, device=device)

    capacity = prompts.input_ids.shape[1] + max_tokens
    cache = sampling_cache(policy.model.config, capacity, fused=fast is not None)
    if prompts.has_images:
        hidden, cache = prefill_with_images(policy, prompts, cache)
    elif fast is not None:
        key_mask = prompts.attention_mask if prompts.padded else None
        hidden = fast.prefill(prompts.input_ids, key_mask, prompts.position_ids, cache)
    else:
        hidden, cache = forward(
            policy,
            prompts.input_ids,
            prompts.attention_mask,
            prompts.position_ids,
            cache,
            prompts.padded,
        )
    cache.batch_repeat_interleave(group_size)
    # the logits and their exponentials are written into these two buffers at every step
    logits = logit_buffer = policy.logits(hidden).repeat_interleave(group_size, 0)
    weight_buffer = torch.empty_like(logit_buffer)
    attention_mask = prompts.attention_mask.repeat_interleave(group_size, 0)
    position = prompts.position_ids[:, -1:].repeat_interleave(group_size, 0)
    active = torch.arange(n_rows, device=device)  # rows still in the decoding batch
    for t in range(max_tokens):
        logits = logits.float()
        if constraints is not None:
            constraints.mask(logits, active)
        weights = weight_buffer[: len(logits)]
        step = StepDistribution(logits, temperature, weights, masked=constraints is not None)
        token = step.draw(top_p, generator)
        live = ~ended[active]
        rows = active[live]
        if constraints is not None:
            constraints.advance(token[live], rows)
        tokens[rows, t] = token[live]
        logprobs[rows, t] = step.logprob(token)[live]
        entropies[rows, t] = step.entropy[live]
        finishing = live & torch.isin(token, eos_ids)
        if watch is not None:
            finishing[live] |= watch.finished(tokens, rows, t)
        ended[active[finishing]] = True
        lengths[active[finishing]] = t + 1
        if t == max_tokens - 1 or bool(ended.all()):
            break
        done_in_batch = ended[active]
        if float(done_in_batch.float().mean()) >= COMPACT_FRACTION:
            keep = (~done_in_batch).nonzero().squeeze(1)
            cache.batch_select_indices(keep)
            active, token = active[keep], token[keep]
            attention_mask, position = attention_mask[keep], position[keep]
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones(len(active), 1)], 1)
        position = position + 1
        if fast is not None:
            hidden = fast.step(token, position, attention_mask if prompts.padded else None, cache)
        else:
            hidden, cache = forward(
                policy, token[:, None], attention_mask, position, cache, prompts.padded
            )
        logits = policy.logits(hidden, out=logit_buffer[: len(active)])
    width = int(lengths.max())
    completion_mask = (torch.arange(width, device=device)[None, :] < lengths[:, None]).float()
    return Rollout(
        completion_ids=tokens[:, :width],
        completion_mask=completion_mask,
        logprobs=logprobs[:, :width],
        entropies=entropies[:, :width],
        ended=ended,
    )


def prefill_with_images(policy: Policy, prompts: PromptBatch, cache: Any) -> tuple[Tensor, Any]:
    """The prompts' forward through the model's own layers, with their images' features in
    the placeholder tokens (the fused decoder reads token ids only)."""
    assert prompts.images is not None
    width = prompts.input_ids.shape[1]
    embeds = policy.input_embeddings(
        prompts.input_ids,
        prompts.images,
        torch.full((len(prompts),), width, device=prompts.input_ids.device),
    )
    return forward(
        policy,
        None,
        prompts.attention_mask,
        prompts.position_ids,
        cache,
        prompts.padded,
        inputs_embeds=embeds,
    )


def forward(
    policy: Policy,
    input_ids: Tensor | None,
    attention_mask: Tensor,
    position_ids: Tensor,
    cache: Any,
    padded: bool,
    inputs_embeds: Tensor | None = None,
) -> tuple[Tensor, Any]:
    """The last position's hidden state [rows, d] and the updated cache. The attention mask
    matters only when prompts are left-padded; without it attention takes the fast path."""
    out = policy.decoder(
        input_ids=input_ids,
        inputs_embeds=inputs_embeds,
        attention_mask=attention_mask if padded else None,
        position_ids=position_ids,
        cache=cache,
        use_cache=True,
    )
    return out.last_hidden_state[:, -1], out.cache
