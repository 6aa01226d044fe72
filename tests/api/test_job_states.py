"""Cancel, pause and resume on jobs no worker has picked up: `openrft api` with no worker yet,
as in a scaled deployment whose workers are still starting. Running jobs are covered end to end."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from app.model_shape import read_shape
from app.workers.placement import job_size, place_job
from tests.api.jobfiles import BASE_MODEL, FAST_RFT, rft_method, rft_rows, upload_rows
from tests.conftest import make_client
from tests.services import LiveService, live_service, service_env


@pytest.fixture(scope="module")
def api_only(
    tmp_path_factory: pytest.TempPathFactory, tiny_models_root: Path
) -> Iterator[LiveService]:
    data_dir = tmp_path_factory.mktemp("api-only") / "data"
    env = service_env(data_dir, "embedded", None, OPENRFT_MODEL_DIRS=str(tiny_models_root))
    with live_service(env, data_dir, command="api") as service:
        yield service


@pytest.fixture
def new_job(api_only: LiveService, tmp_path: Path):  # type: ignore[no-untyped-def]
    client = make_client(api_only)
    training = upload_rows(client, tmp_path, "train.jsonl", rft_rows(12))
    validation = upload_rows(client, tmp_path, "valid.jsonl", rft_rows(3))

    def create() -> str:
        job = client.fine_tuning.jobs.create(
            model=BASE_MODEL,
            training_file=training,
            validation_file=validation,
            method=rft_method(),
        )
        assert job.status == "validating_files"
        return job.id

    return client, create


def _messages(client: openai.OpenAI, job_id: str) -> list[str]:
    return [event.message for event in client.fine_tuning.jobs.list_events(job_id)]


def _state_error(message: str) -> dict[str, object]:
    """The error body of an action the job's status forbids."""
    return {
        "message": message,
        "type": "invalid_request_error",
        "param": None,
        "code": "invalid_job_state",
    }


@pytest.fixture(scope="module")
def placement_note(tiny_models_root: Path) -> str:
    """What a new job's events say of its memory while no worker has registered."""
    shape = read_shape(tiny_models_root / BASE_MODEL / "config.json")
    note = place_job(shape, job_size("reinforcement", FAST_RFT), [], "openrft").message
    assert "No worker has registered yet, so the fit was not checked" in note
    return note


def _creation_messages(client: openai.OpenAI, job_id: str, placement_note: str) -> list[str]:
    """The events a new job starts with, newest first."""
    job = client.fine_tuning.jobs.retrieve(job_id)
    return [
        placement_note,
        f"Validating validation file: {job.validation_file}",
        f"Validating training file: {job.training_file}",
        "Created fine-tuning job",
    ]


def test_pause_then_resume_requeues(new_job, placement_note: str) -> None:  # type: ignore[no-untyped-def]
    client, create = new_job
    job_id = create()
    assert client.fine_tuning.jobs.pause(job_id).status == "paused"
    with pytest.raises(openai.BadRequestError) as raised:
        client.fine_tuning.jobs.pause(job_id)
    assert raised.value.body == _state_error("Cannot pause a job that is paused.")
    assert client.fine_tuning.jobs.resume(job_id).status == "queued"
    with pytest.raises(openai.BadRequestError) as raised:
        client.fine_tuning.jobs.resume(job_id)
    assert raised.value.body == _state_error("Cannot resume a job that is queued.")
    # no worker runs here: the job's events are exactly these
    assert _messages(client, job_id) == [
        "Job resumed",
        "The job has been paused",
        *_creation_messages(client, job_id, placement_note),
    ]


def test_cancel_is_immediate_and_final(new_job, placement_note: str) -> None:  # type: ignore[no-untyped-def]
    client, create = new_job
    job_id = create()
    job = client.fine_tuning.jobs.cancel(job_id)
    assert job.status == "cancelled"
    assert job.finished_at is not None and job.created_at <= job.finished_at <= time.time()
    for action, name in (
        (client.fine_tuning.jobs.cancel, "cancel"),
        (client.fine_tuning.jobs.pause, "pause"),
        (client.fine_tuning.jobs.resume, "resume"),
    ):
        with pytest.raises(openai.BadRequestError) as raised:
            action(job_id)
        assert raised.value.body == _state_error(f"Cannot {name} a job that is cancelled.")
    assert _messages(client, job_id) == [
        "Fine-tuning job cancelled",
        *_creation_messages(client, job_id, placement_note),
    ]


def test_cancel_a_paused_or_queued_job(new_job) -> None:  # type: ignore[no-untyped-def]
    client, create = new_job
    paused = create()
    client.fine_tuning.jobs.pause(paused)
    assert client.fine_tuning.jobs.cancel(paused).status == "cancelled"
    queued = create()
    client.fine_tuning.jobs.pause(queued)
    client.fine_tuning.jobs.resume(queued)
    assert client.fine_tuning.jobs.cancel(queued).status == "cancelled"


def test_resume_of_a_job_that_is_not_paused_is_400(new_job) -> None:  # type: ignore[no-untyped-def]
    client, create = new_job
    job_id = create()
    with pytest.raises(openai.BadRequestError) as raised:
        client.fine_tuning.jobs.resume(job_id)
    assert raised.value.body == _state_error("Cannot resume a job that is validating_files.")
    assert client.fine_tuning.jobs.retrieve(job_id).status == "validating_files"
