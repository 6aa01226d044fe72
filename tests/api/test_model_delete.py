"""Deleting fine-tuned models and checkpoints through the SDK: gone everywhere, weights too."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest

from tests.api.jobfiles import BASE_MODEL, train_tiny_job
from tests.services import LiveService

HELLO = [{"role": "user", "content": "Say hello."}]


def _chat(client: openai.OpenAI, model: str) -> str:
    reply = client.chat.completions.create(model=model, messages=HELLO, max_tokens=2)
    return reply.choices[0].message.content or ""


def _download(service: LiveService, model: str, **params: str) -> httpx.Response:
    return httpx.get(
        f"{service.base_url}/models/{model}/content",
        params=params,
        headers={"Authorization": f"Bearer {service.api_key}"},
        timeout=300,
    )


def test_a_deleted_model_is_gone_with_its_weights_and_its_checkpoints_stay(
    client: openai.OpenAI,
    other_client: openai.OpenAI,
    service: LiveService,
    tmp_path: Path,
) -> None:
    job_id = train_tiny_job(client, tmp_path, "doomed")
    job = client.fine_tuning.jobs.retrieve(job_id)
    model = job.fine_tuned_model
    assert model is not None
    [checkpoint, *_] = client.fine_tuning.jobs.checkpoints.list(job_id).data
    final_dir = service.data_dir / "checkpoints" / job_id / "checkpoints" / "final"
    assert (final_dir / "adapter_config.json").is_file()
    _chat(client, model)
    assert _download(service, model, format="merged").status_code == 200
    merged_root = service.data_dir / "models" / "merged"
    merged_before = {path.name for path in merged_root.iterdir() if path.is_dir()}
    assert merged_before

    # not the caller's model: it does not exist for them
    with pytest.raises(openai.NotFoundError):
        other_client.models.delete(model)
    # a base model cannot be deleted
    with pytest.raises(openai.PermissionDeniedError) as refused:
        client.models.delete(BASE_MODEL)
    assert (refused.value.param, refused.value.code) == ("model", "model_not_deletable")

    deleted = client.models.delete(model)
    assert (deleted.id, deleted.object, deleted.deleted) == (model, "model", True)

    with pytest.raises(openai.NotFoundError) as missing:
        client.models.retrieve(model)
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        _chat(client, model)
    answer = _download(service, model)
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "model_not_found"
    assert model not in [listed.id for listed in client.models.list()]
    with pytest.raises(openai.NotFoundError):
        client.models.delete(model)
    assert not final_dir.exists()
    merged_after = {path.name for path in merged_root.iterdir() if path.is_dir()}
    assert merged_before - merged_after  # the merged copy went with the adapter

    # the job keeps its record and says what happened
    job = client.fine_tuning.jobs.retrieve(job_id)
    assert job.status == "succeeded" and job.fine_tuned_model == model
    messages = [event.message for event in client.fine_tuning.jobs.list_events(job_id)]
    assert f"Fine-tuned model deleted: {model}" in messages

    # its checkpoints stay until they are deleted too
    checkpoint_model = checkpoint.fine_tuned_model_checkpoint
    _chat(client, checkpoint_model)
    assert client.models.retrieve(checkpoint_model).id == checkpoint_model
    checkpoint_dir = service.data_dir / "checkpoints" / job_id / "checkpoints"
    steps_before = sorted(path.name for path in checkpoint_dir.glob("step-*"))
    assert client.models.delete(checkpoint_model).deleted is True
    with pytest.raises(openai.NotFoundError):
        _chat(client, checkpoint_model)
    remaining = client.fine_tuning.jobs.checkpoints.list(job_id).data
    assert checkpoint.id not in [kept.id for kept in remaining]
    assert len(sorted(checkpoint_dir.glob("step-*"))) == len(steps_before) - 1


def test_deleting_an_unknown_model_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        client.models.delete("ft:tiny-chat:default::ftjob-nope")
    assert (missing.value.param, missing.value.code) == ("model", "model_not_found")
