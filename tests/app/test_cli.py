"""The command line: a first `serve` makes and prints a key; `keys create` makes working keys."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai

from tests.services import REPO_ROOT, free_port


def _env(data_dir: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("OPENRFT_")}
    env.update(OPENRFT_DATA_DIR=str(data_dir), OPENRFT_QUEUE_NAME=f"cli-{os.getpid()}")
    return env


def _cli(env: dict[str, str], *args: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env=env, cwd=REPO_ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip


def test_first_serve_prints_a_key_that_works(tmp_path: Path) -> None:
    env = _env(tmp_path / "data")
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
            env={**env, "PYTHONUNBUFFERED": "1"}, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        key = None
        deadline = time.monotonic() + 60
        while key is None and time.monotonic() < deadline and server.poll() is None:
            match = re.search(r"API key \(shown once; keep it\): (\S+)", log.read_text())
            key = match.group(1) if match else None
            time.sleep(0.2)
        assert key is not None and re.fullmatch(r"sk-openrft-[A-Za-z0-9]{40}", key), log.read_text()
        assert f"OpenRFT API on http://127.0.0.1:{port}/v1" in log.read_text().splitlines()
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=5)
        assert client.files.list().data == []
    finally:
        server.terminate()
        server.wait(timeout=30)
    # the key is stored only as a hash
    database_files = list((tmp_path / "data").glob("openrft.db*"))
    assert database_files
    assert all(key.encode() not in path.read_bytes() for path in database_files)


def test_migrate_and_keys_create(tmp_path: Path) -> None:
    env = _env(tmp_path / "data")
    assert "newest schema" in _cli(env, "migrate")
    first = _cli(env, "keys", "create", "--project", "team-a").strip()
    second = _cli(env, "keys", "create", "--project", "team-a").strip()
    assert first.startswith("sk-") and first != second


def test_api_refuses_an_unmigrated_database_and_starts_after_migrate(tmp_path: Path) -> None:
    env = _env(tmp_path / "data")
    port = str(free_port())
    refused = subprocess.run(
        [sys.executable, "-m", "app.cli", "api", "--port", port],
        env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode == 2
    assert "no schema" in refused.stderr and "openrft migrate" in refused.stderr
    _cli(env, "migrate")
    server = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "api", "--port", port],
        env={**env, "OPENRFT_API_KEY": "sk-cli-test"}, cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        client = openai.OpenAI(
            base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-cli-test", max_retries=8
        )
        assert client.files.list().data == []
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_api_workers_serve_together_and_metrics_add_up(tmp_path: Path) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    env = _env(tmp_path / "data")
    port = str(free_port())
    log = tmp_path / "api.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "api", "--migrate", "--port", port],
            env={**env, "OPENRFT_API_KEY": "sk-workers", "OPENRFT_API_WORKERS": "2"},
            cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        client = openai.OpenAI(
            base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-workers", max_retries=8
        )
        for _ in range(12):
            assert client.files.list().data == []
        deadline = time.monotonic() + 30
        while log.read_text().count("Started server process") < 2:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        served = sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "openrft_api_requests_total" and sample.labels["route"] == "/v1/files"
        )
        assert served == 12
    finally:
        server.terminate()
        server.wait(timeout=30)
