"""Group-relative advantages against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from worker.trainer.advantages import STD_EPSILON, group_advantages

# group 1: one success in four; group 2: all equal (no signal)
REWARDS = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.5, 0.5, 0.5, 0.5])


def test_group_scaling() -> None:
    result = group_advantages(REWARDS, group_size=4, scale_rewards="group")
    # group 1: mean 0.25, unbiased std sqrt((0.75^2 + 3 * 0.25^2) / 3) = 0.5
    expected_first = [0.75, -0.25, -0.25, -0.25]
    assert result.values[:4].tolist() == pytest.approx(
        [v / (0.5 + STD_EPSILON) for v in expected_first]
    )
    assert result.values[4:].tolist() == [0.0] * 4
    assert result.group_std.tolist() == pytest.approx([0.5, 0.0])
    assert result.zero_std_groups == 1
    assert result.frac_reward_zero_std == 0.5


def test_batch_scaling() -> None:
    result = group_advantages(REWARDS, group_size=4, scale_rewards="batch")
    # batch mean 0.375; squared deviations 0.390625 + 3 * 0.140625 + 4 * 0.015625 = 0.875
    batch_std = math.sqrt(0.875 / 7)
    assert result.values[0].item() == pytest.approx(0.75 / (batch_std + STD_EPSILON))
    assert result.values[1].item() == pytest.approx(-0.25 / (batch_std + STD_EPSILON))
    assert result.values[4:].tolist() == [0.0] * 4


def test_no_scaling() -> None:
    result = group_advantages(REWARDS, group_size=4, scale_rewards="none")
    assert result.values.tolist() == pytest.approx([0.75, -0.25, -0.25, -0.25, 0, 0, 0, 0])


def test_all_equal_rewards_carry_no_signal() -> None:
    result = group_advantages(torch.zeros(12), group_size=4, scale_rewards="group")
    assert result.zero_std_groups == 3
    assert result.frac_reward_zero_std == 1.0
    assert result.values.abs().sum().item() == 0.0
