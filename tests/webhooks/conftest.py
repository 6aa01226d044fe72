"""A live server that may send webhooks to localhost, with quick retries, and a receiver."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.services import (
    LiveService,
    backends,
    fresh_postgres_database,
    live_service,
    service_env,
    skip_unless_configured,
)
from tests.webhooks.receiver import Receiver, running_receiver


@pytest.fixture(scope="session", params=backends())
def webhook_service(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tiny_models_root: Path
) -> Iterator[LiveService]:
    """`openrft serve` with OPENRFT_WEBHOOK_ALLOW_PRIVATE (the receiver is on localhost) and a
    first retry after 0.1-0.2 s, on each backend."""
    backend: str = request.param
    skip_unless_configured(backend)
    data_dir = tmp_path_factory.mktemp(f"webhooks-{backend}") / "data"
    with ExitStack() as stack:
        database_url = (
            stack.enter_context(fresh_postgres_database()) if backend == "postgres" else None
        )
        env = service_env(
            data_dir, backend, database_url,
            OPENRFT_MODEL_DIRS=str(tiny_models_root),
            OPENRFT_WEBHOOK_ALLOW_PRIVATE="true",
            OPENRFT_WEBHOOK_RETRY_BASE_SECONDS="0.2",
            OPENRFT_WEBHOOK_POLL_SECONDS="0.1",
        )  # fmt: skip
        yield stack.enter_context(live_service(env, data_dir))


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as running:
        yield running
