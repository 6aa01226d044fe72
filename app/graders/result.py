"""GradeResult: one sample's reward with the metadata the /run response and metrics need."""

from __future__ import annotations

from dataclasses import dataclass, field

from app.graders.errors import BOOLEAN_FLAGS, empty_errors


@dataclass
class GradeResult:
    name: str
    type: str
    reward: float = 0.0
    errors: dict = field(default_factory=empty_errors)
    execution_time: float = 0.0
    scores: dict[str, float] = field(default_factory=dict)
    sub_rewards: dict[str, float] = field(default_factory=dict)
    # {"prompt_tokens","completion_tokens","total_tokens","cached_tokens"} or None
    token_usage: dict[str, int] | None = None
    sampled_model_name: str | None = None
    # model name -> usage, summed over every model grader call of this sample
    token_usage_per_model: dict[str, dict[str, int]] = field(default_factory=dict)
    # per sub-grader results of a multi grader, by key
    sub_results: dict[str, GradeResult] = field(default_factory=dict)

    @property
    def has_error(self) -> bool:
        return any(self.errors[flag] for flag in BOOLEAN_FLAGS)

    def to_run_response(self) -> dict:
        """The exact body of POST /fine_tuning/alpha/graders/run."""
        return {
            "reward": self.reward,
            "metadata": {
                "name": self.name,
                "type": self.type,
                "errors": dict(self.errors),
                "execution_time": self.execution_time,
                "scores": dict(self.scores),
                "token_usage": dict(self.token_usage) if self.token_usage else None,
                "sampled_model_name": self.sampled_model_name,
            },
            "sub_rewards": dict(self.sub_rewards),
            "model_grader_token_usage_per_model": {
                model: dict(usage) for model, usage in self.token_usage_per_model.items()
            },
        }


def add_usage(total: dict[str, int] | None, usage: dict[str, int] | None) -> dict[str, int] | None:
    """Sum two token-usage dicts key by key (None means no usage)."""
    if usage is None:
        return total
    summed = dict(total or {})
    for key, count in usage.items():
        summed[key] = summed.get(key, 0) + int(count)
    return summed
