from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest

from app.graders import BatchGrader, GraderConfig, grade, make_sample
from tests.graders.fake_chat_server import Recorded, fake_chat_server

SCORE_MODEL = {
    "type": "score_model",
    "name": "judge",
    "model": "judge",
    "input": [
        {"role": "developer", "content": "Grade the answer to {{item.question}}."},
        {"role": "user", "content": [{"type": "input_text", "text": "{{sample.output_text}}"}]},
    ],
    "range": [0, 1],
    "sampling_params": {"temperature": 0.0, "seed": 7, "max_completions_tokens": 64},
}
LABEL_MODEL = {
    "type": "label_model",
    "name": "label",
    "model": "judge",
    "input": [{"role": "user", "content": "{{sample.output_text}}"}],
    "labels": ["good", "bad", "unsure"],
    "passing_labels": ["good"],
}


@pytest.fixture
def endpoint(config: GraderConfig) -> Iterator[tuple[GraderConfig, Recorded]]:
    with fake_chat_server() as (base_url, recorded):
        yield replace(config, model_base_url=base_url, model_api_key="sk-judge"), recorded


def judge(directive: str, endpoint: tuple[GraderConfig, Recorded], grader: dict = SCORE_MODEL):
    config, _ = endpoint
    return grade(grader, make_sample(directive), {"question": "2+2"}, config)


def test_score_is_parsed_and_usage_recorded(endpoint: tuple[GraderConfig, Recorded]) -> None:
    result = judge("score 0.7", endpoint)
    assert result.reward == pytest.approx(0.7)
    assert not result.has_error
    usage = {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16, "cached_tokens": 2}
    assert result.token_usage == usage
    assert result.sampled_model_name == "judge-2025-01-01"
    response = result.to_run_response()
    assert response["model_grader_token_usage_per_model"] == {"judge-2025-01-01": usage}


def test_request_carries_messages_format_and_sampling(
    endpoint: tuple[GraderConfig, Recorded],
) -> None:
    judge("score 1", endpoint)
    _, recorded = endpoint
    request, headers = recorded.requests[-1], recorded.headers[-1]
    assert headers["Authorization"] == "Bearer sk-judge"
    assert request["model"] == "judge"
    assert request["messages"][0] == {"role": "system", "content": "Grade the answer to 2+2."}
    assert request["messages"][1] == {"role": "user", "content": "score 1"}
    assert request["response_format"]["type"] == "json_schema"
    assert request["temperature"] == 0.0 and request["seed"] == 7
    assert request["max_completion_tokens"] == 64


@pytest.mark.parametrize(("directive", "reward"), [("score 5", 1.0), ("score -2", 0.0)])
def test_score_is_clipped_to_range(
    directive: str, reward: float, endpoint: tuple[GraderConfig, Recorded]
) -> None:
    result = judge(directive, endpoint)
    assert result.reward == reward
    assert result.scores["result"] == float(directive.split()[1])


def test_custom_range(endpoint: tuple[GraderConfig, Recorded]) -> None:
    assert judge("score 7", endpoint, {**SCORE_MODEL, "range": [0, 10]}).reward == 7.0


def test_fenced_json_is_accepted(endpoint: tuple[GraderConfig, Recorded]) -> None:
    assert judge("fenced 0.4", endpoint).reward == pytest.approx(0.4)


def test_refusal_flag(endpoint: tuple[GraderConfig, Recorded]) -> None:
    result = judge("refuse", endpoint)
    assert result.reward == 0.0
    assert result.errors["model_grader_refusal_error"] is True


def test_parse_error_flag(endpoint: tuple[GraderConfig, Recorded]) -> None:
    result = judge("garbage", endpoint)
    assert result.reward == 0.0
    assert result.errors["model_grader_parse_error"] is True


@pytest.mark.parametrize("status", ["500", "400"])
def test_server_error_flag_and_details(
    status: str, endpoint: tuple[GraderConfig, Recorded]
) -> None:
    config, recorded = endpoint
    result = judge(f"fail {status}", (replace(config, model_max_retries=1), recorded))
    assert result.reward == 0.0
    assert result.errors["model_grader_server_error"] is True
    assert result.errors["model_grader_server_error_details"].startswith(f"HTTP {status}")
    assert len(recorded.requests) == (2 if status == "500" else 1)  # 4xx is not retried


def test_transient_errors_are_retried(endpoint: tuple[GraderConfig, Recorded]) -> None:
    result = judge("flaky once", endpoint)
    assert result.reward == 1.0
    assert not result.has_error


def test_unreachable_endpoint(config: GraderConfig) -> None:
    with fake_chat_server() as (base_url, _):
        pass  # the port is closed again
    config = replace(config, model_base_url=base_url, model_max_retries=0)
    result = grade(SCORE_MODEL, make_sample("score 1"), {"question": "q"}, config)
    assert result.errors["model_grader_server_error"] is True
    assert "ConnectError" in result.errors["model_grader_server_error_details"]


@pytest.mark.parametrize(
    ("directive", "reward", "flag"),
    [
        ("label good", 1.0, None),
        ("label bad", 0.0, None),
        ("bare good", 1.0, None),
        ("label excellent", 0.0, "model_grader_parse_error"),
        ("refuse", 0.0, "model_grader_refusal_error"),
    ],
)
def test_label_model_inside_multi(
    directive: str, reward: float, flag: str | None, endpoint: tuple[GraderConfig, Recorded]
) -> None:
    multi = {"type": "multi", "graders": {"label": LABEL_MODEL}, "calculate_output": "label"}
    result = judge(directive, endpoint, multi)
    assert result.reward == reward
    assert result.sub_rewards == {"label": reward}
    if flag:
        assert result.errors[flag] is True
    else:
        assert not result.has_error
    _, recorded = endpoint
    schema = recorded.requests[-1]["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["result"]["enum"] == ["good", "bad", "unsure"]


def test_json_object_mode_for_the_services_own_endpoint(
    endpoint: tuple[GraderConfig, Recorded],
) -> None:
    config, recorded = endpoint
    judge("score 1", (replace(config, model_response_format="json_object"), recorded))
    assert recorded.requests[-1]["response_format"] == {"type": "json_object"}


def test_batch_grades_concurrently_and_sums_usage(endpoint: tuple[GraderConfig, Recorded]) -> None:
    config, _ = endpoint
    directives = ["score 0.5", "garbage", "score 1", "refuse"] * 5
    with BatchGrader(SCORE_MODEL, config) as grader:
        grades = grader.grade([make_sample(d) for d in directives], [{"question": "q"}] * 20)
    assert grades.rewards == [0.5, 0.0, 1.0, 0.0] * 5
    metrics = grades.metrics("train")
    usage = metrics["usage"]["graders"][0]
    assert usage["model"] == "judge-2025-01-01"
    assert usage["train_prompt_tokens_count"] == 11 * 20  # failed answers also used tokens
    errors = metrics["errors"]["graders"][0]
    assert errors["train_model_grader_parse_error_count"] == 5
    assert errors["train_model_grader_refusal_error_count"] == 5
    totals = metrics["model_graders_token_usage"]["judge-2025-01-01"]
    assert totals["train_completion_tokens"] == 5 * 20
