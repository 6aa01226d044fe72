"""The alpha graders endpoints through the official SDK against a live server."""

from __future__ import annotations

import threading

import openai
import pytest

from app.graders import BOOLEAN_FLAGS, DETAIL_FIELDS
from tests.services import LiveService

STRING_CHECK = {
    "type": "string_check",
    "name": "exact",
    "input": "{{sample.output_json.city}}",
    "reference": "{{item.city}}",
    "operation": "eq",
}


def test_run_string_check_returns_the_reference_shape(client: openai.OpenAI) -> None:
    raw = client.fine_tuning.alpha.graders.with_raw_response.run(
        grader=STRING_CHECK, model_sample='{"city": "Paris"}', item={"city": "Paris"}
    )
    body = raw.http_response.json()
    assert set(body) == {"reward", "metadata", "sub_rewards", "model_grader_token_usage_per_model"}
    assert body["reward"] == 1.0
    metadata = body["metadata"]
    assert set(metadata["errors"]) == set(BOOLEAN_FLAGS) | set(DETAIL_FIELDS)
    assert len(metadata["errors"]) == 14
    assert not any(metadata["errors"][flag] for flag in BOOLEAN_FLAGS)
    assert metadata["name"] == "exact" and metadata["type"] == "string_check"
    assert isinstance(metadata["execution_time"], float)
    assert metadata["token_usage"] is None and metadata["scores"] == {}
    parsed = raw.parse()
    assert parsed.reward == 1.0
    assert parsed.metadata.errors.sample_parse_error is False


def test_run_flags_a_non_json_sample(client: openai.OpenAI) -> None:
    result = client.fine_tuning.alpha.graders.run(
        grader=STRING_CHECK, model_sample="Paris", item={"city": "Paris"}
    )
    assert result.reward == 0.0
    assert result.metadata.errors.sample_parse_error is True


def test_run_multi_reports_sub_rewards(client: openai.OpenAI) -> None:
    grader = {
        "type": "multi",
        "name": "combined",
        "graders": {
            "exact": STRING_CHECK,
            "fuzzy": {
                "type": "text_similarity",
                "name": "fuzzy",
                "input": "{{sample.output_json.city}}",
                "reference": "{{item.city}}",
                "evaluation_metric": "fuzzy_match",
            },
        },
        "calculate_output": "0.5 * exact + 0.5 * fuzzy",
    }
    result = client.fine_tuning.alpha.graders.run(
        grader=grader, model_sample='{"city": "Pariss"}', item={"city": "Paris"}
    )
    assert result.sub_rewards["exact"] == 0.0
    # "Pariss" against "Paris": 2 * 5 matching characters in 11
    assert result.sub_rewards["fuzzy"] == pytest.approx(10 / 11)
    assert result.reward == pytest.approx(0.5 * result.sub_rewards["fuzzy"])


def test_run_python_grader_and_its_runtime_error(client: openai.OpenAI) -> None:
    source = (
        "def grade(sample, item):\n"
        "    return 1.0 if sample['output_text'] == item['answer'] else 1 / 0\n"
    )
    grader = {"type": "python", "name": "py", "source": source}
    good = client.fine_tuning.alpha.graders.run(
        grader=grader, model_sample="42", item={"answer": "42"}
    )
    assert good.reward == 1.0
    bad = client.fine_tuning.alpha.graders.run(
        grader=grader, model_sample="41", item={"answer": "42"}
    )
    assert bad.reward == 0.0
    assert bad.metadata.errors.python_grader_runtime_error is True
    assert "ZeroDivisionError" in bad.metadata.errors.python_grader_runtime_error_details


def test_python_grader_cannot_reach_the_server_its_data_or_secrets(
    client: openai.OpenAI, service: LiveService
) -> None:
    source = """
import os, socket, time
def grade(sample, item):
    time.sleep(1.5)  # long enough for the server to be asked something meanwhile
    reached = 0
    try:
        socket.create_connection(("127.0.0.1", item["port"]), timeout=2).close()
        reached += 1
    except OSError:
        pass
    for path in item["paths"]:
        reached += os.path.exists(path)
    reached += any(item["key"] in value for value in os.environ.values())
    return float(reached)
"""
    port = int(service.base_url.split(":")[-1].split("/")[0])
    paths = [str(service.data_dir), str(service.data_dir / "openrft.db")]
    item = {"port": port, "paths": paths, "key": service.api_key}
    grader = {"type": "python", "name": "escape", "source": source}
    models = [model.id for model in client.models.list()]
    answered: list[list[str]] = []

    def poll_while_grading() -> None:
        answered.append([model.id for model in client.models.list()])

    poller = threading.Timer(0.2, poll_while_grading)
    poller.start()
    result = client.fine_tuning.alpha.graders.run(grader=grader, model_sample="x", item=item)
    poller.join()
    assert result.metadata.errors.python_grader_runtime_error is False
    assert result.reward == 0.0
    assert answered == [models]  # the server answered while the grader ran
    assert [model.id for model in client.models.list()] == models


def test_validate_echoes_the_normalized_grader(client: openai.OpenAI) -> None:
    grader = {
        "type": "multi",
        "graders": {**STRING_CHECK, "operation": "neq"},
        "calculate_output": "exact",
    }
    raw = client.fine_tuning.alpha.graders.with_raw_response.validate(grader=grader)
    echoed = raw.http_response.json()["grader"]
    assert echoed["name"] == "multi"
    assert list(echoed["graders"]) == ["exact"]
    assert echoed["graders"]["exact"]["operation"] == "ne"
    assert echoed["calculate_output"] == "exact"


@pytest.mark.parametrize(
    ("grader", "param"),
    [
        ({**STRING_CHECK, "operation": "equals"}, "grader.operation"),
        (
            {
                "type": "label_model",
                "name": "l",
                "model": "m",
                "input": [{"role": "user", "content": "x"}],
                "labels": ["a"],
                "passing_labels": ["a"],
            },
            "grader.type",
        ),
        (
            {
                "type": "multi",
                "graders": {"exact": {**STRING_CHECK, "input": "{{ secret.x }}"}},
                "calculate_output": "exact",
            },
            "grader.graders.exact.input",
        ),
        (
            {"type": "multi", "graders": {"exact": STRING_CHECK}, "calculate_output": "exact +"},
            "grader.calculate_output",
        ),
        ({"type": "python", "name": "p", "source": "def grade(x):\n  return 1\n"}, "grader.source"),
    ],
)
def test_invalid_graders_answer_400_with_param(
    client: openai.OpenAI, grader: dict, param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.fine_tuning.alpha.graders.validate(grader=grader)
    assert caught.value.status_code == 400
    assert caught.value.param == param
    with pytest.raises(openai.BadRequestError) as caught_run:
        client.fine_tuning.alpha.graders.run(grader=grader, model_sample="x")
    assert caught_run.value.param == param


def test_graders_endpoints_need_a_key(service: LiveService) -> None:
    anonymous = openai.OpenAI(base_url=service.base_url, api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        anonymous.fine_tuning.alpha.graders.validate(grader=STRING_CHECK)
