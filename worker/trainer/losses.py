"""The clipped policy-gradient loss of the GRPO family, with its three normalisations.

per-token loss  = -min(ratio * A, clip(ratio, 1 - eps_low, 1 + eps_high) * A) + beta * KL
ratio           = exp(logp - logp_old)
KL (k3)         = exp(logp_ref - logp) - (logp_ref - logp) - 1        (Schulman's estimator)

Normalisations (the batch may be split into micro-batches; the totals are the whole batch's, so
the sum of micro-batch losses equals the loss of the batch in one piece):
- grpo:    mean over sequences of (sum of the sequence's token losses / its length)
- dapo:    sum of all token losses / number of completion tokens in the batch
- dr_grpo: sum of all token losses / (number of sequences * max completion tokens)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class LossConfig:
    loss_type: str = "dapo"
    epsilon_low: float = 0.2
    epsilon_high: float = 0.2
    beta: float = 0.0
    max_completion_tokens: int = 64


@dataclass
class BatchTotals:
    """Normalisers taken over the whole batch, not the micro-batch."""

    sequences: int
    tokens: float


@dataclass
class LossParts:
    loss: Tensor  # scalar, this micro-batch's share of the batch loss
    # sums over masked tokens, for metrics (divide by the batch's token count)
    kl_sum: float
    clipped_low_sum: float
    clipped_high_sum: float


def kl_to_reference(logprobs: Tensor, ref_logprobs: Tensor) -> Tensor:
    delta = ref_logprobs - logprobs
    return torch.exp(delta) - delta - 1


def policy_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    totals: BatchTotals,
    config: LossConfig,
    ref_logprobs: Tensor | None = None,
) -> LossParts:
    """logprobs, old_logprobs, ref_logprobs, mask: [N, C]; advantages: [N]."""
    ratio = torch.exp(logprobs - old_logprobs)
    clipped_ratio = ratio.clamp(1 - config.epsilon_low, 1 + config.epsilon_high)
    advantage = advantages[:, None]
    token_loss = -torch.min(ratio * advantage, clipped_ratio * advantage)
    kl_sum = 0.0
    if config.beta != 0.0:
        if ref_logprobs is None:
            raise ValueError("beta > 0 needs reference log-probabilities")
        kl = kl_to_reference(logprobs, ref_logprobs)
        token_loss = token_loss + config.beta * kl
        kl_sum = float((kl.detach() * mask).sum())
    loss = normalise(token_loss, mask, totals, config)
    with torch.no_grad():
        clipped_low = (ratio < 1 - config.epsilon_low) & (advantage < 0)
        clipped_high = (ratio > 1 + config.epsilon_high) & (advantage > 0)
    return LossParts(
        loss=loss,
        kl_sum=kl_sum,
        clipped_low_sum=float((clipped_low * mask).sum()),
        clipped_high_sum=float((clipped_high * mask).sum()),
    )


def normalise(token_loss: Tensor, mask: Tensor, totals: BatchTotals, config: LossConfig) -> Tensor:
    masked = token_loss * mask
    if config.loss_type == "grpo":
        per_sequence = masked.sum(1) / mask.sum(1).clamp(min=1.0)
        return per_sequence.sum() / totals.sequences
    if config.loss_type == "dapo":
        return masked.sum() / max(totals.tokens, 1.0)
    if config.loss_type == "dr_grpo":
        return masked.sum() / (totals.sequences * config.max_completion_tokens)
    raise ValueError(f"unknown loss_type {config.loss_type!r}")
