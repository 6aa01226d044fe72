"""The product as a user meets it: upload, train, watch, download, chat; on both backends."""

from __future__ import annotations

import io
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.api.jobfiles import BASE_MODEL, cancel_unfinished, rft_rows, sft_rows, upload_rows
from tests.conftest import wait_for_job
from tests.services import LiveService

MULTI_GRADER = {
    "type": "multi",
    "name": "answer",
    "graders": {
        "contains": {
            "type": "string_check",
            "name": "contains",
            "input": "{{ sample.output_text }}",
            "reference": "{{ item.answer }}",
            "operation": "ilike",
        },
        "close": {
            "type": "text_similarity",
            "name": "close",
            "input": "{{ sample.output_text }}",
            "reference": "{{ item.answer }}",
            "evaluation_metric": "fuzzy_match",
        },
    },
    "calculate_output": "0.5 * contains + 0.5 * close",
}
HYPERPARAMETERS = {"n_epochs": 1, "batch_size": 4, "group_size": 2, "max_completion_tokens": 6,
                   "eval_interval": 1}  # fmt: skip
FINISHED = {"succeeded", "failed", "cancelled"}


@pytest.fixture(autouse=True)
def _free_worker(client: openai.OpenAI) -> Iterator[None]:
    yield
    cancel_unfinished(client)


def _rft_job(client: openai.OpenAI, tmp_path: Path, **overrides: object) -> str:
    training = upload_rows(client, tmp_path, "train.jsonl", rft_rows(12))
    validation = upload_rows(client, tmp_path, "valid.jsonl", rft_rows(4))
    hyperparameters = {**HYPERPARAMETERS, **overrides.pop("hyperparameters", {})}  # type: ignore[dict-item]
    method = {"type": "reinforcement",
              "reinforcement": {"grader": MULTI_GRADER, "hyperparameters": hyperparameters}}  # fmt: skip
    job = client.fine_tuning.jobs.create(
        model=BASE_MODEL, training_file=training, validation_file=validation, method=method,
        suffix="e2e", **overrides,  # type: ignore[arg-type]
    )  # fmt: skip
    return job.id


def test_rft_job_trains_reports_and_serves_its_model(client: openai.OpenAI, tmp_path: Path) -> None:
    job_id = _rft_job(client, tmp_path, seed=11)
    job = wait_for_job(client, job_id, FINISHED, timeout=240)
    assert job.status == "succeeded", job.error
    assert job.fine_tuned_model == f"ft:{BASE_MODEL}:default:e2e:{job_id}"
    # every sampled prompt and completion counts, whether or not its group carried signal
    assert job.trained_tokens is not None and job.trained_tokens > 0 and job.finished_at
    resolved = job.method.reinforcement.hyperparameters
    assert resolved.group_size == 2 and resolved.eval_interval == 1
    assert resolved.learning_rate_multiplier != "auto"

    events = list(client.fine_tuning.jobs.list_events(job_id, limit=100))
    created_order = [event.created_at for event in events]
    assert created_order == sorted(created_order, reverse=True)
    metrics = [event for event in events if event.type == "metrics"][::-1]
    assert [event.data["step"] for event in metrics] == [1, 2, 3]
    first = metrics[0].data
    assert first["total_steps"] == 3
    for key in (
        "train_reward_mean",
        "train_mean_reward",
        "valid_reward_mean",
        "full_valid_mean_reward",
    ):
        assert 0.0 <= first[key] <= 1.0, key
    assert {grader["name"] for grader in first["scores"]["graders"]} == {"contains", "close"}
    assert set(first["timing"]["step"]) >= {"sampling", "training", "full_iteration"}
    assert metrics[0].message.startswith("Step 1/3")
    messages = [event.message for event in events]
    assert messages[0] == f"New fine-tuned model created: {job.fine_tuned_model}"
    assert "The job has successfully completed" in messages
    assert "Fine-tuning job started" in messages

    result_file = client.files.retrieve(job.result_files[0])
    assert result_file.purpose == "fine-tune-results"
    csv = client.files.content(result_file.id).text.splitlines()
    assert csv[0].startswith("step,")
    assert [int(line.split(",")[0]) for line in csv[1:]][-3:] == [1, 2, 3]

    # eval_interval 1: a checkpoint at each of the 3 steps, all kept (the best three and the
    # latest), newest first
    checkpoints = list(client.fine_tuning.jobs.checkpoints.list(job_id))
    assert [(c.step_number, c.fine_tuned_model_checkpoint) for c in checkpoints] == [
        (step, f"{job.fine_tuned_model}:ckpt-step-{step}") for step in (3, 2, 1)
    ]
    assert "valid_reward_mean" in checkpoints[0].metrics.to_dict()

    archive = client.get(
        f"/fine_tuning/jobs/{job_id}/checkpoints/{checkpoints[0].id}/content", cast_to=bytes
    )
    adapter_dir = tmp_path / "adapter"
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        tar.extractall(adapter_dir, filter="data")
    config = next(adapter_dir.rglob("adapter_config.json"))
    _generate_with_adapter(config.parent, client)

    reply = client.chat.completions.create(
        model=job.fine_tuned_model, messages=[{"role": "user", "content": "What is 2 + 1?"}],
        max_tokens=5, seed=3,
    )  # fmt: skip
    assert reply.model == job.fine_tuned_model
    assert job.fine_tuned_model in [model.id for model in client.models.list()]


def _generate_with_adapter(adapter_dir: Path, client: openai.OpenAI) -> None:
    """The downloaded adapter loads with PEFT on its base model and generates."""
    import json

    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base_dir = json.loads((adapter_dir / "adapter_config.json").read_text())[
        "base_model_name_or_path"
    ]
    base = AutoModelForCausalLM.from_pretrained(base_dir)
    model = PeftModel.from_pretrained(base, adapter_dir)
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    prompt = tokenizer("What is 2 + 1?", return_tensors="pt")
    with torch.no_grad():
        output = model.generate(**prompt, max_new_tokens=3, do_sample=False)
    assert output.shape[1] == prompt["input_ids"].shape[1] + 3


def test_supervised_job_trains(client: openai.OpenAI, tmp_path: Path) -> None:
    training = upload_rows(client, tmp_path, "sft.jsonl", sft_rows(10))
    job = client.fine_tuning.jobs.create(
        model=BASE_MODEL, training_file=training,
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 1, "batch_size": 5}}},
    )  # fmt: skip
    job = wait_for_job(client, job.id, FINISHED, timeout=240)
    assert job.status == "succeeded", job.error
    metrics = [
        e.data
        for e in client.fine_tuning.jobs.list_events(job.id, limit=100)
        if e.type == "metrics"
    ]
    assert metrics and all("train_loss" in data for data in metrics)
    # the newest checkpoint is the last step's, whose adapter the job published
    newest = client.fine_tuning.jobs.checkpoints.list(job.id).data[0]
    assert newest.step_number == metrics[0]["step"]


def test_cancel_a_running_job(client: openai.OpenAI, tmp_path: Path) -> None:
    job_id = _rft_job(client, tmp_path, hyperparameters={"n_epochs": 20})
    wait_for_job(client, job_id, {"running"}, timeout=120)
    assert client.fine_tuning.jobs.cancel(job_id).status == "running"  # stops at the next step
    job = wait_for_job(client, job_id, {"cancelled"}, timeout=120)
    assert job.finished_at is not None and job.fine_tuned_model is None
    messages = [event.message for event in client.fine_tuning.jobs.list_events(job_id)]
    assert "Cancellation requested, the job will stop at the next step" in messages


def _train_rewards(client: openai.OpenAI, job_id: str) -> list[tuple[int, float, float]]:
    events = client.fine_tuning.jobs.list_events(job_id, limit=200)
    steps = {e.data["step"]: e.data for e in events if e.type == "metrics"}
    return [
        (step, data["train_reward_mean"], data["valid_reward_mean"])
        for step, data in sorted(steps.items())
    ]


def test_pause_and_resume_match_an_uninterrupted_run(client: openai.OpenAI, tmp_path: Path) -> None:
    overrides = {"hyperparameters": {"n_epochs": 2}, "seed": 5}
    straight = _rft_job(client, tmp_path, **overrides)
    assert wait_for_job(client, straight, FINISHED, timeout=240).status == "succeeded"

    paused = _rft_job(client, tmp_path, **overrides)
    _wait_for_first_step(client, paused)
    client.fine_tuning.jobs.pause(paused)
    job = wait_for_job(client, paused, {"paused", "succeeded"}, timeout=120)
    assert job.status == "paused", "the pause must land between steps, not after the run"
    steps_before_pause = [row[0] for row in _train_rewards(client, paused)]
    total_steps = _train_rewards(client, straight)[-1][0]
    assert steps_before_pause and steps_before_pause[-1] < total_steps
    assert client.fine_tuning.jobs.checkpoints.list(paused).data
    assert client.fine_tuning.jobs.resume(paused).status == "queued"
    job = wait_for_job(client, paused, FINISHED, timeout=240)
    assert job.status == "succeeded"
    assert _train_rewards(client, paused) == _train_rewards(client, straight)


def _wait_for_first_step(client: openai.OpenAI, job_id: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not any(e.type == "metrics" for e in client.fine_tuning.jobs.list_events(job_id)):
        assert time.monotonic() < deadline, "no step was reported"
        time.sleep(0.05)


def test_trainer_failure_fails_the_job_with_its_error(
    client: openai.OpenAI, tmp_path: Path
) -> None:
    grader = {"type": "python", "name": "broken",
              "source": "def grade(sample, item):\n    raise RuntimeError('no')\n"}  # fmt: skip
    training = upload_rows(client, tmp_path, "train.jsonl", rft_rows(12))
    validation = upload_rows(client, tmp_path, "valid.jsonl", rft_rows(4))
    job = client.fine_tuning.jobs.create(
        model=BASE_MODEL, training_file=training, validation_file=validation,
        method={"type": "reinforcement", "reinforcement": {"grader": grader, "hyperparameters": HYPERPARAMETERS}},
    )  # fmt: skip
    job = wait_for_job(client, job.id, FINISHED, timeout=240)
    assert job.status == "failed"
    assert job.error is not None and job.error.code == "grader_error_rate_exceeded"
    assert "grader failed" in job.error.message
    newest = client.fine_tuning.jobs.list_events(job.id).data[0]
    assert (newest.level, newest.message) == ("error", f"The job failed: {job.error.message}")


def test_score_model_grader_calls_this_services_models(
    client: openai.OpenAI, service: LiveService
) -> None:
    service.inference_url()  # the inference process starts after the API; run alone, wait for it
    grader = {
        "type": "score_model",
        "name": "judge",
        "model": BASE_MODEL,
        "input": [
            {"role": "user", "content": "Score this answer from 0 to 1: {{ sample.output_text }}"}
        ],
        "sampling_params": {"max_completions_tokens": 8, "seed": 1},
    }
    result = client.fine_tuning.alpha.graders.run(grader=grader, model_sample="Paris")
    errors = result.metadata.errors
    # the tiny random model answers with some JSON object: a parse error at worst, never a
    # server error, and its tokens are counted
    assert not errors.api_model_grader_server_error, errors.api_model_grader_server_error_details
    assert result.metadata.token_usage
