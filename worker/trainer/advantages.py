"""Group-relative advantages (GRPO): each completion is judged against the other completions
of the same prompt."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

# added to the std before dividing, as TRL does, so near-constant groups do not explode
STD_EPSILON = 1e-4


@dataclass
class Advantages:
    values: Tensor  # [B*G]
    group_std: Tensor  # [B] std of each group's rewards
    zero_std_groups: int  # groups whose rewards are all equal: no learning signal

    @property
    def frac_reward_zero_std(self) -> float:
        return self.zero_std_groups / len(self.group_std)


def group_advantages(rewards: Tensor, group_size: int, scale_rewards: str) -> Advantages:
    """advantage = r - mean(r of its group), divided by the group's std ("group"), by the std
    of the whole batch ("batch"), or not at all ("none", Dr. GRPO). Stds are unbiased."""
    grouped = rewards.view(-1, group_size)
    centred = grouped - grouped.mean(dim=1, keepdim=True)
    group_std = grouped.std(dim=1)
    if scale_rewards == "group":
        centred = centred / (group_std[:, None] + STD_EPSILON)
    elif scale_rewards == "batch":
        centred = centred / (rewards.std() + STD_EPSILON)
    elif scale_rewards != "none":
        raise ValueError(f"unknown scale_rewards {scale_rewards!r}")
    zero_std = ~differing_groups(rewards, group_size)
    return Advantages(centred.reshape(-1), group_std, int(zero_std.sum()))


def differing_groups(rewards: Tensor, group_size: int) -> Tensor:
    """[B] bool: the groups whose rewards are not all equal, the ones that carry signal."""
    group_std = rewards.view(-1, group_size).std(dim=1)
    return ~torch.isclose(group_std, torch.zeros_like(group_std))
