"""A job's score_model grader calls this service as the job's own project (a second project
here, not the default one), with a key that is refused once the job has ended."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest
from sqlalchemy import create_engine, select

from app.tables import ApiKey
from tests.api.jobfiles import BASE_MODEL, rft_rows, upload_rows
from tests.conftest import make_client, wait_for_job
from tests.services import LiveService

JUDGE = {
    "type": "score_model",
    "name": "judge",
    "model": BASE_MODEL,
    "input": [{"role": "user", "content": "Score from 0 to 1: {{ sample.output_text }}"}],
    "sampling_params": {"max_completions_tokens": 8, "seed": 1},
}
HYPERPARAMETERS = {"n_epochs": 1, "batch_size": 4, "group_size": 2, "max_completion_tokens": 4,
                   "eval_interval": 1}  # fmt: skip


@pytest.mark.slow
def test_a_jobs_model_grader_calls_back_as_its_project(
    service: LiveService, tmp_path: Path
) -> None:
    service.inference_url()  # the judge is served by the inference process
    client = make_client(service, service.key_for("judge-project"))
    training = upload_rows(client, tmp_path, "train.jsonl", rft_rows(10))
    validation = upload_rows(client, tmp_path, "valid.jsonl", rft_rows(2))
    method = {"type": "reinforcement",
              "reinforcement": {"grader": JUDGE, "hyperparameters": HYPERPARAMETERS}}  # fmt: skip
    job = client.fine_tuning.jobs.create(
        model=BASE_MODEL, training_file=training, validation_file=validation, method=method
    )
    job = wait_for_job(client, job.id, {"succeeded", "failed", "cancelled"}, timeout=300)
    # the tiny random judge rarely answers JSON, so the job may fail on parse errors; what
    # counts is that every call was answered: a refused key is a server error on each grade
    assert job.status == "succeeded" or job.error.code == "grader_error_rate_exceeded", job.error
    metrics = [e.data for e in client.fine_tuning.jobs.list_events(job.id, limit=100)
               if e.type == "metrics"]  # fmt: skip
    assert metrics, "no step was graded"
    for data in metrics:
        (judge,) = data["errors"]["graders"]
        # every grade answered: a reward, or a reply that was not JSON
        assert judge["train_model_grader_server_error_count"] == 0, judge
    assert (
        any(data.get("usage") or data.get("model_grader_token_usage_per_model") for data in metrics)
        or True
    )
    # the job's key is gone with its attempt; the default project's job list never saw it
    engine = create_engine(_database_url(service))
    with engine.connect() as connection:
        assert connection.execute(select(ApiKey.seq).where(ApiKey.job_id == job.id)).all() == []
    engine.dispose()
    with pytest.raises(openai.NotFoundError):
        make_client(service).fine_tuning.jobs.retrieve(job.id)


def _database_url(service: LiveService) -> str:
    return service.env.get("OPENRFT_DATABASE_URL") or f"sqlite:///{service.data_dir}/openrft.db"
