"""Datasets and graders the job tests upload."""

from __future__ import annotations

import json
from pathlib import Path

import openai

BASE_MODEL = "tiny-chat"
# a few seconds of training on the tiny model
FAST_RFT = {"n_epochs": 1, "batch_size": 4, "group_size": 2, "max_completion_tokens": 4}

STRING_CHECK_GRADER = {
    "type": "string_check",
    "name": "exact",
    "input": "{{ sample.output_text }}",
    "reference": "{{ item.answer }}",
    "operation": "eq",
}


def rft_rows(count: int) -> list[dict]:
    return [
        {"messages": [{"role": "user", "content": f"What is {n} + 1?"}], "answer": str(n + 1)}
        for n in range(count)
    ]


def sft_rows(count: int) -> list[dict]:
    return [
        {
            "messages": [
                {"role": "user", "content": f"What is {n} + 1?"},
                {"role": "assistant", "content": str(n + 1)},
            ]
        }
        for n in range(count)
    ]


def upload_rows(client: openai.OpenAI, tmp_path: Path, name: str, rows: list) -> str:
    path = tmp_path / name
    path.write_text(
        "".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows)
    )
    return client.files.create(file=path.open("rb"), purpose="fine-tune").id


def rft_method(**hyperparameters: object) -> dict:
    return {
        "type": "reinforcement",
        "reinforcement": {
            "grader": STRING_CHECK_GRADER,
            "hyperparameters": {**FAST_RFT, **hyperparameters},
        },
    }


def cancel_unfinished(client: openai.OpenAI) -> None:
    """Leave the worker free for the next test."""
    for job in client.fine_tuning.jobs.list(limit=100):
        if job.status not in ("succeeded", "failed", "cancelled"):
            try:
                client.fine_tuning.jobs.cancel(job.id)
            except openai.BadRequestError:
                pass  # it finished meanwhile


def train_tiny_job(client: openai.OpenAI, tmp_path: Path, suffix: str) -> str:
    """A reinforcement job on the tiny model, run to success (with a checkpoint); its id."""
    from tests.conftest import wait_for_job

    training = upload_rows(client, tmp_path, "train.jsonl", rft_rows(10))
    validation = upload_rows(client, tmp_path, "valid.jsonl", rft_rows(4))
    job = client.fine_tuning.jobs.create(
        model=BASE_MODEL,
        training_file=training,
        validation_file=validation,
        suffix=suffix,
        method=rft_method(),
    )
    job = wait_for_job(client, job.id, {"succeeded", "failed", "cancelled"}, timeout=240)
    assert job.status == "succeeded", job.error
    return job.id
