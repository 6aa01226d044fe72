"""Thin Celery tasks: take a job id, call the runner. Also the sweeper and webhook delivery
threads of each worker."""

from __future__ import annotations

import threading

from celery.signals import worker_ready, worker_shutdown

from app.db import session_factory
from app.queue import RUN_JOB_TASK, send_job
from app.settings import get_settings
from app.webhooks.delivery import deliver_forever
from worker import runner
from worker.celery_app import app
from worker.sweeper import sweep_forever

_stop_sweeping = threading.Event()


def _send(job_id: str) -> None:
    send_job(app, get_settings(), job_id)


@app.task(name=RUN_JOB_TASK, acks_late=True)
def run_job(job_id: str) -> None:
    runner.run_job(job_id, get_settings(), _send)


@worker_ready.connect
def _start_sweeper(**_: object) -> None:
    settings = get_settings()
    threading.Thread(
        target=sweep_forever,
        args=(session_factory(settings), settings, _send, _stop_sweeping),
        name="sweeper",
        daemon=True,
    ).start()
    threading.Thread(
        target=deliver_forever,
        args=(session_factory(settings), settings, _stop_sweeping),
        name="webhooks",
        daemon=True,
    ).start()


@worker_shutdown.connect
def _stop_sweeper(**_: object) -> None:
    _stop_sweeping.set()
