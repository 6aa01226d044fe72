"""Inputs that once answered 500 through the graders endpoints: each is a 200 with the error
flagged on the result, or a 400 naming the field."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from tests.services import LiveService


def _python(source: str) -> dict:
    return {"type": "python", "name": "p", "source": source}


def test_a_formula_of_one_argument_min_or_max(client: openai.OpenAI) -> None:
    for formula in ("min(a)", "max(a)", "min(a) + max(a, 0.25)"):
        grader = {
            "type": "multi",
            "graders": {"a": {"type": "string_check", "name": "a", "input": "x",
                              "reference": "x", "operation": "eq"}},
            "calculate_output": formula,
        }  # fmt: skip
        result = client.fine_tuning.alpha.graders.run(grader=grader, model_sample="x")
        assert result.reward in (1.0, 2.0), formula


def _nested(depth: int) -> dict:
    value: dict = {"leaf": 1}
    for _ in range(depth):
        value = {"next": value}
    return value


@pytest.mark.parametrize("where", ["grader", "item"])
def test_json_nested_700_deep_is_a_400_or_a_result(service: LiveService, where: str) -> None:
    grader = {"type": "string_check", "name": "s", "input": "x", "reference": "x",
              "operation": "eq"}  # fmt: skip
    body: dict = {"grader": grader, "model_sample": "x"}
    if where == "grader":
        body["grader"] = {**grader, "extra": _nested(700)}
    else:
        body["item"] = _nested(700)
    response = httpx.post(
        f"{service.base_url}/fine_tuning/alpha/graders/run",
        content=json.dumps(body),
        headers={"Authorization": f"Bearer {service.api_key}", "Content-Type": "application/json"},
        timeout=60,
    )
    assert response.status_code in (200, 400), response.text
    if response.status_code == 400:
        assert response.json()["error"]["message"]


JUNK_ON_THE_PROTOCOL_PIPE = """
import os
def grade(sample, item):
    for fd in range(3, 12):  # wherever the runner keeps its protocol pipe
        try:
            os.write(fd, item["junk"].encode())
        except OSError:
            pass
    return 0.5
"""


@pytest.mark.parametrize(
    "junk",
    ["garbage\n", '{"reward": 1e999, "time": 0}\n', '{"reward": NaN, "time": 0}\n',
     '{"reward": "x", "time": 0}\n', '{"error": 5, "time": 0}\n', '{"reward": 1}\n'],
)  # fmt: skip
def test_a_python_grader_writing_junk_to_its_protocol_pipe(
    client: openai.OpenAI, junk: str
) -> None:
    result = client.fine_tuning.alpha.graders.run(
        grader=_python(JUNK_ON_THE_PROTOCOL_PIPE), model_sample="x", item={"junk": junk}
    )
    assert result.reward == 0.0
    assert result.metadata.errors.python_grader_server_error
    assert "protocol" in str(result.metadata.errors.python_grader_server_error_type)


@pytest.mark.parametrize("value", ["float('inf')", "float('-inf')", "float('nan')", "10**400"])
def test_a_python_grader_returning_infinity(client: openai.OpenAI, value: str) -> None:
    source = f"def grade(sample, item):\n    return {value}\n"
    result = client.fine_tuning.alpha.graders.run(grader=_python(source), model_sample="x")
    assert result.reward == 0.0
    assert result.metadata.errors.python_grader_runtime_error
