"""What the grades say about the learning signal: the share of samples at the grader's top
score, and the grade distribution of the model RL starts from, said in plain words when RL
cannot reinforce what it never samples.

GRPO turns differences between completions of one prompt into a gradient. An answer the grader
scores fully, if the model never produces it, is never reinforced: partial credit can still
move the model, but towards the near misses it does sample, not towards the top score.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# a reward this close to the top score counts as reaching it (graders compute in floats)
TOP_SCORE_TOLERANCE = 1e-6
# the grade buckets of the distribution, as fractions of the top score
BUCKET_EDGES = (0.25, 0.5, 0.75)

WARM_START_HINT = (
    "add a worked example to each prompt (an earlier user turn with the assistant's ideal "
    "answer), use a larger base model, or start with a short supervised phase on the reference "
    'answers (method.reinforcement.warm_start, e.g. {"field": "answer"})'
)


def top_score(grader: dict[str, Any]) -> float:
    """The highest reward `grader` gives: the top of a score_model's range, else 1."""
    if grader.get("type") == "score_model" and grader.get("range"):
        return float(grader["range"][1])
    return 1.0


def at_top(reward: float, top: float) -> bool:
    return reward >= top - TOP_SCORE_TOLERANCE


def top_share(rewards: Sequence[float], top: float) -> float:
    """The share of `rewards` at the top score (0 for no rewards)."""
    if not rewards:
        return 0.0
    return sum(1 for reward in rewards if at_top(reward, top)) / len(rewards)


def bucket_names(top: float) -> list[str]:
    """The grade buckets, lowest first: "0" (nothing, or less), the quarters of the top score
    ("0-0.25" holds rewards above 0 and below 0.25), and the top score itself."""
    edges = [0.0, *(top * edge for edge in BUCKET_EDGES), top]
    return ["0", *(f"{low:g}-{high:g}" for low, high in itertools.pairwise(edges)), f"{top:g}"]


def bucket_index(reward: float, top: float) -> int:
    """The index in bucket_names(top) of `reward`'s bucket."""
    if at_top(reward, top):
        return len(BUCKET_EDGES) + 2
    if reward <= 0:
        return 0
    return 1 + sum(1 for edge in BUCKET_EDGES if reward >= top * edge)


@dataclass(frozen=True)
class GradeDistribution:
    """How the grades of one model's samples on training prompts are spread."""

    samples: int
    prompts: int
    group_size: int
    top_score: float
    reward_mean: float
    top_share: float
    groups_with_signal: int  # prompts whose completions did not all score the same
    buckets: dict[str, int]  # samples per grade bucket (bucket_names), lowest first

    @classmethod
    def of(cls, rewards: Sequence[float], group_size: int, top: float) -> GradeDistribution:
        """`rewards` in groups of `group_size` consecutive completions of one prompt."""
        groups = [rewards[i : i + group_size] for i in range(0, len(rewards), group_size)]
        counts = [0] * len(bucket_names(top))
        for reward in rewards:
            counts[bucket_index(reward, top)] += 1
        return cls(
            samples=len(rewards),
            prompts=len(groups),
            group_size=group_size,
            top_score=top,
            reward_mean=sum(rewards) / len(rewards) if rewards else 0.0,
            top_share=top_share(rewards, top),
            groups_with_signal=sum(1 for group in groups if max(group) - min(group) > 0),
            buckets=dict(zip(bucket_names(top), counts, strict=True)),
        )

    @property
    def reaches_top(self) -> bool:
        return self.top_share > 0

    @property
    def has_signal(self) -> bool:
        return self.groups_with_signal > 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "prompts": self.prompts,
            "top_score": self.top_score,
            "reward_mean": self.reward_mean,
            "top_share": self.top_share,
            "groups_with_signal": self.groups_with_signal,
            "frac_reward_zero_std": 1 - self.groups_with_signal / max(1, self.prompts),
            "buckets": dict(self.buckets),
        }

    def describe(self, model: str) -> tuple[str, str]:
        """(level, message): "warn" with what to do when the top score was never sampled or no
        group differed, else "info"."""
        top = self.top_count
        spread = ", ".join(f"{name}: {count}" for name, count in self.buckets.items() if count)
        summary = (
            f"Grades of {model} on the training prompts, before any reinforcement: "
            f"{self.samples} samples of {self.prompts} prompts, mean reward "
            f"{self.reward_mean:.2f}, top score ({self.top_score:g}) in {top} of "
            f"{self.samples} ({self.top_share:.0%}), {self.groups_with_signal} of "
            f"{self.prompts} groups differ; by grade {spread}."
        )
        if not self.has_signal:
            return "warn", (
                f"{summary} Every completion of every prompt got the same reward, so RL has "
                "nothing to learn from: it learns only from differences between completions of "
                "one prompt. Give partial credit in the grader (near misses above misses), or "
                f"{WARM_START_HINT}."
            )
        if not self.reaches_top:
            return "warn", (
                f"{summary} The model never produced an answer the grader scores fully, and RL "
                "cannot reinforce what it never samples: training will at best move it towards "
                f"the near misses it does sample. To reach the top score, {WARM_START_HINT}."
            )
        return "info", summary

    @property
    def top_count(self) -> int:
        return round(self.top_share * self.samples)
