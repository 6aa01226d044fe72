"""The samples extension over plain HTTP (no SDK knows it): a finished RFT job on the tiny
model serves its graded completions per step and per validation run, to its own project only."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import pytest

from tests.api.jobfiles import BASE_MODEL, rft_rows, sft_rows
from tests.services import LiveService

MULTI_GRADER = {
    "type": "multi",
    "name": "answer",
    "graders": {
        "exact": {
            "type": "string_check",
            "name": "exact",
            "input": "{{ sample.output_text }}",
            "reference": "{{ item.answer }}",
            "operation": "eq",
        },
        "close": {
            "type": "text_similarity",
            "name": "close",
            "input": "{{ sample.output_text }}",
            "reference": "{{ item.answer }}",
            "evaluation_metric": "fuzzy_match",
        },
    },
    "calculate_output": "0.25 * exact + 0.75 * close",
}
# three steps of four prompts with two completions each: 8 completions a step, under the
# default bound of 16, so every one is kept
HYPERPARAMETERS = {"n_epochs": 1, "batch_size": 4, "group_size": 2, "max_completion_tokens": 4,
                   "eval_interval": 1, "eval_samples": 2}  # fmt: skip
FINISHED = {"succeeded", "failed", "cancelled"}


def _http(service: LiveService, api_key: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {api_key or service.api_key}"}
    return httpx.Client(base_url=service.base_url, headers=headers, timeout=60)


@pytest.fixture
def http(service: LiveService) -> Iterator[httpx.Client]:
    with _http(service) as client:
        yield client


def _upload(http: httpx.Client, name: str, rows: list[dict[str, Any]]) -> str:
    content = "".join(json.dumps(row) + "\n" for row in rows).encode()
    response = http.post("/files", files={"file": (name, content)}, data={"purpose": "fine-tune"})
    assert response.status_code == 200, response.text
    return response.json()["id"]


def _finished_job(http: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    response = http.post("/fine_tuning/jobs", json=body)
    assert response.status_code == 200, response.text
    job_id = response.json()["id"]
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        job = http.get(f"/fine_tuning/jobs/{job_id}").json()
        if job["status"] in FINISHED:
            return job
        time.sleep(0.25)
    http.post(f"/fine_tuning/jobs/{job_id}/cancel")
    pytest.fail(f"job {job_id} did not finish")


def _rft_job(http: httpx.Client) -> dict[str, Any]:
    method = {"type": "reinforcement",
              "reinforcement": {"grader": MULTI_GRADER, "hyperparameters": HYPERPARAMETERS}}  # fmt: skip
    body = {
        "model": BASE_MODEL,
        "training_file": _upload(http, "train.jsonl", rft_rows(12)),
        "validation_file": _upload(http, "valid.jsonl", rft_rows(3)),
        "method": method,
        "seed": 5,
    }
    job = _finished_job(http, body)
    assert job["status"] == "succeeded", job["error"]
    return job


def _samples(http: httpx.Client, job_id: str, **params: Any) -> httpx.Response:
    return http.get(f"/fine_tuning/jobs/{job_id}/samples", params=params)


def _check_sample(sample: dict[str, Any], step: int, split: str) -> None:
    assert sample["object"] == "fine_tuning.job.sample"
    assert (sample["step"], sample["split"]) == (step, split)
    question = sample["prompt"][0]["content"]
    assert sample["prompt"] == [{"role": "user", "content": question}]
    # the reference is the dataset row's other fields: the answer to its own question
    n = int(question.removeprefix("What is ").removesuffix(" + 1?"))
    assert sample["reference"] == {"answer": str(n + 1)}
    sub = sample["sub_rewards"]
    assert set(sub) == {"exact", "close"}
    assert sub["exact"] == (1.0 if sample["completion"] == str(n + 1) else 0.0)
    assert sample["reward"] == pytest.approx(0.25 * sub["exact"] + 0.75 * sub["close"])
    assert isinstance(sample["created_at"], int)


def test_a_finished_rft_job_serves_its_samples_per_step_and_validation(
    http: httpx.Client, service: LiveService
) -> None:
    job_id = _rft_job(http)["id"]

    steps = http.get(f"/fine_tuning/jobs/{job_id}/sample_steps").json()
    assert steps["object"] == "list"
    # the validation before training (step 0), then each step's batch and validation
    assert [(row["step"], row["split"], row["count"]) for row in steps["data"]] == [
        (0, "validation", 6), (1, "train", 8), (1, "validation", 6),
        (2, "train", 8), (2, "validation", 6), (3, "train", 8), (3, "validation", 6),
    ]  # fmt: skip
    train_only = http.get(f"/fine_tuning/jobs/{job_id}/sample_steps", params={"split": "train"})
    assert [row["step"] for row in train_only.json()["data"]] == [1, 2, 3]

    body = _samples(http, job_id, step=1).json()
    assert (body["object"], body["has_more"], body["step"], body["split"]) == (
        "list", False, 1, "train",
    )  # fmt: skip
    samples = body["data"]
    assert len(samples) == 8
    # by group, best reward first within a group; two completions of each of four prompts
    keys = [(sample["group"], -sample["reward"]) for sample in samples]
    assert keys == sorted(keys)
    assert [sample["group"] for sample in samples] == [0, 0, 1, 1, 2, 2, 3, 3]
    for sample in samples:
        _check_sample(sample, 1, "train")
    assert len({sample["prompt"][0]["content"] for sample in samples}) == 4

    latest = _samples(http, job_id).json()
    assert latest["step"] == 3 and {sample["step"] for sample in latest["data"]} == {3}

    validation = _samples(http, job_id, split="validation", step=0).json()
    assert (validation["step"], validation["split"], len(validation["data"])) == (
        0, "validation", 6,
    )  # fmt: skip
    for sample in validation["data"]:
        _check_sample(sample, 0, "validation")
    assert _samples(http, job_id, split="validation").json()["step"] == 3
    # a step without samples has none
    assert _samples(http, job_id, step=7).json() | {"data": None} == {
        "object": "list", "data": None, "has_more": False, "step": 7, "split": "train",
    }  # fmt: skip

    with _http(service, service.key_for("other-project")) as other:
        for path in ("samples", "sample_steps"):
            response = other.get(f"/fine_tuning/jobs/{job_id}/{path}")
            assert response.status_code == 404
            assert response.json()["error"]["code"] == "job_not_found"

    for params, param in (
        ({"split": "valid"}, "split"),
        ({"step": -1}, "step"),
        ({"step": "last"}, "step"),
    ):
        response = _samples(http, job_id, **params)
        assert response.status_code == 400, params
        assert response.json()["error"]["param"] == param
    bad_steps = http.get(f"/fine_tuning/jobs/{job_id}/sample_steps", params={"split": "test"})
    assert bad_steps.status_code == 400 and bad_steps.json()["error"]["param"] == "split"
    assert _samples(http, "ftjob-nope").status_code == 404
    unsigned = httpx.get(f"{service.base_url}/fine_tuning/jobs/{job_id}/samples")
    assert unsigned.status_code == 401


def test_a_supervised_job_has_no_samples(http: httpx.Client) -> None:
    body = {
        "model": BASE_MODEL,
        "training_file": _upload(http, "sft.jsonl", sft_rows(10)),
        "method": {"type": "supervised",
                   "supervised": {"hyperparameters": {"n_epochs": 1, "batch_size": 4}}},
    }  # fmt: skip
    job = _finished_job(http, body)
    assert job["status"] == "succeeded", job["error"]
    assert _samples(http, job["id"]).json() == {
        "object": "list", "data": [], "has_more": False, "step": None, "split": "train",
    }  # fmt: skip
    steps = http.get(f"/fine_tuning/jobs/{job['id']}/sample_steps").json()
    assert steps == {"object": "list", "data": []}


ANSWER_SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "integer", "minimum": 0, "maximum": 99}},
    "required": ["answer"],
    "additionalProperties": False,
}


def test_a_json_schema_job_stores_only_samples_that_match_it(http: httpx.Client) -> None:
    grader = {"type": "string_check", "name": "parsed", "operation": "eq",
              "input": "{{ sample.output_json.answer }}", "reference": "{{ item.answer }}"}  # fmt: skip
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "sum", "strict": True, "schema": ANSWER_SCHEMA},
    }
    # '{"answer": 99}' is 14 characters: the longest answer fits, plus end-of-turn
    hyperparameters = HYPERPARAMETERS | {"max_completion_tokens": 16}
    method = {"type": "reinforcement",
              "reinforcement": {"grader": grader, "hyperparameters": hyperparameters,
                                "response_format": response_format}}  # fmt: skip
    body = {
        "model": BASE_MODEL,
        "training_file": _upload(http, "train.jsonl", rft_rows(12)),
        "validation_file": _upload(http, "valid.jsonl", rft_rows(3)),
        "method": method,
        "seed": 7,
    }
    job = _finished_job(http, body)
    assert job["status"] == "succeeded", job["error"]
    assert job["method"]["reinforcement"]["response_format"] == response_format
    assert job["trained_tokens"] > 0
    steps = http.get(f"/fine_tuning/jobs/{job['id']}/sample_steps").json()["data"]
    assert [(row["step"], row["split"]) for row in steps] == [
        (0, "validation"), (1, "train"), (1, "validation"), (2, "train"), (2, "validation"),
        (3, "train"), (3, "validation"),
    ]  # fmt: skip
    stored = [
        sample
        for row in steps
        for sample in _samples(http, job["id"], step=row["step"], split=row["split"]).json()["data"]
    ]
    assert len(stored) == sum(row["count"] for row in steps) == 3 * 8 + 4 * 6
    for sample in stored:
        parsed = json.loads(sample["completion"])
        jsonschema.validate(parsed, ANSWER_SCHEMA)
        # the grader read the parsed field, not the text
        assert sample["reward"] == (
            1.0 if str(parsed["answer"]) == sample["reference"]["answer"] else 0.0
        )
