"""One GRPO step: sample a group of completions per prompt, grade them, turn rewards into
group-relative advantages and update the LoRA weights with the clipped policy-gradient loss.

Two ways to get the log-probabilities the loss differentiates:
- one policy update per batch (num_iterations == 1): sampling runs with autograd on, so the
  sampling forward passes are the training forward; old log-probs are those same values,
  detached (ratio 1), and no second forward runs;
- several updates (num_iterations > 1): sampling runs without autograd, then each update
  recomputes log-probs in one batched forward; the first update's values, detached, are the
  old log-probs for the later ones (the weights have not moved yet when they are computed).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from app.graders import BatchGrader, BatchGrades, make_sample
from worker.trainer.advantages import Advantages, group_advantages
from worker.trainer.logprobs import score_completions
from worker.trainer.losses import BatchTotals, LossConfig, LossParts, policy_loss
from worker.trainer.models import Policy
from worker.trainer.sampling import PromptBatch, Rollout, sample

# A fused step keeps the autograd graph of every decoding step; above this many sampled
# tokens (~1.5 GB of activations for a 135M model) the batched path with micro-batches is used.
MAX_FUSED_TOKENS = 4096
# Largest logits tensor a batched forward may hold at once (micro-batches of prompts).
MAX_LOGITS_BYTES = 512 * 1024**2


@dataclass(frozen=True)
class RFTConfig:
    group_size: int
    max_completion_tokens: int
    temperature: float
    top_p: float
    scale_rewards: str
    num_iterations: int
    max_grad_norm: float
    loss: LossConfig

    @classmethod
    def from_hyperparameters(cls, hp: dict[str, Any]) -> RFTConfig:
        return cls(
            group_size=hp["group_size"],
            max_completion_tokens=hp["max_completion_tokens"],
            temperature=hp["temperature"],
            top_p=hp["top_p"],
            scale_rewards=hp["scale_rewards"],
            num_iterations=hp["num_iterations"],
            max_grad_norm=1.0,
            loss=LossConfig(
                loss_type=hp["loss_type"],
                epsilon_low=hp["epsilon"],
                epsilon_high=hp["epsilon_high"],
                beta=hp["beta"],
                max_completion_tokens=hp["max_completion_tokens"],
            ),
        )


@dataclass
class Graded:
    rollout: Rollout
    texts: list[str]
    grades: BatchGrades
    rewards: Tensor


@dataclass
class StepOutcome:
    graded: Graded
    advantages: Advantages
    timing: dict[str, float]
    trained_tokens: int
    trl: dict[str, Any] = field(default_factory=dict)


def decode_completions(policy: Policy, rollout: Rollout) -> list[str]:
    texts = []
    for ids, mask in zip(
        rollout.completion_ids.tolist(), rollout.completion_mask.tolist(), strict=True
    ):
        kept = [token for token, keep in zip(ids, mask, strict=True) if keep]
        texts.append(policy.tokenizer.decode(kept, skip_special_tokens=True))
    return texts


def sample_and_grade(
    policy: Policy,
    grader: BatchGrader,
    prompts: PromptBatch,
    items: list[dict[str, Any]],
    group_size: int,
    config: RFTConfig,
    generator: torch.Generator,
    with_grad: bool,
) -> tuple[Graded, float, float]:
    """Sample `group_size` completions per prompt and grade each against its prompt's item.
    Returns the graded rollout and the seconds spent sampling and grading."""
    started = time.perf_counter()
    with policy.autocast():
        rollout = sample(
            policy.model,
            prompts,
            group_size,
            config.max_completion_tokens,
            config.temperature,
            config.top_p,
            policy.eos_ids,
            policy.pad_id,
            generator,
            with_grad=with_grad,
        )
    sampled = time.perf_counter()
    texts = decode_completions(policy, rollout)
    item_per_row = [item for item in items for _ in range(group_size)]
    grades = grader.grade([make_sample(text) for text in texts], item_per_row)
    rewards = torch.tensor(grades.rewards, dtype=torch.float32, device=prompts.input_ids.device)
    graded = Graded(rollout, texts, grades, rewards)
    return graded, sampled - started, time.perf_counter() - sampled


def prompts_per_micro_batch(policy: Policy, group_size: int, completion_tokens: int) -> int:
    vocab = policy.model.config.vocab_size
    bytes_per_prompt = group_size * completion_tokens * vocab * 4 * 3
    return max(1, MAX_LOGITS_BYTES // bytes_per_prompt)


def reference_logprobs(
    policy: Policy, prompts: PromptBatch, rollout: Rollout, config: RFTConfig
) -> Tensor:
    """Log-probs under the base model: the same network with the adapter switched off."""
    chunk = prompts_per_micro_batch(policy, config.group_size, rollout.completion_ids.shape[1])
    parts = []
    with torch.no_grad(), policy.model.disable_adapter(), policy.autocast():
        for start in range(0, len(prompts), chunk):
            rows = slice(start * config.group_size, (start + chunk) * config.group_size)
            scores = score_completions(
                policy.model,
                prompts.select(slice(start, start + chunk)),
                rollout.completion_ids[rows],
                config.group_size,
                config.temperature,
            )
            parts.append(scores.logprobs)
    return torch.cat(parts)


def rft_step(
    policy: Policy,
    optimizer: torch.optim.Optimizer,
    grader: BatchGrader,
    prompts: PromptBatch,
    items: list[dict[str, Any]],
    config: RFTConfig,
    generator: torch.Generator,
) -> StepOutcome:
    n_sampled = len(prompts) * config.group_size * config.max_completion_tokens
    fused = config.num_iterations == 1 and n_sampled <= MAX_FUSED_TOKENS
    policy.model.train()
    optimizer.zero_grad(set_to_none=True)
    graded, sampling_time, grading_time = sample_and_grade(
        policy, grader, prompts, items, config.group_size, config, generator, with_grad=fused
    )
    started = time.perf_counter()
    rollout = graded.rollout
    advantages = group_advantages(graded.rewards, config.group_size, config.scale_rewards)
    mask = rollout.completion_mask
    totals = BatchTotals(sequences=mask.shape[0], tokens=float(mask.sum()))
    ref = reference_logprobs(policy, prompts, rollout, config) if config.loss.beta else None
    if fused:
        parts = [
            policy_loss(
                rollout.logprobs,
                rollout.logprobs.detach(),
                advantages.values,
                mask,
                totals,
                config.loss,
                ref,
            )
        ]
        parts[0].loss.backward()
        grad_norm = clip_and_step(policy, optimizer, config.max_grad_norm)
        entropies = rollout.entropies
    else:
        parts, grad_norm, entropies = batched_updates(
            policy, optimizer, prompts, rollout, advantages.values, totals, config, ref
        )
    training_time = time.perf_counter() - started
    prompt_tokens = sum(prompts.lengths) * config.group_size
    trl = step_statistics(graded, advantages, parts, totals, entropies, config)
    trl |= {"grad_norm": grad_norm, "fused_sampling_and_training": fused}
    timing = {"sampling": sampling_time, "grading": grading_time, "training": training_time}
    return StepOutcome(graded, advantages, timing, prompt_tokens + int(totals.tokens), trl)


def batched_updates(
    policy: Policy,
    optimizer: torch.optim.Optimizer,
    prompts: PromptBatch,
    rollout: Rollout,
    advantages: Tensor,
    totals: BatchTotals,
    config: RFTConfig,
    ref: Tensor | None,
) -> tuple[list[LossParts], float, Tensor]:
    """`num_iterations` optimizer steps on one batch of samples, in micro-batches of prompts."""
    group = config.group_size
    chunk = prompts_per_micro_batch(policy, group, rollout.completion_ids.shape[1])
    old_logprobs: list[Tensor] = []
    entropies: list[Tensor] = []
    grad_norm = 0.0
    for iteration in range(config.num_iterations):
        parts = []
        optimizer.zero_grad(set_to_none=True)
        for index, start in enumerate(range(0, len(prompts), chunk)):
            rows = slice(start * group, (start + chunk) * group)
            with policy.autocast():
                scores = score_completions(
                    policy.model,
                    prompts.select(slice(start, start + chunk)),
                    rollout.completion_ids[rows],
                    group,
                    config.temperature,
                )
            if iteration == 0:
                old_logprobs.append(scores.logprobs.detach())
                entropies.append(scores.entropies)
            part = policy_loss(
                scores.logprobs,
                old_logprobs[index],
                advantages[rows],
                rollout.completion_mask[rows],
                totals,
                config.loss,
                None if ref is None else ref[rows],
            )
            part.loss.backward()
            parts.append(part)
        grad_norm = clip_and_step(policy, optimizer, config.max_grad_norm)
    return parts, grad_norm, torch.cat(entropies)


def clip_and_step(policy: Policy, optimizer: torch.optim.Optimizer, max_grad_norm: float) -> float:
    norm = torch.nn.utils.clip_grad_norm_(policy.trainable_parameters(), max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(norm)


def step_statistics(
    graded: Graded,
    advantages: Advantages,
    parts: list[LossParts],
    totals: BatchTotals,
    entropies: Tensor,
    config: RFTConfig,
) -> dict[str, Any]:
    """TRL's names for the step's figures (clip and KL figures are from the last update)."""
    rollout = graded.rollout
    lengths = rollout.lengths
    ended = rollout.ended
    tokens = max(totals.tokens, 1.0)
    low = sum(part.clipped_low_sum for part in parts) / tokens
    high = sum(part.clipped_high_sum for part in parts) / tokens
    stats: dict[str, Any] = {
        "loss": float(sum(float(part.loss.detach()) for part in parts)),
        "reward": float(graded.rewards.mean()),
        "reward_std": float(advantages.group_std.mean()),
        "frac_reward_zero_std": advantages.frac_reward_zero_std,
        "completions/mean_length": float(lengths.mean()),
        "completions/min_length": float(lengths.min()),
        "completions/max_length": float(lengths.max()),
        "completions/clipped_ratio": float((~ended).float().mean()),
        "completions/mean_terminated_length": float(lengths[ended].mean()) if ended.any() else 0.0,
        "entropy": float((entropies * rollout.completion_mask).sum() / tokens),
        "clip_ratio/low_mean": low,
        "clip_ratio/high_mean": high,
        "clip_ratio/region_mean": low + high,
        "kl": sum(part.kl_sum for part in parts) / tokens if config.loss.beta else None,
    }
    return stats


def evaluate_rewards(
    policy: Policy,
    grader: BatchGrader,
    prompt_batches: list[tuple[PromptBatch, list[dict[str, Any]]]],
    samples_per_prompt: int,
    config: RFTConfig,
    generator: torch.Generator,
) -> tuple[BatchGrades, float]:
    """Sample `samples_per_prompt` completions for every validation prompt and grade them all.
    Returns the grades and the mean completion length in tokens."""
    policy.model.eval()
    results = []
    lengths = []
    for prompts, items in prompt_batches:
        graded, _, _ = sample_and_grade(
            policy, grader, prompts, items, samples_per_prompt, config, generator, with_grad=False
        )
        results.extend(graded.grades.results)
        lengths.append(graded.rollout.lengths)
    return BatchGrades(results), float(torch.cat(lengths).mean())
