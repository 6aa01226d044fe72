"""Thin Celery tasks: take a job id, call the runner. Also the sweeper and webhook delivery
threads of each worker."""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery.signals import celeryd_after_setup, worker_ready, worker_shutdown

from app.db import session_factory
from app.observability.logs import job_id_var
from app.queue import RUN_JOB_TASK, VALIDATE_JOB_TASK
from app.settings import get_settings
from app.webhooks.delivery import deliver_forever
from app.workers.queues import worker_queues
from app.workers.routing import send_placed
from worker import light, runner
from worker.celery_app import app
from worker.metrics import serve_metrics
from worker.registration import beat_forever, detect_device
from worker.sweeper import sweep_forever

logger = logging.getLogger("openrft.worker")
_stop_sweeping = threading.Event()
_registration: list[threading.Thread] = []


def _send(job_id: str) -> None:
    settings = get_settings()
    send_placed(app, settings, session_factory(settings), job_id)


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


@celeryd_after_setup.connect
def _register_device(sender: str, instance: Any, **_: object) -> None:
    """A training worker reports its device and takes the tier queues its memory covers."""
    settings = get_settings()
    queues = instance.app.amqp.queues
    if settings.queue_name not in queues.consume_from:
        return  # a light worker trains nothing
    device = detect_device(settings)
    tiers = worker_queues(settings.queue_name, device.kind, device.memory_bytes)
    for queue in tiers:
        queues.select_add(queue)
    logger.info(
        "worker %s: %s, %s, %.1f GiB; also taking %s",
        sender, device.kind, device.name, device.memory_bytes / 1024**3, ", ".join(tiers),
    )  # fmt: skip
    thread = threading.Thread(
        target=beat_forever,
        args=(session_factory(settings), settings, sender, device, _stop_sweeping),
        name="registration",
        daemon=True,
    )
    thread.start()
    _registration.append(thread)


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
    for thread in _registration:
        thread.join(timeout=5)  # it removes the worker's registration
