"""Each loss type against hand-computed values, masking, KL and micro-batch splitting."""

from __future__ import annotations

import math

import pytest
import torch

from worker.trainer.losses import BatchTotals, LossConfig, kl_to_reference, policy_loss

# Two sequences of up to three tokens; old log-probs are 0, so ratio = exp(logprobs).
# Row 0 (advantage +1) has two tokens, row 1 (advantage -2) one; the masked entries hold
# extreme ratios that must not count.
RATIOS = torch.tensor([[1.5, 0.9, 7.0], [0.5, 30.0, 0.01]])
MASK = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
ADVANTAGES = torch.tensor([1.0, -2.0])
TOTALS = BatchTotals(sequences=2, tokens=3.0)
# token losses with eps 0.2: row 0: -min(1.5, 1.2) = -1.2, -min(0.9, 0.9) = -0.9;
# row 1: -min(0.5 * -2, 0.8 * -2) = 1.6
ROW_SUMS = (-2.1, 1.6)


def loss(loss_type: str, beta: float = 0.0, ref: torch.Tensor | None = None) -> float:
    config = LossConfig(loss_type=loss_type, beta=beta, max_completion_tokens=4)
    logprobs = RATIOS.log()
    parts = policy_loss(logprobs, torch.zeros_like(logprobs), ADVANTAGES, MASK, TOTALS, config, ref)
    return parts.loss.item()


def test_grpo_averages_each_sequence_then_the_batch() -> None:
    assert loss("grpo") == pytest.approx((ROW_SUMS[0] / 2 + ROW_SUMS[1] / 1) / 2)


def test_dapo_averages_over_all_tokens() -> None:
    assert loss("dapo") == pytest.approx(sum(ROW_SUMS) / 3)


def test_dr_grpo_divides_by_the_token_budget() -> None:
    assert loss("dr_grpo") == pytest.approx(sum(ROW_SUMS) / (2 * 4))


def test_kl_penalty_uses_the_k3_estimator() -> None:
    def k3(ratio: float) -> float:  # ref log-prob 0, policy log-prob log(ratio)
        return 1 / ratio + math.log(ratio) - 1

    penalty = 0.1 * (k3(1.5) + k3(0.9) + k3(0.5))
    assert loss("dapo", beta=0.1, ref=torch.zeros(2, 3)) == pytest.approx(
        (sum(ROW_SUMS) + penalty) / 3
    )
    assert kl_to_reference(torch.tensor([0.0]), torch.tensor([0.0])).item() == 0.0


def test_clipped_tokens_are_counted_by_side() -> None:
    logprobs = RATIOS.log()
    parts = policy_loss(
        logprobs, torch.zeros_like(logprobs), ADVANTAGES, MASK, TOTALS, LossConfig()
    )
    assert parts.clipped_high_sum == 1.0  # ratio 1.5 > 1.2 with a positive advantage
    assert parts.clipped_low_sum == 1.0  # ratio 0.5 < 0.8 with a negative advantage


def test_masked_tokens_get_no_gradient() -> None:
    logprobs = RATIOS.log().clone().requires_grad_(True)
    parts = policy_loss(logprobs, torch.zeros(2, 3), ADVANTAGES, MASK, TOTALS, LossConfig())
    parts.loss.backward()
    assert logprobs.grad is not None
    assert logprobs.grad[MASK == 0].abs().sum().item() == 0.0
    # unclipped token of row 0: d(-ratio * A)/d logprob = -ratio * A / tokens
    assert logprobs.grad[0, 1].item() == pytest.approx(-0.9 / 3)
    # clipped tokens carry no gradient
    assert logprobs.grad[0, 0].item() == 0.0


@pytest.mark.parametrize("loss_type", ["grpo", "dapo", "dr_grpo"])
def test_micro_batches_add_up_to_the_batch(loss_type: str) -> None:
    config = LossConfig(loss_type=loss_type, max_completion_tokens=4)
    logprobs = RATIOS.log()
    old = torch.zeros_like(logprobs)
    whole = policy_loss(logprobs, old, ADVANTAGES, MASK, TOTALS, config).loss
    halves = sum(
        policy_loss(
            logprobs[i : i + 1],
            old[i : i + 1],
            ADVANTAGES[i : i + 1],
            MASK[i : i + 1],
            TOTALS,
            config,
        ).loss
        for i in range(2)
    )
    assert float(halves) == pytest.approx(float(whole))
