"""Direct preference optimization (Rafailov et al. 2023, eq. 7) on LoRA: the loss, one step and
the validation figures.

The reference model is the base model: the same network with the adapter switched off (peft's
`disable_adapter`), so no second copy of the weights is held. Each prompt is packed once with
both of its answers (logprobs.pack), and an answer's log-probability is the sum over its tokens,
end-of-turn included, as TRL's DPOTrainer sums the completion tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor

from worker.trainer.logprobs import Packed, pack, score_packed
from worker.trainer.models import Policy


@dataclass
class PreferenceBatch:
    """Pairs packed one prompt per sequence: row i is pair i's preferred answer, row
    `pairs + i` its non-preferred one."""

    packed: Packed
    pairs: int
    tokens: int  # prompt and both answers, as trained tokens

    @classmethod
    def build(cls, triples: list[tuple[list[int], ...]], policy: Policy) -> PreferenceBatch:
        """`triples` holds (prompt, preferred, non-preferred) token ids per pair."""
        pairs = len(triples)
        prompts = [prompt for prompt, _, _ in triples]
        completions = [(i, i, chosen) for i, (_, chosen, _) in enumerate(triples)]
        completions += [(pairs + i, i, rejected) for i, (_, _, rejected) in enumerate(triples)]
        packed = pack(prompts, completions, policy.pad_id, policy.device)
        tokens = sum(len(part) for triple in triples for part in triple)
        return cls(packed, pairs, tokens)


@dataclass
class PairStats:
    """Per-pair figures of one batch, [pairs] each; `losses` is differentiable in training."""

    losses: Tensor
    chosen_rewards: Tensor  # beta * (log pi(chosen) - log ref(chosen))
    rejected_rewards: Tensor
    chosen_logps: Tensor
    rejected_logps: Tensor

    @staticmethod
    def cat(parts: list[PairStats]) -> PairStats:
        return PairStats(
            **{f.name: torch.cat([getattr(p, f.name) for p in parts]) for f in fields(PairStats)}
        )

    def metrics(self) -> dict[str, float]:
        """TRL's names for the batch means; margins and accuracies compare the two rewards."""
        margins = self.chosen_rewards - self.rejected_rewards
        return {
            "rewards/chosen": float(self.chosen_rewards.mean()),
            "rewards/rejected": float(self.rejected_rewards.mean()),
            "rewards/accuracies": float((margins > 0).float().mean()),
            "rewards/margins": float(margins.mean()),
            "logps/chosen": float(self.chosen_logps.mean()),
            "logps/rejected": float(self.rejected_logps.mean()),
        }


def dpo_loss(
    chosen_logps: Tensor,
    rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    beta: float,
) -> PairStats:
    """Sigmoid DPO (TRL's loss_type="sigmoid"): -log sigmoid(beta * (chosen log-ratio -
    rejected log-ratio)) per pair, where a log-ratio is log pi(answer) - log ref(answer)."""
    chosen_logratios = chosen_logps - ref_chosen_logps
    rejected_logratios = rejected_logps - ref_rejected_logps
    losses = -F.logsigmoid(beta * (chosen_logratios - rejected_logratios))
    return PairStats(
        losses=losses,
        chosen_rewards=beta * chosen_logratios.detach(),
        rejected_rewards=beta * rejected_logratios.detach(),
        chosen_logps=chosen_logps.detach(),
        rejected_logps=rejected_logps.detach(),
    )


def answer_logps(policy: Policy, batch: PreferenceBatch) -> tuple[Tensor, float]:
    """Summed log-probs of each answer [2 * pairs] under the policy as it is now, and the
    fraction of preferred-answer tokens the policy ranks first."""
    with policy.autocast():
        scores = score_packed(policy, batch.packed, hits=True)
    rows = batch.packed.rows
    sums = scores.logprobs.new_zeros(2 * batch.pairs).index_add(0, rows, scores.logprobs)
    accuracy = float(scores.argmax_hits[rows < batch.pairs].float().mean())
    return sums, accuracy


def reference_logps(policy: Policy, batch: PreferenceBatch) -> Tensor:
    """Summed log-probs of each answer under the base model: the adapter switched off."""
    with torch.no_grad(), policy.model.disable_adapter():
        logps, _ = answer_logps(policy, batch)
    return logps


def batch_stats(policy: Policy, batch: PreferenceBatch, beta: float) -> tuple[PairStats, float]:
    """The DPO figures of a batch (differentiable where grad is on), and token accuracy."""
    reference = reference_logps(policy, batch)
    logps, accuracy = answer_logps(policy, batch)
    n = batch.pairs
    stats = dpo_loss(logps[:n], logps[n:], reference[:n], reference[n:], beta)
    return stats, accuracy


def dpo_step(
    policy: Policy,
    optimizer: torch.optim.Optimizer,
    batch: PreferenceBatch,
    beta: float,
    max_grad_norm: float,
) -> dict[str, float]:
    """One optimizer step on the mean DPO loss over the batch's pairs."""
    policy.model.train()
    optimizer.zero_grad(set_to_none=True)
    stats, accuracy = batch_stats(policy, batch, beta)
    loss = stats.losses.mean()
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(policy.trainable_parameters(), max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return {
        "train_loss": float(loss.detach()),
        "train_mean_token_accuracy": accuracy,
        "grad_norm": float(norm),
    } | stats.metrics()


def evaluate_preferences(
    policy: Policy, batches: list[PreferenceBatch], beta: float
) -> tuple[float, float, dict[str, float]]:
    """Mean DPO loss over all pairs of `batches`, token accuracy on the preferred answers
    (token-weighted), and TRL's reward figures over all pairs."""
    policy.model.eval()
    parts, hits, tokens = [], 0.0, 0
    with torch.no_grad():
        for batch in batches:
            stats, accuracy = batch_stats(policy, batch, beta)
            chosen_tokens = int((batch.packed.rows < batch.pairs).sum())
            parts.append(stats)
            hits += accuracy * chosen_tokens
            tokens += chosen_tokens
    stats = PairStats.cat(parts)
    return float(stats.losses.mean()), hits / max(tokens, 1), stats.metrics()
