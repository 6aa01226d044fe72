"""Log-probabilities of given completions under the model, computed like sampling does: one
forward per prompt shared by its group (via the KV cache), then one forward over all completion
tokens, with vocabulary logits only at the positions that predict a completion token."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from worker.trainer.sampling import PromptBatch, entropy


@dataclass
class TokenScores:
    logprobs: Tensor  # [N, C] log p(token) at the given temperature
    entropies: Tensor  # [N, C] detached
    argmax_hits: Tensor  # [N, C] bool, the most likely token is the given one (detached)


def completion_logits(
    model: torch.nn.Module, prompts: PromptBatch, completion_ids: Tensor, group_size: int
) -> Tensor:
    """Logits [N, C, V] that predict each completion token (row i continues prompt i // G)."""
    out = model(
        input_ids=prompts.input_ids,
        attention_mask=prompts.attention_mask,
        position_ids=prompts.position_ids,
        use_cache=True,
        logits_to_keep=1,
    )
    first = out.logits[:, -1:].repeat_interleave(group_size, 0)
    n_tokens = completion_ids.shape[1]
    if n_tokens == 1:
        return first
    cache = out.cache
    cache.batch_repeat_interleave(group_size)
    prompt_mask = prompts.attention_mask.repeat_interleave(group_size, 0)
    attention_mask = torch.cat(
        [prompt_mask, prompt_mask.new_ones(len(prompt_mask), n_tokens - 1)], 1
    )
    offsets = torch.arange(1, n_tokens, device=completion_ids.device)
    position_ids = prompts.position_ids[:, -1:].repeat_interleave(group_size, 0) + offsets
    # the last completion token predicts nothing we score, so it is not fed
    rest = model(
        input_ids=completion_ids[:, :-1],
        attention_mask=attention_mask,
        position_ids=position_ids,
        cache=cache,
        use_cache=True,
    ).logits
    return torch.cat([first, rest], 1)


def score_completions(
    model: torch.nn.Module,
    prompts: PromptBatch,
    completion_ids: Tensor,
    group_size: int,
    temperature: float = 1.0,
) -> TokenScores:
    """Per-token log-probs (differentiable when grad is enabled), entropies and argmax hits."""
    logits = completion_logits(model, prompts, completion_ids, group_size).float() / temperature
    token_logits = logits.gather(2, completion_ids[..., None]).squeeze(2)
    logprobs = token_logits - logits.logsumexp(dim=-1)
    with torch.no_grad():
        detached = logits.detach()
        entropies = entropy(torch.log_softmax(detached, dim=-1))
        argmax_hits = detached.argmax(-1) == completion_ids
    return TokenScores(logprobs, entropies, argmax_hits)
