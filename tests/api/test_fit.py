"""Fit before run, through the SDK: a job no registered worker can hold is refused with its
estimate; one that fits goes to a queue a fitting worker takes from; models in the Hugging Face
cache are offered by their hub id. The API runs alone (`openrft api`), so the workers here are
the rows a worker's heartbeat would write."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import openai
import pytest
from sqlalchemy import delete, select

from app.db import session_factory
from app.model_shape import read_shape
from app.settings import Settings
from app.tables import Job, Worker
from app.workers.memory import GIB, estimate_memory
from app.workers.placement import job_size
from app.workers.queues import job_tier
from app.workers.registry import DeviceReport, report_worker
from tests.api.jobfiles import BASE_MODEL, rft_method, rft_rows, upload_rows
from tests.app.test_catalogue import fake_hub_repo
from tests.services import (
    LiveService,
    backends,
    fresh_postgres_database,
    live_service,
    service_env,
    skip_unless_configured,
)

HUB_ID = "tiny-org/tiny-hub-chat"


@pytest.fixture(scope="module", params=backends())
def api_alone(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tiny_models_root: Path
) -> Iterator[LiveService]:
    backend: str = request.param
    skip_unless_configured(backend)
    root = tmp_path_factory.mktemp(f"fit-{backend}")
    cache = root / "hf-cache"
    fake_hub_repo(cache, HUB_ID, tiny_models_root / "tiny-chat")
    with ExitStack() as stack:
        database_url = (
            stack.enter_context(fresh_postgres_database()) if backend == "postgres" else None
        )
        env = service_env(
            root / "data",
            backend,
            database_url,
            OPENRFT_MODEL_DIRS=str(tiny_models_root),
            HF_HUB_CACHE=str(cache),
        )
        yield stack.enter_context(live_service(env, root / "data", command="api"))


@pytest.fixture
def sdk(api_alone: LiveService) -> openai.OpenAI:
    return openai.OpenAI(base_url=api_alone.base_url, api_key=api_alone.api_key, max_retries=0)


@pytest.fixture
def workers(api_alone: LiveService) -> Iterator[Settings]:
    """The service's database settings, with no worker registered before or after."""
    settings = Settings(
        database_url=api_alone.env.get("OPENRFT_DATABASE_URL"), data_dir=api_alone.data_dir
    )
    sessions = session_factory(settings)
    with sessions() as session:
        session.execute(delete(Worker))
        session.commit()
    yield settings
    with sessions() as session:
        session.execute(delete(Worker))
        session.commit()


def register(settings: Settings, name: str, kind: str, memory_bytes: int) -> None:
    with session_factory(settings)() as session:
        report_worker(session, name, DeviceReport(kind, f"{kind} device", memory_bytes, False))


def placed(settings: Settings, job_id: str) -> Job:
    with session_factory(settings)() as session:
        job = session.scalar(select(Job).where(Job.id == job_id))
        assert job is not None
        return job


def create(sdk: openai.OpenAI, tmp_path: Path, model: str = BASE_MODEL, **hyperparameters: object):  # type: ignore[no-untyped-def]
    training = upload_rows(sdk, tmp_path, "train.jsonl", rft_rows(8))
    validation = upload_rows(sdk, tmp_path, "valid.jsonl", rft_rows(4))
    return sdk.fine_tuning.jobs.create(
        model=model,
        training_file=training,
        validation_file=validation,
        method=rft_method(**hyperparameters),  # type: ignore[arg-type]
    )


def test_a_job_too_large_for_the_only_worker_is_refused_with_its_estimate(
    sdk: openai.OpenAI, workers: Settings, tmp_path: Path
) -> None:
    register(workers, "small@host", "cpu", 768 * 1024**2)
    before = [job.id for job in sdk.fine_tuning.jobs.list(limit=100)]
    with pytest.raises(openai.BadRequestError) as refused:
        create(sdk, tmp_path)
    body = refused.value.body
    assert isinstance(body, dict) and body["code"] == "insufficient_worker_memory"
    message = body["message"]
    assert message.startswith("This job needs about ")
    for part in ("weights", "LoRA and optimizer state", "training activations", "KV cache"):
        assert part in message
    assert "small@host (cpu, cpu device, 768 MiB)" in message
    assert [job.id for job in sdk.fine_tuning.jobs.list(limit=100)] == before


def test_a_fitting_job_goes_to_a_queue_its_worker_takes_from(
    sdk: openai.OpenAI, workers: Settings, tmp_path: Path
) -> None:
    register(workers, "small@host", "cpu", 768 * 1024**2)
    register(workers, "big@host", "cpu", 8 * GIB)
    job = create(sdk, tmp_path)
    assert job.status == "validating_files"
    row = placed(workers, job.id)
    assert row.queue is not None and row.queue.endswith(".cpu.1g")
    assert not row.gradient_checkpointing
    messages = [event.message for event in sdk.fine_tuning.jobs.list_events(job.id, limit=20)]
    estimate = next(message for message in messages if message.startswith("Estimated memory"))
    assert "big@host" in estimate


def test_gradient_checkpointing_turns_on_when_only_then_the_job_fits(
    sdk: openai.OpenAI, workers: Settings, tiny_models_root: Path, tmp_path: Path
) -> None:
    long = {"group_size": 32, "max_completion_tokens": 2048, "batch_size": 4}
    shape = read_shape(tiny_models_root / BASE_MODEL / "config.json")
    size = job_size("reinforcement", long)
    without = estimate_memory(shape, size, bf16=False)
    checkpointed = estimate_memory(shape, size, bf16=False, gradient_checkpointing=True)
    tier = job_tier(checkpointed.total)
    assert tier is not None and job_tier(without.total) != tier
    register(workers, "gpu@host", "cuda", int(tier * GIB))
    job = create(sdk, tmp_path, **long)
    row = placed(workers, job.id)
    assert row.gradient_checkpointing and row.queue is not None
    assert row.queue.endswith(f".cuda.{tier:g}g")
    events = [event.message for event in sdk.fine_tuning.jobs.list_events(job.id, limit=20)]
    assert any("Gradient checkpointing is on so that it fits" in event for event in events)


def test_with_no_worker_registered_the_job_is_accepted_with_a_note(
    sdk: openai.OpenAI, workers: Settings, tmp_path: Path
) -> None:
    job = create(sdk, tmp_path)
    assert placed(workers, job.id).queue is None
    events = [event.message for event in sdk.fine_tuning.jobs.list_events(job.id, limit=20)]
    assert any("No worker has registered yet, so the fit was not checked" in e for e in events)


def test_an_unknown_model_is_a_400_naming_where_models_are_looked_for(
    sdk: openai.OpenAI, api_alone: LiveService, tmp_path: Path
) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        create(sdk, tmp_path, model="nobody/no-such-model")
    body = refused.value.body
    assert isinstance(body, dict) and body["param"] == "model"
    message = body["message"]
    assert message.startswith("Model 'nobody/no-such-model' does not exist")
    assert api_alone.env["OPENRFT_MODEL_DIRS"] in message
    assert api_alone.env["HF_HUB_CACHE"] in message
    assert "openrft models pull" in message


def test_a_model_in_the_hub_cache_is_offered_by_its_hub_id(
    sdk: openai.OpenAI, workers: Settings, tmp_path: Path
) -> None:
    assert HUB_ID in [model.id for model in sdk.models.list()]
    assert sdk.models.retrieve(HUB_ID).owned_by == "openrft"
    register(workers, "big@host", "cpu", 8 * GIB)
    job = create(sdk, tmp_path, model=HUB_ID)
    assert job.model == HUB_ID
    assert placed(workers, job.id).queue is not None  # its config.json gave the estimate
