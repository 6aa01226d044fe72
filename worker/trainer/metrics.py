"""Metrics events in OpenAI's shape (reference section 5, old and new names) plus TRL's names,
their one-line messages, and the per-step CSV (the event data flattened with "/")."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

GRADER_LISTS = ("scores", "errors", "timing", "usage")


def merge_grader_entries(*lists: list[dict]) -> list[dict]:
    """Join train and valid entries of the same grader (same name and type) into one."""
    merged: dict[tuple[str, str], dict] = {}
    for entries in lists:
        for entry in entries:
            merged.setdefault((entry["name"], entry["type"]), {}).update(entry)
    return list(merged.values())


def rft_event_data(
    step: int,
    total_steps: int,
    train: dict[str, Any],
    valid: dict[str, Any] | None,
    timing: dict[str, float],
    samples: dict[str, float],
    trl: dict[str, Any],
) -> dict[str, Any]:
    """`train`/`valid` are the grader engine's `metrics("train"/"valid")`; `samples` holds
    completion-token means; `trl` holds TRL-named figures, added at the top level."""
    valid = valid or {}
    data: dict[str, Any] = {
        "step": step,
        "total_steps": total_steps,
        "train_reward_mean": train["reward_mean"],
        "train_mean_reward": train["reward_mean"],
        "train_reward_min": train.get("reward_min", train["reward_mean"]),
        "train_reward_max": train.get("reward_max", train["reward_mean"]),
        # the share of samples at the grader's top score: the behaviour, not only the mean
        "train_reward_top_share": train.get("reward_top_share", 0.0),
        "completion_tokens_mean": samples["train_completion_tokens_mean"],
        # these models produce no separate reasoning tokens
        "reasoning_tokens_mean": 0.0,
        "mean_unresponsive_rewards": train.get("unresponsive_reward_mean", 0.0),
        "train_error_rate": train.get("error_rate", 0.0),
    }
    if valid:
        data |= {
            "valid_reward_mean": valid["reward_mean"],
            "valid_reward_min": valid.get("reward_min", valid["reward_mean"]),
            "valid_reward_max": valid.get("reward_max", valid["reward_mean"]),
            "valid_reward_top_share": valid.get("reward_top_share", 0.0),
            "full_valid_mean_reward": valid["reward_mean"],
            "full_valid_mean_parse_error": valid.get("sample_parse_error_mean", 0.0),
            "valid_reasoning_tokens_mean": 0.0,
            "valid_completion_tokens_mean": samples.get("valid_completion_tokens_mean", 0.0),
        }
    scores = {"train_reward_mean": train["reward_mean"]}
    if valid:
        scores["valid_reward_mean"] = valid["reward_mean"]
    data["scores"] = scores | {"graders": _merged(train, valid, "scores")}
    data["errors"] = {"graders": _merged(train, valid, "errors")}
    data["usage"] = {
        "graders": _merged(train, valid, "usage"),
        "samples": {key: value for key, value in samples.items()},
    }
    data["timing"] = {"step": dict(timing), "graders": _merged(train, valid, "timing")}
    data["model_graders_token_usage"] = _merged_usage(train, valid)
    return data | trl


def _merged(train: dict, valid: dict, section: str) -> list[dict]:
    return merge_grader_entries(
        train.get(section, {}).get("graders", []), valid.get(section, {}).get("graders", [])
    )


def _merged_usage(train: dict, valid: dict) -> dict[str, dict]:
    usage: dict[str, dict] = {}
    for part in (train, valid):
        for model, counts in part.get("model_graders_token_usage", {}).items():
            usage.setdefault(model, {}).update(counts)
    return usage


def sft_event_data(
    step: int, total_steps: int, train: dict[str, float], valid: dict[str, float] | None
) -> dict[str, Any]:
    """OpenAI's SFT metrics: train_loss, train_mean_token_accuracy, valid_* and full_valid_*."""
    data: dict[str, Any] = {"step": step, "total_steps": total_steps} | train
    return data | (valid or {})


def rft_message(data: dict[str, Any]) -> str:
    parts = [f"Step {data['step']}/{data['total_steps']}"]
    parts.append(f"train mean reward={data['train_reward_mean']:.2f}")
    parts.append(f"at top score={data['train_reward_top_share']:.0%}")
    parts.append(f"mean length={data['completion_tokens_mean']:.1f} tokens")
    if "valid_reward_mean" in data:
        parts.append(f"full validation mean reward={data['valid_reward_mean']:.2f}")
        parts.append(f"validation at top score={data['valid_reward_top_share']:.0%}")
        parts.append(f"full validation mean parse error={data['full_valid_mean_parse_error']:.2f}")
    return ", ".join(parts)


def sft_message(data: dict[str, Any]) -> str:
    parts = [
        f"Step {data['step']}/{data['total_steps']}",
        f"training loss={data['train_loss']:.3f}",
    ]
    if "full_valid_loss" in data:
        parts.append(f"full validation loss={data['full_valid_loss']:.3f}")
    if "valid_reward_mean" in data:
        parts.append(f"full validation mean reward={data['valid_reward_mean']:.2f}")
    return ", ".join(parts)


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested event data as flat CSV columns: dicts join keys with "/", grader lists become
    `<section>/graders/<type>/<name>/<key>`."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            flat |= flatten(value, f"{path}/")
        elif isinstance(value, list):
            for entry in value:
                named = f"{path}/{entry.get('type', '')}/{entry.get('name', '')}/"
                flat |= flatten(
                    {k: v for k, v in entry.items() if k not in ("name", "type", "model")}, named
                )
        else:
            flat[path] = value
    return flat


class MetricsCSV:
    """The per-step metrics file. Columns appear as metrics do (validation columns at the first
    evaluation), so the whole file is rewritten, atomically, on each step."""

    def __init__(self, path: Path, rows: Sequence[dict[str, Any]] = ()) -> None:
        self.path = path
        self.rows = list(rows)
        self.write()

    @staticmethod
    def read(path: Path) -> list[dict[str, Any]]:
        """The rows of a metrics file; none when there is no file."""
        if not path.is_file():
            return []
        with open(path, newline="") as handle:
            return list(csv.DictReader(handle))

    def append(self, data: dict[str, Any]) -> None:
        self.rows.append(flatten(data))
        self.write()

    def write(self) -> None:
        columns = list(dict.fromkeys(key for row in self.rows for key in row))
        temporary = self.path.with_suffix(".tmp")
        with open(temporary, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(self.rows)
        os.replace(temporary, self.path)
