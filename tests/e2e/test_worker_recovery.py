"""Workers that die, stall or lose their message: jobs move on, once, and never loop.

Real processes: `openrft api` alone and `openrft worker` processes started, killed, stopped and
continued by the test, on each backend.
"""

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

from app.jobs.states import REQUEUED_MESSAGE, STARTED_MESSAGE, SUCCEEDED_MESSAGE
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
    skip_unless_configured,
    stop_process,
)

# long enough that a busy CI machine does not starve a live heartbeat (renewed every third)
LEASE_SECONDS = "3"


@pytest.fixture(params=backends())
def api_without_worker(
    request: pytest.FixtureRequest, tmp_path: Path, tiny_models_root: Path
) -> Iterator[LiveService]:
    skip_unless_configured(request.param)
    data_dir = tmp_path / "data"
    with ExitStack() as stack:
        database_url = (
            stack.enter_context(fresh_postgres_database()) if request.param == "postgres" else None
        )
        env = service_env(data_dir, request.param, database_url, OPENRFT_MODEL_DIRS=str(tiny_models_root),
                          OPENRFT_JOB_LEASE_SECONDS=LEASE_SECONDS)  # fmt: skip
        yield stack.enter_context(live_service(env, data_dir, command="api"))


def _start_worker(service: LiveService, log: Path, **env: str) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "app.cli", "worker"],
            env={**service.env, **env}, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip


def _stop_all(*workers: subprocess.Popen[bytes] | None) -> None:
    for worker in workers:
        if worker is not None and worker.poll() is None:
            os.kill(worker.pid, signal.SIGCONT)
            stop_process(worker)


def _create_job(client: openai.OpenAI, tmp_path: Path, n_epochs: int = 2) -> str:
    training = upload_rows(client, tmp_path, "train.jsonl", rft_rows(12))
    validation = upload_rows(client, tmp_path, "valid.jsonl", rft_rows(4))
    method = {"type": "reinforcement", "reinforcement": {
        "grader": MULTI_GRADER, "hyperparameters": {**HYPERPARAMETERS, "n_epochs": n_epochs}}}  # fmt: skip
    return client.fine_tuning.jobs.create(
        model=BASE_MODEL, training_file=training, validation_file=validation, method=method
    ).id


def _messages(client: openai.OpenAI, job_id: str) -> list[str]:
    return [e.message for e in client.fine_tuning.jobs.list_events(job_id, limit=1000)][::-1]


def _wait_for_message(
    client: openai.OpenAI, job_id: str, message: str, count: int = 1, timeout: float = 120
) -> None:
    deadline = time.monotonic() + timeout
    while _messages(client, job_id).count(message) < count:
        assert time.monotonic() < deadline, (message, _messages(client, job_id))
        time.sleep(0.2)


def _wait_for_checkpoint(client: openai.OpenAI, job_id: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not client.fine_tuning.jobs.checkpoints.list(job_id).data:
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.2)


def test_killed_worker_job_continues_on_another(
    api_without_worker: LiveService, tmp_path: Path
) -> None:
    client = make_client(api_without_worker)
    log = tmp_path / "workers.log"
    first = _start_worker(api_without_worker, log)
    second = None
    try:
        job_id = _create_job(client, tmp_path)
        wait_for_job(client, job_id, {"running"}, timeout=120)
        _wait_for_checkpoint(client, job_id)
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        assert client.fine_tuning.jobs.retrieve(job_id).status == "running"

        second = _start_worker(api_without_worker, log)
        finished = wait_for_job(client, job_id, {"succeeded", "failed", "cancelled"}, timeout=240)
        assert finished.status == "succeeded", (finished.error, log.read_text()[-3000:])
    finally:
        _stop_all(first, second)

    events = list(client.fine_tuning.jobs.list_events(job_id, limit=500))[::-1]
    messages = [event.message for event in events]
    lost = messages.index(REQUEUED_MESSAGE)
    steps_after = [e.data["step"] for e in events[lost:] if e.type == "metrics"]
    steps_before = [e.data["step"] for e in events[:lost] if e.type == "metrics"]
    assert steps_before and steps_after
    # the second worker resumed from a checkpoint instead of starting over, and the steps the
    # first reported past that checkpoint were dropped from the curve
    assert steps_after[0] > 1 and steps_after[0] == steps_before[-1] + 1
    assert steps_after[-1] == 6


def _stall_until_taken_over(
    client: openai.OpenAI, job_id: str, worker: subprocess.Popen[bytes]
) -> None:
    """SIGSTOP the worker (a GC pause, a lost network: it keeps its state) until another worker
    has taken its job back.

    A process stopped inside a write transaction keeps its lock (SQLite's database lock, or
    PostgreSQL's lock on the job row), and nobody can take the job back until it continues;
    the test cannot choose the instant it stops the worker, so when that happens it lets the
    worker finish the transaction and stops it again.
    """
    for _ in range(5):
        os.kill(worker.pid, signal.SIGSTOP)
        deadline = time.monotonic() + 4 * float(LEASE_SECONDS) + 4
        while time.monotonic() < deadline:
            if REQUEUED_MESSAGE in _messages(client, job_id):
                return
            time.sleep(0.2)
        os.kill(worker.pid, signal.SIGCONT)
        time.sleep(0.3)
    pytest.fail("the stalled worker's job was never taken over")


def test_a_stalled_worker_is_fenced_off_when_it_wakes(
    api_without_worker: LiveService, tmp_path: Path
) -> None:
    client = make_client(api_without_worker)
    job_id = _create_job(client, tmp_path)
    first = _start_worker(api_without_worker, tmp_path / "first.log")
    second = None
    try:
        wait_for_job(client, job_id, {"running"}, timeout=120)
        _wait_for_checkpoint(client, job_id)
        second = _start_worker(api_without_worker, tmp_path / "second.log")
        _stall_until_taken_over(client, job_id, first)
        _wait_for_message(client, job_id, STARTED_MESSAGE, count=2)
        os.kill(first.pid, signal.SIGCONT)
        finished = wait_for_job(client, job_id, {"succeeded", "failed", "cancelled"}, timeout=240)
        deadline = time.monotonic() + 60
        while "stopping without further writes" not in (tmp_path / "first.log").read_text():
            assert time.monotonic() < deadline, (tmp_path / "first.log").read_text()[-3000:]
            time.sleep(0.2)
        assert first.poll() is None, "the stale worker stays up for other jobs"
    finally:
        _stop_all(first, second)

    assert finished.status == "succeeded", finished.error
    events = list(client.fine_tuning.jobs.list_events(job_id, limit=1000))[::-1]
    steps = [event.data["step"] for event in events if event.type == "metrics"]
    assert steps == sorted(set(steps)) and steps[-1] == 6, steps
    messages = [event.message for event in events]
    assert messages.count(SUCCEEDED_MESSAGE) == 1
    assert messages[-2:] == [
        SUCCEEDED_MESSAGE,
        f"New fine-tuned model created: {finished.fine_tuned_model}",
    ]
    checkpoint_steps = [c.step_number for c in client.fine_tuning.jobs.checkpoints.list(job_id)]
    assert len(checkpoint_steps) == len(set(checkpoint_steps))


def _drop_queued_messages(service: LiveService) -> int:
    """Lose every message waiting in the job queues, as a crashed broker or worker would."""
    broker_url = service.env.get("OPENRFT_BROKER_URL")
    if broker_url is None:
        queue_dir = service.data_dir / "broker" / "queue"
        dropped = list(queue_dir.iterdir())
        for message in dropped:
            message.unlink()
        return len(dropped)
    import redis

    queue = service.env["OPENRFT_QUEUE_NAME"]
    # a new job waits in the light queue first; a resumed or resent one in the training queue
    return int(redis.Redis.from_url(broker_url).delete(queue, f"{queue}.light"))


def test_a_job_whose_message_was_lost_is_sent_again(
    api_without_worker: LiveService, tmp_path: Path
) -> None:
    client = make_client(api_without_worker)
    job_id = _create_job(client, tmp_path, n_epochs=1)
    assert _drop_queued_messages(api_without_worker) == 1
    worker = _start_worker(
        api_without_worker, tmp_path / "worker.log", OPENRFT_JOB_RESEND_SECONDS="2"
    )
    try:
        finished = wait_for_job(client, job_id, {"succeeded", "failed", "cancelled"}, timeout=180)
    finally:
        _stop_all(worker)
    assert finished.status == "succeeded", finished.error
    assert "waited without a worker; sent again" in (tmp_path / "worker.log").read_text()


def test_a_job_that_keeps_killing_its_worker_fails_after_max_attempts(
    api_without_worker: LiveService, tmp_path: Path
) -> None:
    client = make_client(api_without_worker)
    job_id = _create_job(client, tmp_path)
    limit = {"OPENRFT_MAX_JOB_ATTEMPTS": "2"}
    workers = []
    try:
        for attempt in (1, 2):
            workers.append(_start_worker(api_without_worker, tmp_path / "workers.log", **limit))
            _wait_for_message(client, job_id, STARTED_MESSAGE, count=attempt, timeout=180)
            os.kill(workers[-1].pid, signal.SIGKILL)  # as the kernel's out-of-memory killer does
            workers[-1].wait()
        workers.append(_start_worker(api_without_worker, tmp_path / "workers.log", **limit))
        failed = wait_for_job(client, job_id, {"failed", "succeeded"}, timeout=120)
    finally:
        _stop_all(*workers)
    assert failed.status == "failed"
    assert failed.error.code == "job_attempts_exhausted"
    assert "2 times (attempts 1, 2)" in failed.error.message
    messages = _messages(client, job_id)
    assert messages.count(STARTED_MESSAGE) == 2 and messages.count(REQUEUED_MESSAGE) == 1
