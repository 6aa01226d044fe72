"""A worker killed mid-job: another worker takes the job over from its latest checkpoint."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import openai
import pytest

from tests.api.jobfiles import BASE_MODEL, rft_rows, upload_rows
from tests.conftest import make_client, wait_for_job
from tests.e2e.test_end_to_end import HYPERPARAMETERS, MULTI_GRADER
from tests.services import (
    REPO_ROOT,
    LiveService,
    backends,
    fresh_postgres_database,
    live_service,
    service_env,
)

LEASE_SECONDS = "2"


@pytest.fixture(params=backends())
def api_without_worker(
    request: pytest.FixtureRequest, tmp_path: Path, tiny_models_root: Path
) -> Iterator[LiveService]:
    data_dir = tmp_path / "data"
    with ExitStack() as stack:
        database_url = (
            stack.enter_context(fresh_postgres_database()) if request.param == "postgres" else None
        )
        env = service_env(data_dir, request.param, database_url, OPENRFT_MODEL_DIRS=str(tiny_models_root),
                          OPENRFT_JOB_LEASE_SECONDS=LEASE_SECONDS)  # fmt: skip
        yield stack.enter_context(live_service(env, data_dir, command="api"))


def _start_worker(service: LiveService, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "app.cli", "worker"],
            env=service.env, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip


def _wait_for_checkpoint(client: openai.OpenAI, job_id: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not client.fine_tuning.jobs.checkpoints.list(job_id).data:
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.2)


def test_killed_worker_job_continues_on_another(
    api_without_worker: LiveService, tmp_path: Path
) -> None:
    client = make_client(api_without_worker)
    training = upload_rows(client, tmp_path, "train.jsonl", rft_rows(12))
    validation = upload_rows(client, tmp_path, "valid.jsonl", rft_rows(4))
    method = {"type": "reinforcement", "reinforcement": {
        "grader": MULTI_GRADER, "hyperparameters": {**HYPERPARAMETERS, "n_epochs": 2}}}  # fmt: skip
    log = tmp_path / "workers.log"
    first = _start_worker(api_without_worker, log)
    second = None
    try:
        job = client.fine_tuning.jobs.create(
            model=BASE_MODEL, training_file=training, validation_file=validation, method=method
        )
        wait_for_job(client, job.id, {"running"}, timeout=120)
        _wait_for_checkpoint(client, job.id)
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        assert client.fine_tuning.jobs.retrieve(job.id).status == "running"

        second = _start_worker(api_without_worker, log)
        finished = wait_for_job(client, job.id, {"succeeded", "failed", "cancelled"}, timeout=240)
        assert finished.status == "succeeded", (finished.error, log.read_text()[-3000:])
    finally:
        for worker in (first, second):
            if worker is not None and worker.poll() is None:
                worker.terminate()
                worker.wait(timeout=30)

    events = list(client.fine_tuning.jobs.list_events(job.id, limit=500))[::-1]
    messages = [event.message for event in events]
    lost = messages.index("The worker running the job was lost, moving job back to queued state")
    steps_after = [e.data["step"] for e in events[lost:] if e.type == "metrics"]
    steps_before = [e.data["step"] for e in events[:lost] if e.type == "metrics"]
    assert steps_before and steps_after
    # the second worker resumed from a checkpoint instead of starting over
    assert steps_after[0] > 1 and steps_after[0] <= steps_before[-1] + 1
    assert steps_after[-1] == 6
