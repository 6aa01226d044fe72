"""Which graded completions a step keeps for people to read, and in what shape.

A step samples `group_size` completions for each prompt of its batch; at most `bound` of them
are kept (OPENRFT_SAMPLES_PER_STEP, through TrainSpec). Whole groups are kept, so that a reader
sees what the advantages were computed against: `bound // group_size` groups, chosen evenly
over the groups ordered by mean reward (the worst, the best and those between), so a step
whose groups differ shows the range rather than whichever prompts came first. When one group
alone is bigger than the bound, the median group is kept, cut to `bound` completions chosen
evenly over its rewards. Choosing costs a sort of a few numbers: grading is not touched, the
texts are already decoded and the sub-grader scores come with each GradeResult.
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import fmean
from typing import Any

from app.graders import GradeResult
from worker.trainer.data import message_text, prompt_turns

IMAGE_MARK = "[image]"


def _shown_text(content: Any) -> str:
    """The content's text, each image part as IMAGE_MARK in its place (samples keep no pixels)."""
    if not isinstance(content, list):
        return message_text(content)
    return "".join(
        IMAGE_MARK
        if isinstance(part, dict) and part.get("type") == "image_url"
        else message_text([part])
        for part in content
    )


def shown_prompt(row: dict[str, Any]) -> list[dict[str, Any]]:
    """The messages the model answered, as the dataset gave their roles: `messages` without a
    trailing assistant answer, each content as text."""
    return [_shown_message(message) for message in prompt_turns(row)]


def _shown_message(message: dict[str, Any]) -> dict[str, Any]:
    shown = {"role": message["role"], "content": _shown_text(message.get("content"))}
    # the calls of an assistant turn and the call a tool result answers, as the dataset gave them
    for key in ("tool_calls", "tool_call_id"):
        if message.get(key):
            shown[key] = message[key]
    return shown


def spread(values: Sequence[float], count: int) -> list[int]:
    """Indices of `count` of `values` chosen evenly from lowest to highest (ties keep their
    order), in ascending index order; the median one when `count` is 1."""
    if count >= len(values):
        return list(range(len(values)))
    ranked = sorted(range(len(values)), key=lambda index: (values[index], index))
    if count == 1:
        return [ranked[(len(ranked) - 1) // 2]]
    last = len(ranked) - 1
    return sorted(ranked[round(k * last / (count - 1))] for k in range(count))


def _sub_rewards(result: GradeResult) -> dict[str, float] | None:
    # a multi grader's per sub-grader scores; other graders have no sub-graders
    if not result.sub_results:
        return None
    return {key: float(reward) for key, reward in result.sub_rewards.items()}


def kept_samples(
    texts: Sequence[str],
    results: Sequence[GradeResult],
    group_size: int,
    prompts: Sequence[list[dict[str, Any]]],
    references: Sequence[dict[str, Any]],
    bound: int,
) -> list[dict[str, Any]]:
    """At most `bound` of a batch's graded completions as samples: {group, prompt, reference,
    completion, reward, sub_rewards}. Row r belongs to the prompt r // group_size."""
    if bound <= 0 or not texts:
        return []
    groups = len(texts) // group_size
    if len(texts) != groups * group_size or len(prompts) != groups or len(references) != groups:
        raise ValueError(
            f"{len(texts)} completions, {len(prompts)} prompts and {len(references)} "
            f"references for groups of {group_size}"
        )
    means = [
        fmean(result.reward for result in results[g * group_size : (g + 1) * group_size])
        for g in range(groups)
    ]
    if group_size <= bound:
        rows = [
            g * group_size + k
            for g in spread(means, bound // group_size)
            for k in range(group_size)
        ]
    else:
        (group,) = spread(means, 1)
        first = group * group_size
        rewards = [result.reward for result in results[first : first + group_size]]
        rows = [first + k for k in spread(rewards, bound)]
    return [
        {
            "group": row // group_size,
            "prompt": prompts[row // group_size],
            "reference": references[row // group_size],
            "completion": texts[row],
            "reward": float(results[row].reward),
            "sub_rewards": _sub_rewards(results[row]),
        }
        for row in rows
    ]
