"""Sampling completions: one prompt forward shared by its whole group, then token-by-token
decoding with a KV cache, computing logits only for the last position.

With `with_grad=True` the decoding forward passes are recorded by autograd, so the sampled
tokens' log-probabilities can be differentiated directly: when each batch is used for a single
policy update the sampling pass *is* the training forward pass, and no second forward runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class PromptBatch:
    """Prompts left-padded to a common length, so every completion starts at the same column."""

    input_ids: Tensor  # [B, P]
    attention_mask: Tensor  # [B, P], 0 on padding
    position_ids: Tensor  # [B, P], counting real tokens only
    lengths: list[int]

    @classmethod
    def from_ids(cls, prompts: list[list[int]], pad_id: int, device: torch.device) -> PromptBatch:
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
        )

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def select(self, rows: slice) -> PromptBatch:
        return PromptBatch(
            self.input_ids[rows],
            self.attention_mask[rows],
            self.position_ids[rows],
            self.lengths[rows],
        )


@dataclass
class Rollout:
    """`group_size` completions per prompt, rows ordered prompt-major (prompt i owns rows
    i*G .. i*G+G-1). Tokens after a completion's end-of-turn are padding, masked out."""

    completion_ids: Tensor  # [B*G, C]
    completion_mask: Tensor  # [B*G, C] float, 1 up to and including the end-of-turn token
    logprobs: Tensor  # [B*G, C] log-probs of the sampled tokens at `temperature`
    entropies: Tensor  # [B*G, C] entropy of the sampling distribution (detached)
    ended: Tensor  # [B*G] bool, the completion produced end-of-turn within the budget

    @property
    def lengths(self) -> Tensor:
        return self.completion_mask.sum(1)


def top_p_filter(logprobs: Tensor, top_p: float) -> Tensor:
    """Nucleus filtering: keep the most likely tokens whose mass reaches `top_p`."""
    if top_p >= 1.0:
        return logprobs
    sorted_logprobs, order = logprobs.sort(dim=-1, descending=True)
    sorted_probs = sorted_logprobs.exp()
    # a token is dropped when the tokens ranked above it already hold top_p of the mass
    drop = (sorted_probs.cumsum(-1) - sorted_probs) > top_p
    sorted_logprobs = sorted_logprobs.masked_fill(drop, float("-inf"))
    return torch.empty_like(logprobs).scatter_(-1, order, sorted_logprobs)


def draw(logprobs: Tensor, top_p: float, generator: torch.Generator) -> Tensor:
    probs = top_p_filter(logprobs.detach().float(), top_p).exp()
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


def entropy(logprobs: Tensor) -> Tensor:
    return -(logprobs.exp() * logprobs).sum(-1)


def sample(
    model: torch.nn.Module,
    prompts: PromptBatch,
    group_size: int,
    max_tokens: int,
    temperature: float,
    top_p: float,
    eos_ids: Tensor,
    pad_id: int,
    generator: torch.Generator,
    with_grad: bool = False,
) -> Rollout:
    """Sample `group_size` completions of up to `max_tokens` tokens for each prompt."""
    n_rows = len(prompts) * group_size
    device = prompts.input_ids.device
    step_logprobs: list[Tensor] = []
    step_tokens: list[Tensor] = []
    step_masks: list[Tensor] = []
    step_entropies: list[Tensor] = []
    ended = torch.zeros(n_rows, dtype=torch.bool, device=device)
    with torch.set_grad_enabled(with_grad):
        out = model(
            input_ids=prompts.input_ids,
            attention_mask=prompts.attention_mask,
            position_ids=prompts.position_ids,
            use_cache=True,
            logits_to_keep=1,
        )
        cache = out.cache
        cache.batch_repeat_interleave(group_size)
        logits = out.logits[:, -1].repeat_interleave(group_size, 0)
        attention_mask = prompts.attention_mask.repeat_interleave(group_size, 0)
        position = prompts.position_ids[:, -1:].repeat_interleave(group_size, 0)
        for t in range(max_tokens):
            logprobs = torch.log_softmax(logits.float() / temperature, dim=-1)
            token = draw(logprobs, top_p, generator)
            token = torch.where(ended, pad_id, token)
            step_masks.append(~ended)
            step_tokens.append(token)
            step_logprobs.append(logprobs.gather(1, token[:, None]).squeeze(1))
            with torch.no_grad():
                step_entropies.append(entropy(logprobs.detach()))
            ended = ended | torch.isin(token, eos_ids)
            if t == max_tokens - 1 or bool(ended.all()):
                break
            attention_mask = torch.cat([attention_mask, attention_mask.new_ones(n_rows, 1)], 1)
            position = position + 1
            out = model(
                input_ids=token[:, None],
                attention_mask=attention_mask,
                position_ids=position,
                cache=cache,
                use_cache=True,
            )
            logits = out.logits[:, -1]
    return Rollout(
        completion_ids=torch.stack(step_tokens, 1),
        completion_mask=torch.stack(step_masks, 1).float(),
        logprobs=torch.stack(step_logprobs, 1),
        entropies=torch.stack(step_entropies, 1),
        ended=ended,
    )
