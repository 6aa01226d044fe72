"""Shared fixtures: a live server with a real worker on each backend, and SDK clients."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import openai
import pytest

from tests.jobs.database import JobDatabase
from tests.s3 import S3Server, s3_server
from tests.services import (
    TEST_DATABASE_URL,
    LiveService,
    backends,
    fresh_postgres_database,
    live_service,
    service_env,
    skip_unless_configured,
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `cuda` are skipped without a CUDA GPU (torch is imported only if any are
    collected: the API tests run without it)."""
    cuda_items = [item for item in items if item.get_closest_marker("cuda")]
    if not cuda_items:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in cuda_items:
        item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_models_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder for OPENRFT_MODEL_DIRS holding the tiny random chat model `tiny-chat`."""
    from tests.inference.models import build_tiny_base

    root = tmp_path_factory.mktemp("models")
    build_tiny_base(root)
    return root


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    """A real S3-compatible server (moto in server mode, or the one CI started)."""
    with s3_server() as server:
        yield server


@pytest.fixture(scope="session", params=backends())
def service(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tiny_models_root: Path
) -> Iterator[LiveService]:
    """`openrft serve` with its embedded worker, on SQLite + local transport or PostgreSQL + Redis."""
    backend: str = request.param
    skip_unless_configured(backend)
    data_dir = tmp_path_factory.mktemp(f"service-{backend}") / "data"
    with ExitStack() as stack:
        database_url = (
            stack.enter_context(fresh_postgres_database()) if backend == "postgres" else None
        )
        env = service_env(data_dir, backend, database_url, OPENRFT_MODEL_DIRS=str(tiny_models_root))
        yield stack.enter_context(live_service(env, data_dir))


def make_client(service: LiveService, api_key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=service.base_url, api_key=api_key or service.api_key, max_retries=0, timeout=60
    )


@pytest.fixture
def client(service: LiveService) -> openai.OpenAI:
    """The official SDK, pointed at the live server, with the default project's key."""
    return make_client(service)


@pytest.fixture
def other_client(service: LiveService) -> openai.OpenAI:
    """The SDK with a key of a second project, for tenancy checks."""
    return make_client(service, service.key_for("other-project"))


@pytest.fixture
def write_jsonl(tmp_path: Path) -> Callable[[str, list[object]], Path]:
    import json

    def write(name: str, rows: list[object]) -> Path:
        path = tmp_path / name
        path.write_text(
            "".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows)
        )
        return path

    return write


def wait_for_job(client: openai.OpenAI, job_id: str, statuses: set[str], timeout: float = 60.0):  # type: ignore[no-untyped-def]
    """Poll until the job reaches one of `statuses`; fail with its events if it does not."""
    deadline = time.monotonic() + timeout
    job = client.fine_tuning.jobs.retrieve(job_id)
    while job.status not in statuses and time.monotonic() < deadline:
        time.sleep(0.25)
        job = client.fine_tuning.jobs.retrieve(job_id)
    if job.status not in statuses:
        events = [event.message for event in client.fine_tuning.jobs.list_events(job_id, limit=50)]
        pytest.fail(f"job {job_id} is {job.status}, expected {statuses}; events: {events}")
    return job


@pytest.fixture(params=["sqlite", "postgres"])
def job_database(
    request: pytest.FixtureRequest, tmp_path: Path, tiny_models_root: Path
) -> Iterator[JobDatabase]:
    """A migrated database (SQLite, or PostgreSQL when its test URL is set) with one project and
    its uploaded training and validation files, for the domain code that writes jobs."""
    from tests.jobs.database import job_database_on

    if request.param == "postgres" and not TEST_DATABASE_URL:
        pytest.skip("OPENRFT_TEST_DATABASE_URL is not set")
    with ExitStack() as stack:
        database_url = (
            stack.enter_context(fresh_postgres_database())
            if request.param == "postgres"
            else f"sqlite:///{tmp_path / 'jobs.db'}"
        )
        yield job_database_on(database_url, tmp_path / "data", tiny_models_root)
