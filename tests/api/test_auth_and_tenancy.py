"""Keys, tenancy and the error envelope on every kind of failure."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest

from app.base_models import packaged_models
from tests.api.jobfiles import BASE_MODEL, sft_rows, upload_rows
from tests.conftest import make_client
from tests.services import LiveService


def test_missing_key_is_401_in_the_envelope(service: LiveService) -> None:
    response = httpx.get(f"{service.base_url}/files")
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == "invalid_api_key" and error["type"] == "invalid_request_error"
    assert response.headers["x-request-id"]


def test_wrong_key_is_401_through_the_sdk(service: LiveService) -> None:
    with pytest.raises(openai.AuthenticationError) as raised:
        make_client(service, "sk-wrong").files.list()
    assert raised.value.code == "invalid_api_key"
    assert raised.value.request_id


def test_other_project_sees_none_of_our_objects(
    client: openai.OpenAI, other_client: openai.OpenAI, tmp_path: Path
) -> None:
    training = upload_rows(client, tmp_path, "sft.jsonl", sft_rows(10))
    job = client.fine_tuning.jobs.create(model=BASE_MODEL, training_file=training)

    for call in (
        lambda: other_client.files.retrieve(training),
        lambda: other_client.files.content(training),
        lambda: other_client.files.delete(training),
        lambda: other_client.fine_tuning.jobs.retrieve(job.id),
        lambda: other_client.fine_tuning.jobs.cancel(job.id),
        lambda: other_client.fine_tuning.jobs.list_events(job.id),
        lambda: other_client.fine_tuning.jobs.checkpoints.list(job.id),
    ):
        with pytest.raises(openai.NotFoundError):
            call()
    assert training not in [row.id for row in other_client.files.list()]
    assert job.id not in [row.id for row in other_client.fine_tuning.jobs.list()]
    with pytest.raises(openai.BadRequestError) as raised:
        other_client.fine_tuning.jobs.create(model=BASE_MODEL, training_file=training)
    assert raised.value.param == "training_file"
    # and our own view is untouched
    assert client.files.retrieve(training).id == training


def test_unknown_route_and_bad_query_use_the_envelope(service: LiveService) -> None:
    headers = {"authorization": f"Bearer {service.api_key}"}
    missing = httpx.get(f"{service.base_url}/nothing/here", headers=headers)
    assert missing.status_code == 404 and "error" in missing.json()
    assert missing.headers["x-request-id"]
    bad_limit = httpx.get(f"{service.base_url}/fine_tuning/jobs?limit=0", headers=headers)
    assert bad_limit.status_code == 400
    assert bad_limit.json()["error"]["param"] == "limit"
    not_json = httpx.post(
        f"{service.base_url}/fine_tuning/jobs",
        headers={**headers, "content-type": "application/json"},
        content=b"{oops",
    )
    assert not_json.status_code == 400 and not_json.json()["error"]["message"]


def test_models_list_and_retrieve(client: openai.OpenAI) -> None:
    ids = [model.id for model in client.models.list()]
    # the packaged base models come first, then the model dirs'; fine-tuned models of jobs
    # other tests ran may follow
    packaged = [model.name for model in packaged_models()]
    assert packaged[0] == "SmolLM2-135M-Instruct"
    assert ids[: len(packaged) + 1] == [*packaged, BASE_MODEL]
    model = client.models.retrieve(BASE_MODEL)
    assert (model.id, model.object) == (BASE_MODEL, "model")
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")
