"""DPO through the SDK: OpenAI's preference lines in, a trained adapter, DPO metrics and
checkpoints out; bad lines and bad beta refused."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.api.jobfiles import BASE_MODEL, cancel_unfinished, sft_rows, upload_rows
from tests.conftest import wait_for_job

FINISHED = {"succeeded", "failed", "cancelled"}


@pytest.fixture(autouse=True)
def _free_worker(client: openai.OpenAI) -> Iterator[None]:
    yield
    cancel_unfinished(client)


def preference_rows(count: int) -> list[dict]:
    return [
        {
            "input": {"messages": [{"role": "user", "content": f"What is {n} + 1?"}]},
            "preferred_output": [{"role": "assistant", "content": str(n + 1)}],
            "non_preferred_output": [{"role": "assistant", "content": f"maybe {n + 7}"}],
        }
        for n in range(count)
    ]


def dpo_method(**hyperparameters: object) -> dict:
    return {"type": "dpo", "dpo": {"hyperparameters": hyperparameters}}


def test_dpo_job_trains_reports_and_checkpoints(client: openai.OpenAI, tmp_path: Path) -> None:
    training = upload_rows(client, tmp_path, "train.jsonl", preference_rows(10))
    validation = upload_rows(client, tmp_path, "valid.jsonl", preference_rows(13)[10:])
    job = client.fine_tuning.jobs.create(
        model=BASE_MODEL,
        training_file=training,
        validation_file=validation,
        suffix="dpo",
        method=dpo_method(beta=0.2, n_epochs=1, batch_size=5),
    )
    assert job.method.type == "dpo" and job.method.dpo.hyperparameters.beta == 0.2
    assert job.method.dpo.hyperparameters.learning_rate_multiplier == "auto"
    job = wait_for_job(client, job.id, FINISHED, timeout=240)
    assert job.status == "succeeded", job.error
    assert job.fine_tuned_model == f"ft:{BASE_MODEL}:default:dpo:{job.id}"
    resolved = job.method.dpo.hyperparameters
    assert (resolved.beta, resolved.batch_size, resolved.n_epochs) == (0.2, 5, 1)
    assert resolved.learning_rate_multiplier == 1.0
    assert job.trained_tokens and job.trained_tokens > 0

    events = client.fine_tuning.jobs.list_events(job.id, limit=100).data
    metrics = [event.data for event in events if event.type == "metrics"][::-1]
    assert [data["step"] for data in metrics] == [1, 2]
    # the first step starts from a zero adapter: policy = reference, so the loss is log 2, as
    # TRL's DPOTrainer reports on a fresh adapter (tests/trainer/test_dpo.py compares the rest)
    assert metrics[0]["train_loss"] == pytest.approx(math.log(2), abs=1e-4)
    for name in ("train_loss", "valid_loss", "rewards/chosen", "rewards/rejected",
                 "rewards/margins", "rewards/accuracies", "logps/chosen", "logps/rejected"):  # fmt: skip
        assert name in metrics[0], name
    assert "full_valid_loss" in metrics[-1] and "eval_rewards/margins" in metrics[-1]

    csv = client.files.content(job.result_files[0]).text.splitlines()
    header = csv[0].split(",")
    assert {"step", "train_loss", "rewards/margins", "rewards/accuracies"} <= set(header)
    assert [int(line.split(",")[0]) for line in csv[1:]] == [0, 1, 2]

    # eval_interval "auto" is 1 for a 2-step run: a checkpoint at each step, newest first
    checkpoints = client.fine_tuning.jobs.checkpoints.list(job.id).data
    assert [c.step_number for c in checkpoints] == [2, 1]
    assert checkpoints[0].fine_tuned_model_checkpoint == f"{job.fine_tuned_model}:ckpt-step-2"
    assert "rewards/margins" in checkpoints[0].metrics.to_dict()


def test_dpo_refuses_bad_beta_and_fails_a_bad_line(client: openai.OpenAI, tmp_path: Path) -> None:
    rows = preference_rows(12)
    training = upload_rows(client, tmp_path, "train.jsonl", rows)
    with pytest.raises(openai.BadRequestError) as caught:
        client.fine_tuning.jobs.create(
            model=BASE_MODEL, training_file=training, method=dpo_method(beta=3)
        )
    assert caught.value.param == "method.dpo.hyperparameters.beta"

    bad_training = upload_rows(client, tmp_path, "bad.jsonl", rows[:4] + sft_rows(1) + rows)
    job = client.fine_tuning.jobs.create(
        model=BASE_MODEL, training_file=bad_training, method=dpo_method()
    )
    job = wait_for_job(client, job.id, {"failed"}, timeout=120)
    assert job.error is not None and job.error.param == "training_file"
    assert job.error.message.startswith('Line 5: missing "input"')
