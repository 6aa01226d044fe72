"""One GRPO step: sample a group of completions per prompt, grade them, turn rewards into
group-relative advantages and update the LoRA weights with the clipped policy-gradient loss.

Sampling runs without autograd; each update then scores the completions in one packed forward
(see logprobs.py). Completions whose advantage is zero add nothing to the policy gradient, so
with beta = 0 they are left out of the training forward altogether; a batch where every group
scored evenly skips the forward and backward (the optimizer still steps, as it would on a zero
gradient). With num_iterations > 1 the first update's log-probs, detached, are the old
log-probs of the later ones: the weights have not moved when they are computed.

Dynamic sampling (DAPO): while fewer than `batch_size` groups carry signal, another batch of
prompts is sampled, up to `sampling_rounds` batches per step; the update then uses only the
groups with signal. A policy that has settled on one answer per prompt keeps exploring, on
cheap short completions, instead of stepping on nothing.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from app.graders import BatchGrader, BatchGrades
from app.jobs.hyperparameters import Hyperparameters
from app.tool_calls import ToolFormat
from worker.constrained import Constraint, ConstraintBatch, vocab_info
from worker.trainer.advantages import Advantages, differing_groups, group_advantages
from worker.trainer.data import answer_sample
from worker.trainer.fused_decoder import FusedDecoder
from worker.trainer.logprobs import as_matrix, pack, score_packed
from worker.trainer.losses import BatchTotals, LossConfig, LossParts, policy_loss
from worker.trainer.models import Policy
from worker.trainer.sampling import PromptBatch, Rollout, decoding, sample
from worker.trainer.stops import turn_answer

# Tokens packed into one training forward; more are split into micro-batches of prompts.
# The attention mask is [sequences, L, L] and activations grow with it: this bounds memory.
MAX_PACKED_TOKENS = 4096


@dataclass(frozen=True)
class RFTConfig:
    group_size: int
    max_completion_tokens: int
    temperature: float
    top_p: float
    scale_rewards: str
    num_iterations: int
    sampling_rounds: int
    max_grad_norm: float
    loss: LossConfig
    # what every completion must match (the job's response_format); None: free text
    constraint: Constraint | None = None

    @classmethod
    def from_hyperparameters(
        cls, hp: Hyperparameters, constraint: Constraint | None = None
    ) -> RFTConfig:
        return cls(
            group_size=hp.group_size,
            max_completion_tokens=hp.max_completion_tokens,
            temperature=hp.temperature,
            top_p=hp.top_p,
            scale_rewards=hp.scale_rewards,
            num_iterations=hp.num_iterations,
            sampling_rounds=hp.sampling_rounds,
            max_grad_norm=1.0,
            loss=LossConfig(
                loss_type=hp.loss_type,
                epsilon_low=hp.epsilon,
                epsilon_high=hp.epsilon_high,
                beta=hp.beta,
                max_completion_tokens=hp.max_completion_tokens,
            ),
            constraint=constraint,
        )


@dataclass
class Graded:
    rollout: Rollout
    texts: list[str]
    grades: BatchGrades
    rewards: Tensor


@dataclass
class Draw:
    """One batch of prompts to sample, with the grader items of its rows."""

    prompts: PromptBatch
    items: list[dict[str, Any]]
    # per row, the model's tool-call format where the row gives tools (None: none to parse)
    answer_formats: list[ToolFormat | None] | None = None


@dataclass
class Collected:
    first: Graded  # the step's own batch, whose figures the step reports
    first_advantages: Advantages
    prompt_ids: list[list[int]]  # one per group trained on
    prompt_images: list[Tensor | None] | None  # a vision model's: each prompt's images
    graded: Graded  # the groups trained on, in the order of prompt_ids
    rounds: int
    signal_groups: int
    sampled_tokens: int  # prompt and completion tokens of every sampled completion
    sampling_time: float
    grading_time: float


@dataclass
class StepOutcome:
    graded: Graded  # the step's own batch
    advantages: Advantages
    timing: dict[str, float]
    trained_tokens: int  # prompt and completion tokens sampled (and trained on, where they count)
    trl: dict[str, Any]


def decode_completions(policy: Policy, rollout: Rollout) -> list[str]:
    """Each completion's answer: its text without the template's separator before it or the
    turn stop it ended on (turn_answer)."""
    texts = [
        policy.tokenizer.decode(tokens, skip_special_tokens=True)
        for tokens in rollout.completions()
    ]
    return [turn_answer(text, policy.answer_separator, policy.turn_stops) for text in texts]


def sample_rollout(
    policy: Policy,
    prompts: PromptBatch,
    group_size: int,
    config: RFTConfig,
    generator: torch.Generator,
    fast: FusedDecoder | None,
) -> Rollout:
    """Completions from the current policy; call within `decoding(policy)`."""
    constraints = None
    if config.constraint is not None:
        vocab = vocab_info(policy.tokenizer, policy.eos_ids.tolist())
        constraints = ConstraintBatch(vocab, [config.constraint] * (len(prompts) * group_size))
    with policy.autocast():
        return sample(
            policy,
            prompts,
            group_size,
            config.max_completion_tokens,
            config.temperature,
            config.top_p,
            generator,
            fast=fast,
            constraints=constraints,
        )


def sampled_tokens(prompts: PromptBatch, rollout: Rollout, group_size: int) -> int:
    """Prompt and completion tokens of each sampled completion (its prompt counted for each)."""
    return sum(prompts.lengths) * group_size + int(rollout.completion_mask.sum())


def grade(
    policy: Policy,
    grader: BatchGrader,
    rollout: Rollout,
    items: list[dict[str, Any]],
    group_size: int,
    answer_formats: list[ToolFormat | None] | None = None,
) -> Graded:
    """Grade each completion against the item of its prompt, its tool calls parsed where the
    prompt gave tools."""
    texts = decode_completions(policy, rollout)
    item_per_row = [item for item in items for _ in range(group_size)]
    formats = answer_formats or [None] * len(items)
    format_per_row = [answer_format for answer_format in formats for _ in range(group_size)]
    samples = [
        answer_sample(text, answer_format)
        for text, answer_format in zip(texts, format_per_row, strict=True)
    ]
    grades = grader.grade(samples, item_per_row)
    rewards = torch.tensor(grades.rewards, dtype=torch.float32, device=policy.device)
    return Graded(rollout, texts, grades, rewards)


def micro_batches(
    prompts: list[list[int]], completions: list[list[int]], rows: list[int], group_size: int
) -> list[list[tuple[int, int, list[int]]]]:
    """(row, prompt index, tokens) for the training rows, split by prompt so that each
    micro-batch packs at most MAX_PACKED_TOKENS tokens (a prompt's group is never split)."""
    batches: list[list[tuple[int, int, list[int]]]] = []
    current: list[tuple[int, int, list[int]]] = []
    size = 0
    for prompt_index in sorted({row // group_size for row in rows}):
        group = [(r, prompt_index, completions[r]) for r in rows if r // group_size == prompt_index]
        group_tokens = len(prompts[prompt_index]) + sum(len(tokens) for _, _, tokens in group)
        if current and size + group_tokens > MAX_PACKED_TOKENS:
            batches.append(current)
            current, size = [], 0
        current += group
        size += group_tokens
    return batches + ([current] if current else [])


def collect_groups(
    policy: Policy,
    grader: BatchGrader,
    draws: Iterable[Draw],
    config: RFTConfig,
    generator: torch.Generator,
) -> Collected:
    """Sample and grade batches from `draws` (the step's own batch first) until `batch_size`
    groups carry signal or `sampling_rounds` batches are spent. Keeps the groups with signal;
    if none has any, keeps the first batch, so the step still reports and steps as usual."""
    G = config.group_size
    rounds: list[tuple[Draw, Graded, list[int]]] = []
    sampling_time = grading_time = 0.0
    tokens = 0
    for draw in itertools.islice(draws, config.sampling_rounds):
        started = time.perf_counter()
        with decoding(policy) as fast:
            rollout = sample_rollout(policy, draw.prompts, G, config, generator, fast)
        tokens += sampled_tokens(draw.prompts, rollout, G)
        sampled = time.perf_counter()
        graded = grade(policy, grader, rollout, draw.items, G, draw.answer_formats)
        grading_time += time.perf_counter() - sampled
        sampling_time += sampled - started
        signal = differing_groups(graded.rewards, G).nonzero().squeeze(1).tolist()
        rounds.append((draw, graded, signal))
        if sum(len(groups) for _, _, groups in rounds) >= len(rounds[0][0].prompts):
            break
    first_draw, first, _ = rounds[0]
    kept = [(draw, graded, groups) for draw, graded, groups in rounds if groups]
    signal_groups = sum(len(groups) for _, _, groups in kept)
    if config.sampling_rounds == 1 or not kept:
        kept = [(first_draw, first, list(range(len(first_draw.prompts))))]
    prompt_ids = [d.prompts.token_lists() for d, _, _ in kept]
    prompt_ids = [
        ids[g] for ids, (_, _, groups) in zip(prompt_ids, kept, strict=True) for g in groups
    ]
    images = [d.prompts.images for d, _, _ in kept]
    prompt_images = None
    if all(per_prompt is not None for per_prompt in images):
        prompt_images = [
            per_prompt[g]  # type: ignore[index]
            for per_prompt, (_, _, groups) in zip(images, kept, strict=True)
            for g in groups
        ]
    graded = merge_groups([(g, groups) for _, g, groups in kept], G, policy.pad_id)
    return Collected(
        first=first,
        first_advantages=group_advantages(first.rewards, G, config.scale_rewards),
        prompt_ids=prompt_ids,
        prompt_images=prompt_images,
        graded=graded,
        rounds=len(rounds),
        signal_groups=signal_groups,
        sampled_tokens=tokens,
        sampling_time=sampling_time,
        grading_time=grading_time,
    )


def merge_groups(parts: list[tuple[Graded, list[int]]], group_size: int, pad_id: int) -> Graded:
    """The chosen groups of several graded batches as one."""
    if len(parts) == 1 and len(parts[0][1]) * group_size == len(parts[0][0].texts):
        return parts[0][0]
    rows = [
        [group * group_size + k for group in groups for k in range(group_size)]
        for _, groups in parts
    ]
    rollout = Rollout.concat(
        [g.rollout.rows(r) for (g, _), r in zip(parts, rows, strict=True)], pad_id
    )
    texts = [g.texts[i] for (g, _), r in zip(parts, rows, strict=True) for i in r]
    results = [g.grades.results[i] for (g, _), r in zip(parts, rows, strict=True) for i in r]
    rewards = torch.cat([g.rewards[r] for (g, _), r in zip(parts, rows, strict=True)])
    return Graded(rollout, texts, BatchGrades(results), rewards)


def rft_step(
    policy: Policy,
    optimizer: torch.optim.Optimizer,
    grader: BatchGrader,
    draws: Iterable[Draw],
    config: RFTConfig,
    generator: torch.Generator,
    collected: Collected | None = None,
) -> StepOutcome:
    """One step on the step's own batch, the first of `draws`, topped up from the others
    where its groups lack signal. `collected`: the step's samples, already drawn from the
    current weights (the first step's, looked at before training)."""
    policy.model.eval()
    if collected is None:
        collected = collect_groups(policy, grader, draws, config, generator)
    training_started = time.perf_counter()
    rollout = collected.graded.rollout
    advantages = collected.first_advantages
    if collected.graded is not collected.first:
        advantages = group_advantages(
            collected.graded.rewards, config.group_size, config.scale_rewards
        )
    mask = rollout.completion_mask
    totals = BatchTotals(sequences=mask.shape[0], tokens=float(mask.sum()))
    if config.loss.beta:
        rows = list(range(mask.shape[0]))
    else:  # a zero advantage contributes nothing to the policy gradient
        rows = advantages.values.nonzero().squeeze(1).tolist()
    prompt_ids = collected.prompt_ids
    batches = micro_batches(prompt_ids, rollout.completions(), rows, config.group_size)
    parts, grad_norm = updates(
        policy,
        optimizer,
        (prompt_ids, collected.prompt_images),
        batches,
        rollout,
        advantages.values,
        totals,
        config,
    )
    training_time = time.perf_counter() - training_started
    trl = step_statistics(collected.first, collected.first_advantages, parts, totals, config)
    trl |= {
        "grad_norm": grad_norm,
        "trained_completions": len(rows),
        "sampling/rounds": collected.rounds,
        "sampling/signal_groups": collected.signal_groups,
    }
    timing = {
        "sampling": collected.sampling_time,
        "grading": collected.grading_time,
        "training": training_time,
    }
    return StepOutcome(
        collected.first, collected.first_advantages, timing, collected.sampled_tokens, trl
    )


def updates(
    policy: Policy,
    optimizer: torch.optim.Optimizer,
    prompts: tuple[list[list[int]], list[Tensor | None] | None],  # ids, and images if any
    batches: list[list[tuple[int, int, list[int]]]],
    rollout: Rollout,
    advantages: Tensor,
    totals: BatchTotals,
    config: RFTConfig,
) -> tuple[list[LossParts], float]:
    """`num_iterations` optimizer steps on one batch of samples, a micro-batch at a time."""
    policy.model.train()
    n_rows, n_columns = rollout.completion_mask.shape
    shape = (int(n_rows), int(n_columns))
    prompt_ids, images = prompts
    packed = [pack(prompt_ids, batch, policy.pad_id, policy.device, images) for batch in batches]
    ref = [reference_logprobs(policy, p, config) for p in packed] if config.loss.beta else None
    old: list[Tensor] = []
    parts: list[LossParts] = []
    grad_norm = 0.0
    for iteration in range(config.num_iterations):
        parts = []
        optimizer.zero_grad(set_to_none=False)
        for index, batch in enumerate(packed):
            with policy.autocast():
                scores = score_packed(policy, batch, config.temperature)
            logprobs = as_matrix(scores.logprobs, batch, shape)
            if iteration == 0:
                old.append(logprobs.detach())
            part = policy_loss(
                logprobs,
                old[index],
                advantages,
                as_matrix(torch.ones_like(scores.logprobs), batch, shape),
                totals,
                config.loss,
                None if ref is None else as_matrix(ref[index], batch, shape),
            )
            part.loss.backward()
            parts.append(part)
        grad_norm = clip_and_step(policy, optimizer, config.max_grad_norm)
    return parts, grad_norm


def reference_logprobs(policy: Policy, packed: Any, config: RFTConfig) -> Tensor:
    """Log-probs under the base model: the same network with the adapter switched off."""
    with torch.no_grad(), policy.model.disable_adapter(), policy.autocast():
        return score_packed(policy, packed, config.temperature).logprobs


def clip_and_step(policy: Policy, optimizer: torch.optim.Optimizer, max_grad_norm: float) -> float:
    parameters = policy.trainable_parameters()
    for parameter in parameters:  # untouched parameters step on a zero gradient
        if parameter.grad is None:
            parameter.grad = torch.zeros_like(parameter)
    norm = torch.nn.utils.clip_grad_norm_(parameters, max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(norm)


def step_statistics(
    graded: Graded,
    advantages: Advantages,
    parts: list[LossParts],
    totals: BatchTotals,
    config: RFTConfig,
) -> dict[str, Any]:
    """TRL's names for the step's figures: reward, length and entropy figures of the step's own
    batch (`graded`); clip and KL figures of the last update, over the trained tokens."""
    rollout = graded.rollout
    lengths = rollout.lengths
    ended = rollout.ended
    tokens = max(totals.tokens, 1.0)  # of the trained batch
    low = sum(part.clipped_low_sum for part in parts) / tokens
    high = sum(part.clipped_high_sum for part in parts) / tokens
    sampled_tokens = rollout.completion_mask.sum().clamp(min=1.0)
    entropy = (rollout.entropies * rollout.completion_mask).sum() / sampled_tokens
    return {
        "loss": float(sum(float(part.loss.detach()) for part in parts)),
        "reward": float(graded.rewards.mean()),
        "reward_std": float(advantages.group_std.mean()),
        "frac_reward_zero_std": advantages.frac_reward_zero_std,
        "completions/mean_length": float(lengths.mean()),
        "completions/min_length": float(lengths.min()),
        "completions/max_length": float(lengths.max()),
        "completions/clipped_ratio": float((~ended).float().mean()),
        "completions/mean_terminated_length": float(lengths[ended].mean()) if ended.any() else 0.0,
        "entropy": float(entropy),
        "clip_ratio/low_mean": low,
        "clip_ratio/high_mean": high,
        "clip_ratio/region_mean": low + high,
        "kl": sum(part.kl_sum for part in parts) / tokens if config.loss.beta else None,
    }


def evaluate_rewards(
    policy: Policy,
    grader: BatchGrader,
    prompt_batches: list[Draw],
    samples_per_prompt: int,
    config: RFTConfig,
    generator: torch.Generator,
) -> tuple[BatchGrades, float, list[str]]:
    """Sample `samples_per_prompt` completions for every validation prompt and grade them all.
    Returns the grades, the mean completion length in tokens and the completions' texts."""
    policy.model.eval()
    with decoding(policy) as fast:
        rollouts = [
            sample_rollout(policy, draw.prompts, samples_per_prompt, config, generator, fast)
            for draw in prompt_batches
        ]
    results = []
    texts = []
    for rollout, draw in zip(rollouts, prompt_batches, strict=True):
        graded = grade(policy, grader, rollout, draw.items, samples_per_prompt, draw.answer_formats)
        results.extend(graded.grades.results)
        texts.extend(graded.texts)
    lengths = torch.cat([rollout.lengths for rollout in rollouts])
    return BatchGrades(results), float(lengths.mean()), texts
