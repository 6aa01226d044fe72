"""Supervised fine-tuning on the same data: token-level cross-entropy on the assistant answer,
computed with GRPO's packed forward (logits only where answer tokens are predicted)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from worker.trainer.logprobs import Packed, PackedScores, pack, score_packed
from worker.trainer.models import Policy


@dataclass
class AnswerBatch:
    packed: Packed
    tokens: int  # answer tokens, end-of-turn included

    @classmethod
    def build(cls, pairs: list[tuple[list[int], list[int]]], policy: Policy) -> AnswerBatch:
        prompts = [prompt for prompt, _ in pairs]
        answers = [(row, row, answer) for row, (_, answer) in enumerate(pairs)]
        packed = pack(prompts, answers, policy.pad_id, policy.device)
        return cls(packed, sum(len(answer) for _, answer in pairs))


def answer_scores(policy: Policy, batch: AnswerBatch) -> PackedScores:
    with policy.autocast():
        return score_packed(policy, batch.packed, hits=True)


def loss_and_accuracy(scores: PackedScores) -> tuple[Tensor, float]:
    """Mean cross-entropy over answer tokens, and the fraction the model ranks first."""
    return -scores.logprobs.mean(), float(scores.argmax_hits.float().mean())


def sft_step(
    policy: Policy, optimizer: torch.optim.Optimizer, batch: AnswerBatch, max_grad_norm: float
) -> dict[str, float]:
    policy.model.train()
    optimizer.zero_grad(set_to_none=True)
    loss, accuracy = loss_and_accuracy(answer_scores(policy, batch))
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(policy.trainable_parameters(), max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return {
        "train_loss": float(loss.detach()),
        "train_mean_token_accuracy": accuracy,
        "grad_norm": float(norm),
    }


def evaluate_loss(policy: Policy, batches: list[AnswerBatch]) -> tuple[float, float]:
    """Token-weighted validation loss and token accuracy over all `batches`."""
    policy.model.eval()
    loss_sum = hits = tokens = 0.0
    with torch.no_grad():
        for batch in batches:
            loss, accuracy = loss_and_accuracy(answer_scores(policy, batch))
            loss_sum += float(loss) * batch.tokens
            hits += accuracy * batch.tokens
            tokens += batch.tokens
    return loss_sum / max(tokens, 1.0), hits / max(tokens, 1.0)
