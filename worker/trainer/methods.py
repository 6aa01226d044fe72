"""The training methods behind one small interface, so the loop in `job.py` reads the same
for each: `train_step`, `evaluate`, `event`, `score`."""

from __future__ import annotations

import itertools
import math
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from app.graders import BatchGrader
from app.jobs.hyperparameters import Hyperparameters
from app.tool_calls import ToolFormat, row_uses_tools
from worker.constrained import Constraint
from worker.trainer.data import (
    DataOrder,
    encode_answer,
    encode_preference,
    encode_prompt,
    grader_item,
    model_tool_format,
)
from worker.trainer.dpo import PreferenceBatch, dpo_step, evaluate_preferences
from worker.trainer.grpo import (
    Collected,
    Draw,
    RFTConfig,
    StepOutcome,
    collect_groups,
    evaluate_rewards,
    grade,
    rft_step,
    sample_rollout,
)
from worker.trainer.metrics import rft_event_data, rft_message, sft_event_data, sft_message
from worker.trainer.models import Policy
from worker.trainer.samples import kept_samples, shown_prompt
from worker.trainer.sampling import PromptBatch, decoding
from worker.trainer.sft import AnswerBatch, evaluate_loss, sft_step
from worker.trainer.signal import GradeDistribution, top_score, top_share
from worker.trainer.vision import encode_prompts

# validation prompts sampled together (times eval_samples completions each)
EVAL_ROWS_PER_BATCH = 64
# when the first step's samples never reach the top score, more training prompts are sampled
# from the same weights, up to this many samples in all, before the job says so: one step's
# 32 samples miss a behaviour the model shows 5% of the time about one time in five
PROBE_SAMPLES = 128
NO_SIGNAL_ADVICE = (
    "GRPO learns only from differences between completions of the same prompt. "
    "A grader that gives partial credit (text_similarity with fuzzy_match, string_check with "
    "ilike, or a multi grader mixing them) gives near misses a higher reward than misses."
)


@dataclass
class StepReport:
    data: dict[str, Any]  # this step's metrics, without validation
    timing: dict[str, float]
    trained_tokens: int
    warnings: list[str] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)  # kept graded completions
    # other job events of the step: (level, message, data)
    events: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)


def step_generator(seed: int, step: int, device: torch.device) -> torch.Generator:
    """Sampling randomness is a function of (seed, step), so a resumed run draws the same."""
    generator = torch.Generator(device=device)
    generator.manual_seed(seed * 1_000_003 + step)
    return generator


def probe_generator(seed: int, device: torch.device) -> torch.Generator:
    generator = torch.Generator(device=device)
    generator.manual_seed(seed * 1_000_003 + 999_999_929)
    return generator


def eval_generator(seed: int, device: torch.device) -> torch.Generator:
    # every evaluation draws the same random stream: differences between evaluations come
    # from the weights, not from luck
    generator = torch.Generator(device=device)
    generator.manual_seed(seed * 1_000_003 + 999_999_937)
    return generator


def answer_formats(policy: Policy, rows: Sequence[dict[str, Any]]) -> list[ToolFormat | None]:
    """Per row, the model's tool-call format where the row gives tools, else None."""
    model_format = model_tool_format(policy.tokenizer)
    return [model_format if row_uses_tools(row) else None for row in rows]


def eval_prompt_batches(
    policy: Policy, rows: Sequence[dict[str, Any]], samples_per_prompt: int
) -> list[Draw]:
    per_batch = max(1, EVAL_ROWS_PER_BATCH // samples_per_prompt)
    batches = []
    for start in range(0, len(rows), per_batch):
        chunk = rows[start : start + per_batch]
        ids, images = encode_prompts(policy, chunk)
        prompts = PromptBatch.from_ids(ids, policy.pad_id, policy.device, images)
        items = [grader_item(row) for row in chunk]
        batches.append(Draw(prompts, items, answer_formats(policy, chunk)))
    return batches


class RewardEvaluator:
    """Samples the validation prompts and grades them: `valid_reward_mean` and friends."""

    def __init__(
        self,
        policy: Policy,
        grader: BatchGrader,
        rows: Sequence[dict[str, Any]],
        samples_per_prompt: int,
        config: RFTConfig,
        seed: int,
        samples_per_run: int = 0,
    ) -> None:
        self.policy = policy
        self.grader = grader
        self.batches = eval_prompt_batches(policy, rows, samples_per_prompt)
        self.samples_per_prompt = samples_per_prompt
        self.config = config
        self.seed = seed
        self.samples_per_run = samples_per_run
        self.prompts = [shown_prompt(row) for row in rows] if samples_per_run else []
        self.references = [grader_item(row) for row in rows] if samples_per_run else []
        self.samples: list[dict[str, Any]] = []  # kept from the latest evaluate()

    def evaluate(self) -> dict[str, Any]:
        generator = eval_generator(self.seed, self.policy.device)
        grades, mean_length, texts = evaluate_rewards(
            self.policy, self.grader, self.batches, self.samples_per_prompt, self.config, generator
        )
        top = top_score(self.grader.definition)
        self.samples = kept_samples(
            texts,
            grades.results,
            self.samples_per_prompt,
            self.prompts,
            self.references,
            self.samples_per_run,
        )
        return grades.metrics("valid") | {
            "reward_top_share": top_share(grades.rewards, top),
            "completion_tokens_mean": mean_length,
        }


class Reinforcement:
    def __init__(
        self,
        policy: Policy,
        optimizer: torch.optim.Optimizer,
        grader: BatchGrader,
        train_rows: Sequence[dict[str, Any]],
        valid_rows: Sequence[dict[str, Any]],
        hp: Hyperparameters,
        seed: int,
        samples_per_step: int = 0,
        constraint: Constraint | None = None,
        model_name: str = "the model",
    ) -> None:
        self.policy = policy
        self.optimizer = optimizer
        self.grader = grader
        self.top_score = top_score(grader.definition)
        self.model_name = model_name
        self.config = RFTConfig.from_hyperparameters(hp, constraint)
        self.seed = seed
        self.samples_per_step = samples_per_step
        self.order = DataOrder(len(train_rows), hp.batch_size, seed)
        self.prompt_ids, self.prompt_images = encode_prompts(policy, train_rows)
        self.items = [grader_item(row) for row in train_rows]
        self.answer_formats = answer_formats(policy, train_rows)
        self.prompts = [shown_prompt(row) for row in train_rows] if samples_per_step else []
        self.evaluator = RewardEvaluator(
            policy, grader, valid_rows, hp.eval_samples, self.config, seed, samples_per_step
        )

    def draws(self, step: int) -> Iterator[Draw]:
        """The step's own batch, then batches from a shuffled cycle of the other training rows,
        seeded by (seed, step) so that a resumed run draws the same."""
        own = self.order.indices(step - 1)
        yield self.draw(own)
        others = [i for i in range(len(self.prompt_ids)) if i not in own] or own
        random.Random(f"{self.seed}:{step}:extra").shuffle(others)
        for start in itertools.count(0, len(own)):
            yield self.draw([others[(start + k) % len(others)] for k in range(len(own))])

    def draw(self, indices: list[int]) -> Draw:
        images = self.prompt_images
        prompts = PromptBatch.from_ids(
            [self.prompt_ids[i] for i in indices],
            self.policy.pad_id,
            self.policy.device,
            [images[i] for i in indices] if images is not None else None,
        )
        return Draw(
            prompts,
            [self.items[i] for i in indices],
            [self.answer_formats[i] for i in indices],
        )

    def train_step(self, step: int) -> StepReport:
        """One GRPO step; the first also reports how the grades of the model it starts from
        are spread (from its own samples, drawn before the update)."""
        generator = step_generator(self.seed, step, self.policy.device)
        collected = distribution = None
        probe_time = 0.0
        if step == 1:
            collected = collect_groups(
                self.policy, self.grader, self.draws(step), self.config, generator
            )
            started = time.perf_counter()
            distribution = self.grade_distribution(step, collected)
            probe_time = time.perf_counter() - started
        outcome = rft_step(
            self.policy,
            self.optimizer,
            self.grader,
            self.draws(step),
            self.config,
            generator,
            collected,
        )
        train = outcome.graded.grades.metrics("train")
        train["reward_top_share"] = top_share(outcome.graded.grades.rewards, self.top_score)
        data: dict[str, Any] = {
            "train": train,
            "completion_tokens_mean": float(outcome.graded.rollout.lengths.mean()),
            "trl": outcome.trl | {"learning_rate": self.optimizer.param_groups[0]["lr"]},
        }
        warnings = []
        if outcome.trl["sampling/signal_groups"] == 0:
            warnings.append(self.no_signal_warning(step, outcome))
        report = StepReport(
            data, outcome.timing, outcome.trained_tokens, warnings, self.kept(step, outcome)
        )
        if distribution is not None:
            level, message = distribution.describe(self.model_name)
            report.events.append((level, message, {"base_model": distribution.as_dict()}))
            data["trl"]["base_model"] = distribution.as_dict()
            report.timing["base_model_probe"] = probe_time
        return report

    def grade_distribution(self, step: int, collected: Collected) -> GradeDistribution:
        """The grades of the step's own samples; when none reached the top score, with those
        of more training prompts sampled from the same weights (up to PROBE_SAMPLES in all,
        each prompt at most once), so that a behaviour the model rarely shows is not missed."""
        G = self.config.group_size
        rewards = list(collected.first.grades.rewards)
        distribution = GradeDistribution.of(rewards, G, self.top_score)
        if distribution.reaches_top:
            return distribution
        prompts_per_batch = len(rewards) // G
        batches = min(
            math.ceil(PROBE_SAMPLES / len(rewards)),
            math.ceil(len(self.prompt_ids) / prompts_per_batch),
        )
        generator = probe_generator(self.seed, self.policy.device)
        for draw in itertools.islice(self.draws(step), 1, batches):
            with decoding(self.policy) as fast:
                rollout = sample_rollout(self.policy, draw.prompts, G, self.config, generator, fast)
            graded = grade(self.policy, self.grader, rollout, draw.items, G, draw.answer_formats)
            more = graded.grades.rewards
            rewards += more
            if top_share(more, self.top_score) > 0:
                break
        return GradeDistribution.of(rewards, G, self.top_score)

    def kept(self, step: int, outcome: StepOutcome) -> list[dict[str, Any]]:
        """Samples of the step's own batch (the groups its figures describe), bounded."""
        if not self.samples_per_step:
            return []
        own = self.order.indices(step - 1)  # the rows of the step's own batch, as drawn
        return kept_samples(
            outcome.graded.texts,
            outcome.graded.grades.results,
            self.config.group_size,
            [self.prompts[i] for i in own],
            [self.items[i] for i in own],
            self.samples_per_step,
        )

    def validation_samples(self) -> list[dict[str, Any]]:
        """Samples kept from the latest evaluate(), bounded."""
        return self.evaluator.samples

    @staticmethod
    def no_signal_warning(step: int, outcome: StepOutcome) -> str:
        groups = len(outcome.advantages.group_std)
        reward = float(outcome.graded.rewards[0])
        extra = (outcome.trl["sampling/rounds"] - 1) * groups
        also = f", as in each group of {extra} more prompts sampled to find some" if extra else ""
        return (
            f"Step {step}: in all {groups} groups every completion got the same reward "
            f"({reward:.2f}){also}, so this step carried no learning signal. {NO_SIGNAL_ADVICE}"
        )

    def evaluate(self) -> dict[str, Any]:
        return self.evaluator.evaluate()

    def event(
        self, step: int, total_steps: int, report: StepReport, valid: dict[str, Any] | None
    ) -> tuple[str, dict[str, Any]]:
        samples = {"train_completion_tokens_mean": report.data["completion_tokens_mean"]}
        samples["train_reasoning_tokens_mean"] = 0.0
        if valid:
            samples["valid_completion_tokens_mean"] = valid["completion_tokens_mean"]
            samples["valid_reasoning_tokens_mean"] = 0.0
        data = rft_event_data(
            step,
            total_steps,
            report.data["train"],
            valid,
            report.timing,
            samples,
            report.data["trl"],
        )
        return rft_message(data), data

    @staticmethod
    def score(valid: dict[str, Any]) -> float:
        return float(valid["reward_mean"])


class Supervised:
    def __init__(
        self,
        policy: Policy,
        optimizer: torch.optim.Optimizer,
        grader: BatchGrader | None,
        train_rows: Sequence[dict[str, Any]],
        valid_rows: Sequence[dict[str, Any]],
        hp: Hyperparameters,
        seed: int,
    ) -> None:
        self.policy = policy
        self.optimizer = optimizer
        self.batch_size = hp.batch_size
        self.order = DataOrder(len(train_rows), hp.batch_size, seed)
        tokenizer = policy.tokenizer
        self.train = [
            (encode_prompt(tokenizer, r), encode_answer(tokenizer, r)) for r in train_rows
        ]
        self.valid = [
            (encode_prompt(tokenizer, r), encode_answer(tokenizer, r)) for r in valid_rows
        ]
        self.valid_batches = [
            self.batch(self.valid[start : start + self.batch_size])
            for start in range(0, len(self.valid), self.batch_size)
        ]
        self.evaluator = None
        if grader is not None and valid_rows:
            # a supervised run's hyperparameters carry the reinforcement sampling defaults
            config = RFTConfig.from_hyperparameters(hp)
            self.evaluator = RewardEvaluator(
                policy, grader, valid_rows, hp.eval_samples, config, seed
            )

    def batch(self, pairs: list[tuple[list[int], list[int]]]) -> AnswerBatch:
        return AnswerBatch.build(pairs, self.policy)

    def train_step(self, step: int) -> StepReport:
        started = time.perf_counter()
        batch = self.batch([self.train[i] for i in self.order.indices(step - 1)])
        train = sft_step(self.policy, self.optimizer, batch, max_grad_norm=1.0)
        trained = time.perf_counter()
        data = dict(train)
        if self.valid_batches:
            # OpenAI reports a validation loss on one validation batch at every step
            valid_batch = self.valid_batches[(step - 1) % len(self.valid_batches)]
            valid_loss, valid_accuracy = evaluate_loss(self.policy, [valid_batch])
            data |= {"valid_loss": valid_loss, "valid_mean_token_accuracy": valid_accuracy}
        timing = {"training": trained - started, "eval": time.perf_counter() - trained}
        tokens = sum(
            len(self.train[i][0]) + len(self.train[i][1]) for i in self.order.indices(step - 1)
        )
        return StepReport(data, timing, tokens)

    @staticmethod
    def validation_samples() -> list[dict[str, Any]]:
        return []  # supervised runs keep no samples: their steps sample nothing

    def evaluate(self) -> dict[str, Any]:
        if not self.valid_batches:  # no validation file: checkpoints carry no score
            return {}
        loss, accuracy = evaluate_loss(self.policy, self.valid_batches)
        valid: dict[str, Any] = {
            "full_valid_loss": loss,
            "full_valid_mean_token_accuracy": accuracy,
        }
        if self.evaluator is not None:
            rewards = self.evaluator.evaluate()
            valid |= {
                "valid_reward_mean": rewards["reward_mean"],
                "valid_reward_top_share": rewards["reward_top_share"],
                "rewards": rewards,
            }
        return valid

    def event(
        self, step: int, total_steps: int, report: StepReport, valid: dict[str, Any] | None
    ) -> tuple[str, dict[str, Any]]:
        shown = {key: value for key, value in (valid or {}).items() if key != "rewards"}
        data = sft_event_data(step, total_steps, report.data, shown)
        data["timing"] = {"step": dict(report.timing)}
        return sft_message(data), data

    @staticmethod
    def score(valid: dict[str, Any]) -> float | None:
        if "valid_reward_mean" in valid:
            return float(valid["valid_reward_mean"])
        if "full_valid_loss" in valid:
            return -float(valid["full_valid_loss"])
        return None


class Preference:
    """DPO on OpenAI's preference rows; figures in OpenAI's SFT names (train_loss, valid_loss,
    full_valid_loss, *_mean_token_accuracy) and TRL's DPO names (rewards/*, logps/*, and eval_*
    at evaluations)."""

    def __init__(
        self,
        policy: Policy,
        optimizer: torch.optim.Optimizer,
        train_rows: Sequence[dict[str, Any]],
        valid_rows: Sequence[dict[str, Any]],
        hp: Hyperparameters,
        seed: int,
    ) -> None:
        self.policy = policy
        self.optimizer = optimizer
        self.beta = hp.beta
        self.order = DataOrder(len(train_rows), hp.batch_size, seed)
        self.train = [encode_preference(policy.tokenizer, row) for row in train_rows]
        valid = [encode_preference(policy.tokenizer, row) for row in valid_rows]
        self.valid_batches = [
            PreferenceBatch.build(valid[start : start + hp.batch_size], policy)
            for start in range(0, len(valid), hp.batch_size)
        ]

    def train_step(self, step: int) -> StepReport:
        started = time.perf_counter()
        batch = PreferenceBatch.build(
            [self.train[i] for i in self.order.indices(step - 1)], self.policy
        )
        data = dpo_step(self.policy, self.optimizer, batch, self.beta, max_grad_norm=1.0)
        data["learning_rate"] = self.optimizer.param_groups[0]["lr"]
        trained = time.perf_counter()
        if self.valid_batches:
            # as for SFT, a validation loss on one validation batch at every step
            valid_batch = self.valid_batches[(step - 1) % len(self.valid_batches)]
            loss, accuracy, _ = evaluate_preferences(self.policy, [valid_batch], self.beta)
            data |= {"valid_loss": loss, "valid_mean_token_accuracy": accuracy}
        timing = {"training": trained - started, "eval": time.perf_counter() - trained}
        return StepReport(data, timing, batch.tokens)

    def evaluate(self) -> dict[str, Any]:
        if not self.valid_batches:  # no validation file: checkpoints carry no score
            return {}
        loss, accuracy, rewards = evaluate_preferences(self.policy, self.valid_batches, self.beta)
        return {
            "full_valid_loss": loss,
            "full_valid_mean_token_accuracy": accuracy,
            "eval_loss": loss,
        } | {f"eval_{name}": value for name, value in rewards.items()}

    def event(
        self, step: int, total_steps: int, report: StepReport, valid: dict[str, Any] | None
    ) -> tuple[str, dict[str, Any]]:
        data = sft_event_data(step, total_steps, report.data, valid)
        data["timing"] = {"step": dict(report.timing)}
        message = sft_message(data) + f", reward accuracy={data['rewards/accuracies']:.2f}"
        return message, data

    @staticmethod
    def score(valid: dict[str, Any]) -> float | None:
        return -float(valid["full_valid_loss"]) if "full_valid_loss" in valid else None

    @staticmethod
    def validation_samples() -> list[dict[str, Any]]:
        return []  # preference runs sample nothing: their data carries both answers
