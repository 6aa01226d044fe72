"""Training on from a fine-tuned model through the SDK: SFT first, then RFT on its result."""

from __future__ import annotations

import io
import shutil
import tarfile
from pathlib import Path
from typing import Any

import openai
import pytest
import torch
from safetensors.torch import load

from tests.api.jobfiles import (
    BASE_MODEL,
    cancel_unfinished,
    rft_method,
    rft_rows,
    sft_rows,
    upload_rows,
)
from tests.conftest import make_client, wait_for_job
from tests.services import LiveService
from worker.published_checkpoints import job_checkpoints_root
from worker.trainer.checkpoints import DirectoryCheckpointStore

DONE = {"succeeded", "failed", "cancelled"}
SFT = {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 1, "batch_size": 4}}}


@pytest.fixture(scope="module")
def sft_job(service: LiveService, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A succeeded SFT job on the tiny model: the parent of the jobs below."""
    client = make_client(service)
    tmp_path = tmp_path_factory.mktemp("sft")
    job = client.fine_tuning.jobs.create(
        model=BASE_MODEL,
        training_file=upload_rows(client, tmp_path, "train.jsonl", sft_rows(12)),
        validation_file=upload_rows(client, tmp_path, "valid.jsonl", sft_rows(4)),
        method=SFT,
        suffix="format",
    )
    job = wait_for_job(client, job.id, DONE, timeout=180)
    assert job.status == "succeeded", job.error
    return job


@pytest.fixture
def rft_files(client: openai.OpenAI, tmp_path: Path) -> tuple[str, str]:
    return (
        upload_rows(client, tmp_path, "train.jsonl", rft_rows(12)),
        upload_rows(client, tmp_path, "valid.jsonl", rft_rows(4)),
    )


def adapter_weights(client: openai.OpenAI, model: str) -> dict[str, torch.Tensor]:
    """The weights of a fine-tuned model's adapter, from its download."""
    archive = client.get(f"/models/{model}/content", cast_to=bytes)
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        [member] = [m for m in tar.getmembers() if m.name.endswith("adapter_model.safetensors")]
        handle = tar.extractfile(member)
        assert handle is not None
        return load(handle.read())


def test_rft_trains_on_from_the_sft_model(
    client: openai.OpenAI, sft_job: Any, rft_files: tuple[str, str]
) -> None:
    training, validation = rft_files
    job = client.fine_tuning.jobs.create(
        model=sft_job.fine_tuned_model,
        training_file=training,
        validation_file=validation,
        method=rft_method(),
        seed=1234,  # not the parent's: a fresh adapter would start elsewhere
    )
    # OpenAI's echo keeps `model` as given; the parent is an extra field the SDK keeps
    assert job.model == sft_job.fine_tuned_model
    assert job.parent_job_id == sft_job.id  # type: ignore[attr-defined]
    job = wait_for_job(client, job.id, DONE, timeout=180)
    assert job.status == "succeeded", job.error
    assert job.parent_job_id == sft_job.id  # type: ignore[attr-defined]
    project = sft_job.fine_tuned_model.split(":")[2]
    # the child is named for the catalogue model its weights sit on, not for its parent
    assert job.fine_tuned_model == f"ft:{BASE_MODEL}:{project}::{job.id}"
    resolved = job.method.reinforcement.hyperparameters
    sft_resolved = sft_job.method.supervised.hyperparameters
    assert (resolved.lora_rank, resolved.lora_alpha) == (  # type: ignore[attr-defined]
        sft_resolved.lora_rank,  # type: ignore[attr-defined]
        sft_resolved.lora_alpha,  # type: ignore[attr-defined]
    )
    messages = [event.message for event in client.fine_tuning.jobs.list_events(job.id, limit=100)]
    assert f"Training on from the adapter of {sft_job.fine_tuned_model} (job {sft_job.id})" in (
        messages
    )

    # the child's adapter is the parent's trained on: 3 steps at a learning rate of 1e-4 move
    # lora_A by well under 1e-2, where a fresh adapter (another seed) differs by far more
    parent = adapter_weights(client, sft_job.fine_tuned_model)
    child = adapter_weights(client, job.fine_tuned_model)
    assert child.keys() == parent.keys()
    lora_a = [key for key in parent if "lora_A" in key]
    assert lora_a and all((child[k] - parent[k]).abs().max() < 1e-2 for k in lora_a)
    assert any(parent[k].abs().max() > 0.05 for k in lora_a)
    assert any(parent[k].abs().sum() > 0 for k in parent if "lora_B" in k)

    reply = client.chat.completions.create(
        model=job.fine_tuned_model, messages=[{"role": "user", "content": "1 + 1?"}], max_tokens=2
    )
    assert reply.model == job.fine_tuned_model


def test_a_checkpoint_is_a_base_too(client: openai.OpenAI, sft_job: Any, tmp_path: Path) -> None:
    checkpoint = client.fine_tuning.jobs.checkpoints.list(sft_job.id).data[-1]
    job = client.fine_tuning.jobs.create(
        model=checkpoint.fine_tuned_model_checkpoint,
        training_file=upload_rows(client, tmp_path, "train.jsonl", sft_rows(12)),
        method=SFT,
    )
    assert job.model == checkpoint.fine_tuned_model_checkpoint
    job = wait_for_job(client, job.id, DONE, timeout=180)
    assert job.status == "succeeded", job.error
    assert job.parent_job_id == sft_job.id  # type: ignore[attr-defined]
    assert job.fine_tuned_model.startswith(f"ft:{BASE_MODEL}:")
    assert job.fine_tuned_model.endswith(f"::{job.id}")


def _refused(client: openai.OpenAI, param: str, **create: Any) -> openai.BadRequestError:
    before = [job.id for job in client.fine_tuning.jobs.list(limit=100)]
    with pytest.raises(openai.BadRequestError) as refused:
        client.fine_tuning.jobs.create(**create)
    assert refused.value.body["param"] == param  # type: ignore[index]
    assert [job.id for job in client.fine_tuning.jobs.list(limit=100)] == before
    return refused.value


def test_unknown_and_other_projects_models_are_400s(
    client: openai.OpenAI,
    other_client: openai.OpenAI,
    sft_job: Any,
    tmp_path: Path,
) -> None:
    training = upload_rows(client, tmp_path, "train.jsonl", sft_rows(12))
    unknown = f"ft:{BASE_MODEL}:default::ftjob-doesnotexist"
    error = _refused(client, "model", model=unknown, training_file=training, method=SFT)
    assert error.body["message"] == (  # type: ignore[index]
        f"Model '{unknown}' does not exist or is not available for fine-tuning."
    )
    other_training = upload_rows(other_client, tmp_path, "other.jsonl", sft_rows(12))
    _refused(
        other_client, "model",
        model=sft_job.fine_tuned_model, training_file=other_training, method=SFT,
    )  # fmt: skip
    checkpoint = client.fine_tuning.jobs.checkpoints.list(sft_job.id).data[0]
    _refused(
        other_client, "model",
        model=checkpoint.fine_tuned_model_checkpoint, training_file=other_training, method=SFT,
    )  # fmt: skip


def test_the_parents_adapter_shape_and_no_kl_are_kept(
    client: openai.OpenAI, sft_job: Any, rft_files: tuple[str, str]
) -> None:
    training, validation = rft_files
    rank = sft_job.method.supervised.hyperparameters.lora_rank  # type: ignore[attr-defined]
    _refused(
        client,
        "method.reinforcement.hyperparameters.lora_rank",
        model=sft_job.fine_tuned_model,
        training_file=training,
        validation_file=validation,
        method=rft_method(lora_rank=rank // 2),
    )
    _refused(
        client,
        "method.reinforcement.hyperparameters.beta",
        model=sft_job.fine_tuned_model,
        training_file=training,
        validation_file=validation,
        method=rft_method(beta=0.1),
    )
    cancel_unfinished(client)


def test_a_paused_child_resumes_without_its_parents_files(
    client: openai.OpenAI, service: LiveService, sft_job: Any, tmp_path: Path
) -> None:
    """Runs last: it deletes the files of the parent checkpoint it trains on."""
    checkpoint = client.fine_tuning.jobs.checkpoints.list(sft_job.id).data[-1]
    long_sft = {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 20}}}
    job = client.fine_tuning.jobs.create(
        model=checkpoint.fine_tuned_model_checkpoint,
        training_file=upload_rows(client, tmp_path, "train.jsonl", sft_rows(12)),
        method=long_sft,
    )
    wait_for_job(client, job.id, {"running"}, timeout=120)
    while not any(e.type == "metrics" for e in client.fine_tuning.jobs.list_events(job.id)):
        assert client.fine_tuning.jobs.retrieve(job.id).status == "running"
    client.fine_tuning.jobs.pause(job.id)
    assert wait_for_job(client, job.id, {"paused", "succeeded"}, timeout=120).status == "paused"

    parent_root = job_checkpoints_root(service.data_dir / "checkpoints", sft_job.id)
    parent_files = DirectoryCheckpointStore(parent_root).step_dir(checkpoint.step_number)
    assert (parent_files / "adapter_model.safetensors").is_file()
    shutil.rmtree(parent_files)
    client.fine_tuning.jobs.resume(job.id)
    job = wait_for_job(client, job.id, DONE, timeout=240)
    assert job.status == "succeeded", job.error
    messages = [event.message for event in client.fine_tuning.jobs.list_events(job.id, limit=100)]
    assert any(message.startswith("Resuming from the checkpoint of step") for message in messages)
