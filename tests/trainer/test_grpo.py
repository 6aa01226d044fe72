"""Dynamic sampling: more prompts are sampled while too few groups carry signal, and the update
uses the groups that do."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from app.graders import BatchGrader, GraderConfig
from app.jobs.hyperparameters import resolve_hyperparameters
from worker.trainer.data import encode_prompt, grader_item
from worker.trainer.grpo import Draw, RFTConfig, collect_groups, rft_step
from worker.trainer.methods import Reinforcement
from worker.trainer.sampling import PromptBatch

from .conftest import CONTAINS_E, question_rows

# "like" a character the tiny model never writes: every completion scores 0, no signal;
# one-token completions contain "e" about half the time, so groups of 8 almost surely differ
NEVER = "\u2603"


def draw_of(policy: Any, letters: list[str]) -> Draw:
    rows = question_rows(len(letters))
    ids = [encode_prompt(policy.tokenizer, row) for row in rows]
    items = [
        grader_item(row | {"letter": letter}) for row, letter in zip(rows, letters, strict=True)
    ]
    return Draw(PromptBatch.from_ids(ids, policy.pad_id, policy.device), items)


def config(rounds: int, group_size: int = 8) -> RFTConfig:
    hp = resolve_hyperparameters(
        "reinforcement",
        {"sampling_rounds": rounds, "group_size": group_size, "max_completion_tokens": 1},
        8,
        1,
    )
    return RFTConfig.from_hyperparameters(hp)


@pytest.fixture
def grader() -> Any:
    with BatchGrader(CONTAINS_E, GraderConfig()) as batch_grader:
        yield batch_grader


def test_samples_more_prompts_until_the_batch_has_signal(tiny_policy: Any, grader: Any) -> None:
    draws = [
        draw_of(tiny_policy, [NEVER] * 4),
        draw_of(tiny_policy, ["e", NEVER, "e", NEVER]),
        draw_of(tiny_policy, ["e"] * 4),
        draw_of(tiny_policy, ["e"] * 4),  # not reached: the batch is full after three rounds
    ]
    collected = collect_groups(tiny_policy, grader, iter(draws), config(4), torch.Generator())
    assert collected.rounds == 3
    assert collected.signal_groups == 6
    assert collected.first.rewards.sum() == 0  # the step's own batch is what it reports
    tokens = draws[1].prompts.token_lists()
    assert collected.prompt_ids[:2] == [tokens[0], tokens[2]]
    assert collected.prompt_ids[2:] == draws[2].prompts.token_lists()
    rewards = collected.graded.rewards.view(6, 8)
    assert (rewards.std(dim=1) > 0).all()
    assert collected.graded.rollout.completion_ids.shape[0] == 48
    assert len(collected.graded.texts) == len(collected.graded.grades.results) == 48


def test_one_round_keeps_the_whole_batch(tiny_policy: Any, grader: Any) -> None:
    draws = [draw_of(tiny_policy, ["e", NEVER]), draw_of(tiny_policy, ["e", "e"])]
    collected = collect_groups(tiny_policy, grader, iter(draws), config(1), torch.Generator())
    assert (collected.rounds, collected.signal_groups) == (1, 1)
    assert collected.graded is collected.first  # zero-std groups stay, as without the option


def test_without_any_signal_the_step_reports_its_own_batch(tiny_policy: Any, grader: Any) -> None:
    draws = [draw_of(tiny_policy, [NEVER] * 2) for _ in range(5)]
    optimizer = torch.optim.AdamW(tiny_policy.trainable_parameters(), lr=1e-3)
    outcome = rft_step(tiny_policy, optimizer, grader, iter(draws), config(3), torch.Generator())
    assert outcome.trl["sampling/rounds"] == 3
    assert outcome.trl["sampling/signal_groups"] == 0
    assert outcome.trl["trained_completions"] == 0
    assert outcome.advantages.frac_reward_zero_std == 1.0


def test_extra_prompts_are_other_rows_and_the_same_on_a_rerun(
    tiny_policy: Any, grader: Any
) -> None:
    rows = question_rows(10, letter="e")
    hp = resolve_hyperparameters("reinforcement", {"batch_size": 4}, len(rows), 1)
    optimizer = torch.optim.AdamW(tiny_policy.trainable_parameters(), lr=1e-3)
    method = Reinforcement(tiny_policy, optimizer, grader, rows, rows[:1], hp, seed=0)

    def first_draws(step: int) -> list[list[list[int]]]:
        draws = method.draws(step)
        return [next(draws).prompts.token_lists() for _ in range(4)]

    own, *extra = first_draws(3)
    scheduled = [method.prompt_ids[i] for i in method.order.indices(2)]
    assert own == scheduled
    # the six other rows come first, then the cycle starts again
    assert not any(ids in own for ids in extra[0] + extra[1][:2])
    assert first_draws(3) == [own, *extra]
    assert first_draws(4)[1] != extra[0]
