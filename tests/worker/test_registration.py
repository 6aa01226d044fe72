"""A real training worker registers its device and memory, takes from the tier queues that
memory covers, and runs a job placed on one of them."""

from __future__ import annotations

import time
from pathlib import Path

import openai
from sqlalchemy import select

from app.db import session_factory
from app.settings import Settings
from app.tables import Job, Worker
from app.workers.registry import live_workers
from tests.api.jobfiles import cancel_unfinished, train_tiny_job
from tests.services import LiveService


def _settings(service: LiveService) -> Settings:
    return Settings(database_url=service.env.get("OPENRFT_DATABASE_URL"), data_dir=service.data_dir)


def _registered(settings: Settings, timeout: float = 90.0) -> list[Worker]:
    sessions = session_factory(settings)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with sessions() as session:
            workers = live_workers(session, settings.worker_stale_seconds)
        if workers:
            return workers
        time.sleep(0.5)
    raise AssertionError("no worker registered")


def test_the_embedded_worker_registers_and_runs_a_job_from_its_tier_queue(
    client: openai.OpenAI, service: LiveService, tmp_path: Path
) -> None:
    cancel_unfinished(client)
    settings = _settings(service)
    (worker,) = _registered(settings)
    assert worker.name.startswith("openrft-embedded@")  # the light worker trains nothing
    assert worker.device_kind == "cpu" and worker.memory_bytes > 1024**3

    job_id = train_tiny_job(client, tmp_path, "registered")
    with session_factory(settings)() as session:
        job = session.scalar(select(Job).where(Job.id == job_id))
    assert job is not None and job.queue is not None
    # the tiny job needs well under a GiB: the smallest tier, which only a registered
    # worker takes from
    assert job.queue == f"{service.env['OPENRFT_QUEUE_NAME']}.cpu.1g"
