"""Supervised fine-tuning on the same data: token-level cross-entropy on the assistant answer,
computed like GRPO's log-probs (prompt forward, then logits only where answer tokens are
predicted)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from worker.trainer.logprobs import TokenScores, score_completions
from worker.trainer.models import Policy
from worker.trainer.sampling import PromptBatch


@dataclass
class AnswerBatch:
    prompts: PromptBatch
    answer_ids: Tensor  # [B, A], right-padded
    answer_mask: Tensor  # [B, A] float

    @classmethod
    def build(
        cls, prompts: list[list[int]], answers: list[list[int]], pad_id: int, device: torch.device
    ) -> AnswerBatch:
        width = max(len(ids) for ids in answers)
        answer_ids = torch.full((len(answers), width), pad_id, dtype=torch.long)
        answer_mask = torch.zeros((len(answers), width))
        for row, ids in enumerate(answers):
            answer_ids[row, : len(ids)] = torch.tensor(ids)
            answer_mask[row, : len(ids)] = 1.0
        return cls(
            PromptBatch.from_ids(prompts, pad_id, device),
            answer_ids.to(device),
            answer_mask.to(device),
        )

    @property
    def tokens(self) -> int:
        return int(self.answer_mask.sum())


def answer_scores(policy: Policy, batch: AnswerBatch) -> TokenScores:
    with policy.autocast():
        return score_completions(policy.model, batch.prompts, batch.answer_ids, group_size=1)


def loss_and_accuracy(scores: TokenScores, batch: AnswerBatch) -> tuple[Tensor, float]:
    """Mean cross-entropy over answer tokens, and the fraction the model ranks first."""
    mask = batch.answer_mask
    tokens = mask.sum().clamp(min=1.0)
    loss = -(scores.logprobs * mask).sum() / tokens
    accuracy = float((scores.argmax_hits * mask).sum() / tokens)
    return loss, accuracy


def sft_step(
    policy: Policy, optimizer: torch.optim.Optimizer, batch: AnswerBatch, max_grad_norm: float
) -> dict[str, float]:
    policy.model.train()
    optimizer.zero_grad(set_to_none=True)
    loss, accuracy = loss_and_accuracy(answer_scores(policy, batch), batch)
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
            loss, accuracy = loss_and_accuracy(answer_scores(policy, batch), batch)
            loss_sum += float(loss) * batch.tokens
            hits += accuracy * batch.tokens
            tokens += batch.tokens
    return loss_sum / max(tokens, 1.0), hits / max(tokens, 1.0)
