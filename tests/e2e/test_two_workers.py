"""Workers on separate hosts: no shared disk, one PostgreSQL, one Redis, one S3 store.

Real processes: `openrft api`, `openrft inference` and two `openrft worker`s, each with its own
data directory, all sharing only the database, the broker and a (moto) S3 bucket. Four jobs from
two projects run; one worker is SIGKILLed once it has published a checkpoint of its running job,
and that job resumes on the other worker from the checkpoint in storage.
"""

from __future__ import annotations

import io
import os
import secrets
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import openai
import pytest

from app.jobs.states import REQUEUED_MESSAGE, STARTED_MESSAGE
from tests.api.jobfiles import BASE_MODEL, rft_rows, upload_rows
from tests.conftest import make_client, wait_for_job
from tests.e2e.test_end_to_end import HYPERPARAMETERS, MULTI_GRADER
from tests.s3 import S3Server
from tests.services import (
    REPO_ROOT,
    TEST_BROKER_URL,
    TEST_DATABASE_URL,
    LiveService,
    fresh_postgres_database,
    live_service,
    service_env,
    stop_process,
)

FINISHED = {"succeeded", "failed", "cancelled"}


def _process(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "app.cli", *command],
            env=env, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip


@pytest.fixture
def cluster(
    s3: S3Server, tmp_path: Path, tiny_models_root: Path
) -> Iterator[tuple[LiveService, list[subprocess.Popen[bytes]], list[Path]]]:
    """The API with its own data dir, the inference process and two workers with theirs."""
    if not (TEST_DATABASE_URL and TEST_BROKER_URL):
        pytest.skip("OPENRFT_TEST_DATABASE_URL and OPENRFT_TEST_BROKER_URL are not both set")
    with ExitStack() as stack:
        database_url = stack.enter_context(fresh_postgres_database())
        # no process has the model on its disk: it is pushed to the bucket once, and every
        # host fetches it from there
        shared = service_env(
            tmp_path / "api", "postgres", database_url,
            OPENRFT_STORAGE_URL=f"s3://{s3.new_bucket()}/cluster-{secrets.token_hex(3)}",
            OPENRFT_JOB_LEASE_SECONDS="3",
            **s3.env,
        )  # fmt: skip
        subprocess.run([sys.executable, "-m", "app.cli", "migrate"], env=shared, cwd=REPO_ROOT,
                       check=True, capture_output=True)  # fmt: skip
        subprocess.run(
            [sys.executable, "-m", "app.cli", "models", "push", BASE_MODEL,
             str(tiny_models_root / BASE_MODEL)],
            env=shared, cwd=REPO_ROOT, check=True, capture_output=True,
        )  # fmt: skip
        host_dirs = [tmp_path / name for name in ("inference", "worker-a", "worker-b")]
        processes = [
            _process(
                ["inference", "--port", shared["OPENRFT_INFERENCE_PORT"]],
                {**shared, "OPENRFT_DATA_DIR": str(host_dirs[0])},
                tmp_path / "inference.log",
            )
        ]
        for data_dir in host_dirs[1:]:
            env = {**shared, "OPENRFT_DATA_DIR": str(data_dir)}
            processes.append(_process(["worker"], env, tmp_path / f"{data_dir.name}.log"))
        for process in processes:
            stack.callback(stop_process, process)
        api = stack.enter_context(live_service(shared, tmp_path / "api", command="api"))
        yield api, processes[1:], host_dirs[1:]


def _create_job(client: openai.OpenAI, tmp_path: Path, n_epochs: int) -> str:
    training = upload_rows(client, tmp_path, "train.jsonl", rft_rows(12))
    validation = upload_rows(client, tmp_path, "valid.jsonl", rft_rows(4))
    hyperparameters = {**HYPERPARAMETERS, "n_epochs": n_epochs}
    method = {"type": "reinforcement",
              "reinforcement": {"grader": MULTI_GRADER, "hyperparameters": hyperparameters}}  # fmt: skip
    return client.fine_tuning.jobs.create(
        model=BASE_MODEL, training_file=training, validation_file=validation, method=method
    ).id


def _worker_with_a_checkpoint(
    client_of: dict[str, openai.OpenAI], data_dirs: list[Path], timeout: float = 180
) -> tuple[int, str]:
    """The first worker found holding a published checkpoint of a job that is still running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for index, data_dir in enumerate(data_dirs):
            for job_id, client in client_of.items():
                local = data_dir / "checkpoints" / job_id / "checkpoints"
                if not any(local.glob("step-*")):
                    continue
                published = client.fine_tuning.jobs.checkpoints.list(job_id).data
                if published and client.fine_tuning.jobs.retrieve(job_id).status == "running":
                    return index, job_id
        time.sleep(0.2)
    pytest.fail("no worker published a checkpoint of a running job")


@pytest.mark.slow
def test_four_jobs_on_two_workers_one_killed_mid_job(
    cluster: tuple[LiveService, list[subprocess.Popen[bytes]], list[Path]], tmp_path: Path
) -> None:
    api, workers, data_dirs = cluster
    timings: dict[str, float] = {}
    started = time.monotonic()
    clients = [make_client(api), make_client(api, api.key_for("second-project"))]
    client_of = {}
    for number in range(4):
        client = clients[number % 2]
        client_of[_create_job(client, tmp_path, n_epochs=2)] = client
    timings["jobs created"] = time.monotonic() - started

    victim, killed_job = _worker_with_a_checkpoint(client_of, data_dirs)
    os.kill(workers[victim].pid, signal.SIGKILL)
    workers[victim].wait()
    timings["worker killed"] = time.monotonic() - started

    for job_id, client in client_of.items():
        done = wait_for_job(client, job_id, FINISHED, timeout=240)
        survivor_log = (tmp_path / f"{data_dirs[1 - victim].name}.log").read_text()[-3000:]
        assert done.status == "succeeded", (job_id, done.error, survivor_log)
    timings["all succeeded"] = time.monotonic() - started

    # the killed worker's job went back to the queue and resumed after its last checkpoint,
    # on the surviving worker, whose data dir never held that checkpoint
    client = client_of[killed_job]
    events = list(client.fine_tuning.jobs.list_events(killed_job, limit=1000))[::-1]
    messages = [event.message for event in events]
    assert messages.count(STARTED_MESSAGE) == 2 and REQUEUED_MESSAGE in messages
    lost = messages.index(REQUEUED_MESSAGE)
    steps_before = [e.data["step"] for e in events[:lost] if e.type == "metrics"]
    steps_after = [e.data["step"] for e in events[lost:] if e.type == "metrics"]
    assert steps_after[0] > 1 and steps_after[0] == steps_before[-1] + 1, (
        steps_before,
        steps_after,
    )
    assert steps_after[-1] == 6
    assert any((data_dirs[victim] / "checkpoints" / killed_job).rglob("step-*"))
    assert not (data_dirs[1 - victim] / "checkpoints" / killed_job).exists()

    # checkpoints download through the API, from storage
    checkpoint = client.fine_tuning.jobs.checkpoints.list(killed_job).data[0]
    url = f"{api.base_url}/fine_tuning/jobs/{killed_job}/checkpoints/{checkpoint.id}/content"
    headers = {"Authorization": f"Bearer {client.api_key}"}
    reply = httpx.get(url, headers=headers, timeout=60)
    assert reply.status_code == 200, reply.text
    with tarfile.open(fileobj=io.BytesIO(reply.content), mode="r:gz") as tar:
        names = {Path(name).name for name in tar.getnames()}
    assert {"adapter_model.safetensors", "adapter_config.json", "README.md"} <= names
    assert "optimizer.pt" not in names
    # the merge is built by the inference process and published to storage, then streamed
    reply = httpx.get(url, params={"format": "merged"}, headers=headers, timeout=120)
    assert reply.status_code == 200, reply.text
    with tarfile.open(fileobj=io.BytesIO(reply.content), mode="r:gz") as tar:
        assert any(name.endswith("config.json") for name in tar.getnames())
    timings["downloads"] = time.monotonic() - started

    # chat on each project's result: the inference process fetches the adapter from storage
    for job_id in list(client_of)[:2]:
        client = client_of[job_id]
        model = client.fine_tuning.jobs.retrieve(job_id).fine_tuned_model
        assert model is not None
        completion = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "What is 2 + 1?"}], max_tokens=5
        )
        assert completion.choices[0].message.content is not None
    timings["chat"] = time.monotonic() - started
    print("two-worker timings (s since start): "
          + ", ".join(f"{name} {seconds:.1f}" for name, seconds in timings.items()))  # fmt: skip
