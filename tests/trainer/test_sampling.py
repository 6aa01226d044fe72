"""Sampling on the tiny model: end-of-turn masking, padding, determinism, and the identity
between log-probs recorded while sampling and those of a separate batched forward."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from worker.trainer.data import encode_prompt
from worker.trainer.logprobs import score_completions
from worker.trainer.sampling import PromptBatch, sample, top_p_filter

from .conftest import question_rows


def prompts_of(policy: Any, texts: list[str]) -> PromptBatch:
    rows = [{"messages": [{"role": "user", "content": text}]} for text in texts]
    ids = [encode_prompt(policy.tokenizer, row) for row in rows]
    return PromptBatch.from_ids(ids, policy.pad_id, policy.device)


def draw(
    policy: Any, prompts: PromptBatch, seed: int, eos_ids: torch.Tensor | None = None, **kw: Any
) -> Any:
    generator = torch.Generator().manual_seed(seed)
    eos = policy.eos_ids if eos_ids is None else eos_ids
    options = {"group_size": 4, "max_tokens": 6, "temperature": 1.0, "top_p": 1.0} | kw
    return sample(
        policy.model, prompts, eos_ids=eos, pad_id=policy.pad_id, generator=generator, **options
    )


def test_tokens_after_end_of_turn_are_padding_and_masked(tiny_policy: Any) -> None:
    prompts = prompts_of(tiny_policy, ["Hello there", "A longer question, with more words in it?"])
    # treat half of the vocabulary as end-of-turn so completions end at different lengths
    eos_ids = torch.arange(0, tiny_policy.model.config.vocab_size, 2)
    rollout = draw(tiny_policy, prompts, seed=3, eos_ids=eos_ids, max_tokens=8)
    lengths = rollout.completion_mask.sum(1).tolist()
    assert len(set(lengths)) > 1, "the test needs completions of several lengths"
    for ids, mask, ended in zip(
        rollout.completion_ids.tolist(),
        rollout.completion_mask.tolist(),
        rollout.ended.tolist(),
        strict=True,
    ):
        length = int(sum(mask))
        assert mask == [1.0] * length + [0.0] * (len(mask) - length)
        assert all(token == tiny_policy.pad_id for token in ids[length:])
        if ended:  # the end-of-turn token itself is kept and scored
            assert ids[length - 1] % 2 == 0
        assert all(token % 2 == 1 for token in ids[: length - 1])


def test_same_seed_same_completions(tiny_policy: Any) -> None:
    prompts = prompts_of(tiny_policy, ["One", "Two"])
    first = draw(tiny_policy, prompts, seed=7)
    again = draw(tiny_policy, prompts, seed=7)
    other = draw(tiny_policy, prompts, seed=8)
    assert torch.equal(first.completion_ids, again.completion_ids)
    assert not torch.equal(first.completion_ids, other.completion_ids)


def test_sampling_logprobs_equal_a_batched_forward(tiny_policy: Any) -> None:
    # prompts of different lengths: left padding and position ids must not change the numbers
    prompts = prompts_of(tiny_policy, ["Hi", "What is the capital city of France, please?"])
    with torch.no_grad():
        rollout = draw(tiny_policy, prompts, seed=1, temperature=0.7)
        scores = score_completions(
            tiny_policy.model, prompts, rollout.completion_ids, 4, temperature=0.7
        )
    mask = rollout.completion_mask.bool()
    assert torch.allclose(rollout.logprobs[mask], scores.logprobs[mask], atol=1e-4)
    assert torch.allclose(rollout.entropies[mask], scores.entropies[mask], atol=1e-3)


def test_a_prompt_scores_the_same_alone_and_padded_in_a_batch(tiny_policy: Any) -> None:
    both = prompts_of(tiny_policy, ["Hi", "What is the capital city of France, please?"])
    alone = prompts_of(tiny_policy, ["Hi"])
    completions = torch.randint(100, 5000, (2, 5), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        batched = score_completions(tiny_policy.model, both, completions, group_size=1)
        single = score_completions(tiny_policy.model, alone, completions[:1], group_size=1)
    assert torch.allclose(batched.logprobs[0], single.logprobs[0], atol=1e-4)


def test_gradients_through_sampling_equal_gradients_of_a_batched_forward(tiny_policy: Any) -> None:
    prompts = prompts_of(tiny_policy, ["Hi", "Tell me something longer"])
    weights = torch.linspace(-1, 1, 8)[:, None]
    rollout = draw(tiny_policy, prompts, seed=2, with_grad=True)
    (weights * rollout.logprobs * rollout.completion_mask).sum().backward()
    fused = [p.grad.clone() for p in tiny_policy.trainable_parameters()]
    tiny_policy.model.zero_grad()
    scores = score_completions(tiny_policy.model, prompts, rollout.completion_ids, 4)
    (weights * scores.logprobs * rollout.completion_mask).sum().backward()
    batched = [p.grad for p in tiny_policy.trainable_parameters()]
    assert any(g.abs().sum() > 0 for g in fused)
    for a, b in zip(fused, batched, strict=True):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-3)


def test_top_p_keeps_the_smallest_set_reaching_p() -> None:
    logprobs = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log()
    kept = top_p_filter(logprobs, 0.7).exp()
    assert kept.tolist()[0] == pytest.approx([0.5, 0.3, 0.0, 0.0])
    assert torch.equal(top_p_filter(logprobs, 1.0), logprobs)


def test_rows_are_prompt_major(tiny_policy: Any) -> None:
    rows = question_rows(3)
    ids = [encode_prompt(tiny_policy.tokenizer, row) for row in rows]
    prompts = PromptBatch.from_ids(ids, tiny_policy.pad_id, tiny_policy.device)
    with torch.no_grad():
        rollout = draw(tiny_policy, prompts, seed=0, group_size=2, max_tokens=3)
        # row 2 continues prompt 1: scoring it against prompt 1 alone gives the same numbers
        alone = PromptBatch.from_ids(ids[1:2], tiny_policy.pad_id, tiny_policy.device)
        scores = score_completions(tiny_policy.model, alone, rollout.completion_ids[2:3], 1)
    mask = rollout.completion_mask[2].bool()
    assert torch.allclose(rollout.logprobs[2][mask], scores.logprobs[0][mask], atol=1e-4)
