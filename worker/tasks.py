"""Thin Celery tasks: take a job id, call the runner. Also the sweeper and webhook delivery
threads of each worker."""

from __future__ import annotations

import logging
import threading

from celery.signals import worker_ready, worker_shutdown

from app.db import session_factory
from app.observability.logs import job_id_var
from app.queue import RUN_JOB_TASK, VALIDATE_JOB_TASK, send_job
from app.settings import get_settings
from app.webhooks.delivery import deliver_forever
from worker import light, runner
from worker.celery_app import app
from worker.metrics import serve_metrics
from worker.sweeper import sweep_forever

logger = logging.getLogger("openrft.worker")
_stop_sweeping = threading.Event()


def _send(job_id: str) -> None:
    send_job(app, get_settings(), job_id)


@app.task(name=RUN_JOB_TASK, acks_late=True)
def run_job(job_id: str) -> None:
    token = job_id_var.set(job_id)
    try:
        runner.run_job(job_id, get_settings(), _send)
    finally:
        job_id_var.reset(token)


@app.task(name=VALIDATE_JOB_TASK, acks_late=True)
def validate_job(job_id: str) -> None:
    token = job_id_var.set(job_id)
    try:
        light.validate_job(job_id, get_settings(), _send)
    finally:
        job_id_var.reset(token)


@worker_ready.connect
def _start_sweeper(**_: object) -> None:
    settings = get_settings()
    serve_metrics(settings, session_factory(settings), app)
    logger.info("worker ready on queue %s", settings.queue_name)
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
