"""Job integrations through the SDK: a `wandb` integration is validated, echoed, and (with no
WANDB_API_KEY on the server) leaves an offline W&B run holding every step's metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import pytest

from tests.api.jobfiles import BASE_MODEL, rft_method, rft_rows, upload_rows
from tests.conftest import wait_for_job
from tests.services import LiveService
from tests.worker.wandb_files import history, offline_run_files, run_info

WANDB = {"project": "adder", "name": "first try", "entity": None, "tags": ["math"]}


@pytest.fixture
def rft_files(client: openai.OpenAI, tmp_path: Path) -> tuple[str, str]:
    return (
        upload_rows(client, tmp_path, "train.jsonl", rft_rows(12)),
        upload_rows(client, tmp_path, "valid.jsonl", rft_rows(4)),
    )


def test_a_wandb_run_holds_every_step(
    client: openai.OpenAI, service: LiveService, rft_files: tuple[str, str]
) -> None:
    assert "WANDB_API_KEY" not in service.env, "the test expects an offline run"
    training, validation = rft_files
    job = client.fine_tuning.jobs.create(
        model=BASE_MODEL,
        training_file=training,
        validation_file=validation,
        method=rft_method(),
        integrations=[
            {"type": "wandb", "wandb": {"project": "adder", "name": "first try", "tags": ["math"]}}
        ],
    )
    assert [i.model_dump() for i in job.integrations or []] == [{"type": "wandb", "wandb": WANDB}]
    job = wait_for_job(client, job.id, {"succeeded", "failed", "cancelled"}, timeout=180)
    assert job.status == "succeeded", job.error
    assert [i.model_dump() for i in job.integrations or []] == [{"type": "wandb", "wandb": WANDB}]

    [run_file] = offline_run_files(service.data_dir / "wandb" / job.id)
    info = run_info(run_file)
    assert (info["id"], info["project"], info["name"]) == (job.id, "adder", "first try")
    assert info["tags"] == [
        "math",
        "openrft/finetune",
        f"openrft/{BASE_MODEL}",
        f"openrft/{job.id}",
    ]
    resolved = job.method.reinforcement.hyperparameters.model_dump()
    config = info["config"]
    assert (config["method"], config["base_model"]) == ("reinforcement", BASE_MODEL)
    assert {key: config[key] for key in resolved} == resolved

    metrics = [
        event.data
        for event in client.fine_tuning.jobs.list_events(job.id, limit=100)
        if event.type == "metrics"
    ][::-1]
    steps = history(run_file)
    assert [row["_step"] for row in steps] == [data["step"] for data in metrics] == [1, 2, 3]
    for row, data in zip(steps, metrics, strict=True):
        assert row["train_reward_mean"] == data["train_reward_mean"]
        assert row["step_time"] == data["step_time"]
    assert steps[-1]["valid_reward_mean"] == metrics[-1]["valid_reward_mean"]


@pytest.mark.parametrize(
    ("integrations", "param"),
    [
        ([{"type": "mlflow", "mlflow": {"experiment": "x"}}], "integrations[0].type"),
        ([{"type": "wandb", "wandb": {"name": "no project"}}], "integrations[0].wandb.project"),
        (
            [{"type": "wandb", "wandb": {"project": "p", "colour": "blue"}}],
            "integrations[0].wandb.colour",
        ),
        (
            [{"type": "wandb", "wandb": {"project": "p", "tags": "math"}}],
            "integrations[0].wandb.tags",
        ),
        ([{"type": "wandb"}], "integrations[0].wandb"),
        ([{"type": "wandb", "wandb": {"project": "a/b"}}], "integrations[0].wandb.project"),
        (
            [
                {"type": "wandb", "wandb": {"project": "p"}},
                {"type": "wandb", "wandb": {"project": "q"}},
            ],
            "integrations[1]",
        ),
    ],
)
def test_bad_integrations_are_400s_that_store_nothing(
    client: openai.OpenAI, rft_files: tuple[str, str], integrations: Any, param: str
) -> None:
    training, validation = rft_files
    before = [job.id for job in client.fine_tuning.jobs.list(limit=100)]
    with pytest.raises(openai.BadRequestError) as refused:
        client.fine_tuning.jobs.create(
            model=BASE_MODEL,
            training_file=training,
            validation_file=validation,
            method=rft_method(),
            integrations=integrations,
        )
    assert refused.value.body["param"] == param  # type: ignore[index]
    assert [job.id for job in client.fine_tuning.jobs.list(limit=100)] == before
