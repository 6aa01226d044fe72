"""Real services for tests: a fresh PostgreSQL database, a live server with its worker."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy.engine import make_url

TEST_DATABASE_URL = os.environ.get("OPENRFT_TEST_DATABASE_URL")
TEST_BROKER_URL = os.environ.get("OPENRFT_TEST_BROKER_URL")
REPO_ROOT = Path(__file__).resolve().parent.parent


def backends() -> list[str]:
    """The embedded default, and PostgreSQL + Redis (skipped with a reason when the test URLs
    are not set, so a green run says what it did not cover)."""
    return ["embedded", "postgres"]


def skip_unless_configured(backend: str) -> None:
    if backend == "postgres" and not (TEST_DATABASE_URL and TEST_BROKER_URL):
        import pytest

        pytest.skip("OPENRFT_TEST_DATABASE_URL and OPENRFT_TEST_BROKER_URL are not both set")


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A new, empty database on the test server, dropped afterwards."""
    import psycopg

    assert TEST_DATABASE_URL, "OPENRFT_TEST_DATABASE_URL is not set"
    base = make_url(TEST_DATABASE_URL)
    name = f"openrft_test_{secrets.token_hex(6)}"
    admin_url = base.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, 30 s to stop, then SIGKILL; nothing if it has ended already."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class LiveService:
    base_url: str
    api_key: str
    env: dict[str, str]
    data_dir: Path
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    extra_keys: dict[str, str] = field(default_factory=dict)

    def cli(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "app.cli", *args],
            env=self.env,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        return result.stdout

    @property
    def root_url(self) -> str:
        """Where the operator routes live (/health, /metrics), outside /v1."""
        return self.base_url.removesuffix("/v1")

    def inference_url(self) -> str:
        """The embedded inference process, once it answers (it starts after the API)."""
        url = f"http://127.0.0.1:{self.env['OPENRFT_INFERENCE_PORT']}"
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    return url
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the inference process did not start:\n{self.log()[-3000:]}")
            time.sleep(0.3)

    def key_for(self, project: str) -> str:
        if project not in self.extra_keys:
            self.extra_keys[project] = self.cli("keys", "create", "--project", project).strip()
        return self.extra_keys[project]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""


def service_env(
    data_dir: Path, backend: str, database_url: str | None, **extra: str
) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("OPENRFT_")}
    env.update(
        OPENRFT_DATA_DIR=str(data_dir),
        OPENRFT_API_KEY=f"sk-test-{secrets.token_hex(8)}",
        OPENRFT_QUEUE_NAME=f"openrft-test-{secrets.token_hex(4)}",
        OPENRFT_INFERENCE_PORT=str(free_port()),
        PYTHONUNBUFFERED="1",
        # an empty Hugging Face cache of its own: the models a developer has cached are not
        # offered by the service under test
        HF_HUB_CACHE=str(data_dir.parent / f"{data_dir.name}-hf-cache"),
    )
    if backend == "postgres":
        assert database_url and TEST_BROKER_URL
        env.update(OPENRFT_DATABASE_URL=database_url, OPENRFT_BROKER_URL=TEST_BROKER_URL)
    env.update(extra)
    return env


def _wait_until_healthy(base_url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{log_path.read_text(errors='replace')}")
        try:
            if httpx.get(f"{base_url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"server did not start:\n{log_path.read_text(errors='replace')}")


@contextmanager
def live_service(
    env: dict[str, str], data_dir: Path, command: str = "serve"
) -> Iterator[LiveService]:
    """`openrft serve` (API + embedded worker), or `openrft api` alone, on a free port."""
    port = free_port()
    log_path = data_dir.parent / f"{data_dir.name}-server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", command, "--host", "127.0.0.1", "--port", str(port)]
            # `openrft api` alone checks the schema rather than upgrading it; one replica may
            + (["--migrate"] if command == "api" else []),
            env=env,
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base_url = f"http://127.0.0.1:{port}"
    service = LiveService(
        f"{base_url}/v1", env["OPENRFT_API_KEY"], env, data_dir, process, log_path
    )
    try:
        _wait_until_healthy(base_url, process, log_path)
        yield service
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()
