"""Thin Celery tasks: take a job id, call the runner."""

from __future__ import annotations

from app.settings import get_settings
from worker import runner
from worker.celery_app import RUN_JOB_TASK, app


@app.task(name=RUN_JOB_TASK, acks_late=True)
def run_job(job_id: str) -> None:
    runner.run_job(job_id, get_settings())
