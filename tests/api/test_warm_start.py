"""`method.reinforcement.warm_start` (an extension) through the SDK: refused by name when the
data lacks the field, and a job that learns the field first, then trains with RL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.api.jobfiles import BASE_MODEL, cancel_unfinished, rft_method, rft_rows, upload_rows
from tests.conftest import wait_for_job

DONE = {"succeeded", "failed", "cancelled"}
WARM_PATH = "method.reinforcement.warm_start"


@pytest.fixture(autouse=True)
def _free_worker(client: openai.OpenAI) -> Iterator[None]:
    yield
    cancel_unfinished(client)


def warm_method(warm_start: object, **hyperparameters: object) -> dict:
    method = rft_method(**hyperparameters)
    method["reinforcement"]["warm_start"] = warm_start
    return method


def create_error(client: openai.OpenAI, **request: object) -> openai.BadRequestError:
    with pytest.raises(openai.BadRequestError) as caught:
        client.fine_tuning.jobs.create(**request)  # type: ignore[arg-type]
    return caught.value


def test_a_field_missing_from_the_training_file_is_a_400_naming_it(
    client: openai.OpenAI, tmp_path: Path
) -> None:
    rows = rft_rows(12)
    del rows[4]["answer"]
    training = upload_rows(client, tmp_path, "train.jsonl", rows)
    validation = upload_rows(client, tmp_path, "valid.jsonl", rft_rows(4))
    grader = rft_method()["reinforcement"]["grader"] | {"reference": "{{ item.answer }}"}
    method = warm_method({"field": "answer"})
    method["reinforcement"]["grader"] = grader
    error = create_error(
        client, model=BASE_MODEL, training_file=training, validation_file=validation, method=method
    )
    assert error.status_code == 400
    assert error.param == f"{WARM_PATH}.field"
    assert 'Line 5 of the training file has no "answer"' in error.message
    unknown = create_error(
        client,
        model=BASE_MODEL,
        training_file=training,
        validation_file=validation,
        method=warm_method({"field": "answer", "epochs": 2}),
    )
    assert unknown.param == f"{WARM_PATH}.epochs"


def test_a_warm_started_job_reports_both_phases(client: openai.OpenAI, tmp_path: Path) -> None:
    job = client.fine_tuning.jobs.create(
        model=BASE_MODEL,
        training_file=upload_rows(client, tmp_path, "train.jsonl", rft_rows(12)),
        validation_file=upload_rows(client, tmp_path, "valid.jsonl", rft_rows(4)),
        method=warm_method({"field": "answer", "n_epochs": 1, "batch_size": 4}),
    )
    assert job.method.reinforcement.warm_start == {  # type: ignore[attr-defined]
        "field": "answer",
        "n_epochs": 1,
        "batch_size": 4,
    }
    job = wait_for_job(client, job.id, DONE, timeout=180)
    assert job.status == "succeeded", job.error
    events = list(client.fine_tuning.jobs.list_events(job.id, limit=100))[::-1]
    steps = [event.data for event in events if event.type == "metrics"]
    # 3 supervised steps (12 rows in batches of 4), then 3 RL steps
    assert [data["phase"] for data in steps] == ["warm_start"] * 3 + ["reinforcement"] * 3
    assert "train_loss" in steps[0] and "train_reward_top_share" in steps[-1]
    messages = [event.message for event in events]
    assert any(message.startswith("Warm start: 3 supervised steps") for message in messages)
    assert any("after the warm start" in message for message in messages)
    assert client.fine_tuning.jobs.checkpoints.list(job.id).data
