"""Per-grader reward, error, latency and token-usage aggregates in the RFT metrics shape."""

from __future__ import annotations

from statistics import fmean

from app.graders.errors import BOOLEAN_FLAGS
from app.graders.result import GradeResult

USAGE_KEYS = ("prompt_tokens", "completion_tokens")


def _per_grader(results: list[GradeResult]) -> list[tuple[str, str, list[GradeResult]]]:
    """(name, type, results) for each grader that metrics list: a multi's sub-graders, else
    the grader itself."""
    first = results[0]
    if not first.sub_results:
        return [(first.name, first.type, results)]
    return [
        (key, sub.type, [result.sub_results[key] for result in results])
        for key, sub in first.sub_results.items()
    ]


def _error_entry(name: str, kind: str, results: list[GradeResult], split: str) -> dict:
    entry: dict = {"name": name, "type": kind}
    for flag in BOOLEAN_FLAGS:
        count = sum(1 for result in results if result.errors[flag])
        entry[f"{split}_{flag}_mean"] = count / len(results)
        entry[f"{split}_{flag}_count"] = count
    return entry


def _usage_entries(name: str, results: list[GradeResult], split: str) -> list[dict]:
    entries = []
    models = sorted({model for result in results for model in result.token_usage_per_model})
    for model in models:
        entry: dict = {"name": name, "type": results[0].type, "model": model}
        for key in USAGE_KEYS:
            counts = [result.token_usage_per_model.get(model, {}).get(key, 0) for result in results]
            entry[f"{split}_{key}_mean"] = fmean(counts)
            entry[f"{split}_{key}_count"] = sum(counts)
        entries.append(entry)
    return entries


def _token_usage_by_model(results: list[GradeResult], split: str) -> dict[str, dict[str, int]]:
    # the reference's event names the validation half of this map `eval_`
    prefix = "eval" if split == "valid" else split
    totals: dict[str, dict[str, int]] = {}
    for result in results:
        for model, usage in result.token_usage_per_model.items():
            total = totals.setdefault(
                model, {f"{prefix}_{key}": 0 for key in (*USAGE_KEYS, "cached_tokens")}
            )
            for key in (*USAGE_KEYS, "cached_tokens"):
                total[f"{prefix}_{key}"] += int(usage.get(key, 0))
    return totals


def batch_metrics(results: list[GradeResult], split: str) -> dict:
    """The metrics-event pieces for one batch of results, keys prefixed by `split`."""
    if not results:
        return {
            "reward_mean": 0.0,
            "error_rate": 0.0,
            "scores": {"graders": []},
            "errors": {"graders": []},
            "timing": {"graders": []},
            "usage": {"graders": []},
            "model_graders_token_usage": {},
        }
    graders = _per_grader(results)
    errors = [_error_entry(name, kind, rs, split) for name, kind, rs in graders]
    if results[0].sub_results:
        errors.append(_error_entry(results[0].name, results[0].type, results, split))
    return {
        "reward_mean": fmean(result.reward for result in results),
        # the spread the dashboard draws as a band around the mean
        "reward_min": min(result.reward for result in results),
        "reward_max": max(result.reward for result in results),
        "error_rate": sum(1 for result in results if result.has_error) / len(results),
        "sample_parse_error_mean": fmean(r.errors["sample_parse_error"] for r in results),
        "unresponsive_reward_mean": fmean(r.errors["unresponsive_reward_error"] for r in results),
        "scores": {
            "graders": [
                {"name": name, "type": kind, f"{split}_reward_mean": fmean(r.reward for r in rs)}
                for name, kind, rs in graders
            ]
        },
        "errors": {"graders": errors},
        "timing": {
            "graders": [
                {
                    "name": name,
                    "type": kind,
                    f"{split}_execution_latency_mean": fmean(r.execution_time for r in rs),
                }
                for name, kind, rs in graders
            ]
        },
        "usage": {
            "graders": [
                entry for name, _, rs in graders for entry in _usage_entries(name, rs, split)
            ]
        },
        "model_graders_token_usage": _token_usage_by_model(results, split),
    }
