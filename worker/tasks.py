"""Thin Celery tasks: take a job id, call the runner. Also the orphan watch of each worker."""

from __future__ import annotations

import logging
import threading

from celery.signals import worker_ready, worker_shutdown

from app.db import session_factory
from app.queue import RUN_JOB_TASK, send_job
from app.settings import get_settings
from worker import runner
from worker.celery_app import app
from worker.lease import requeue_orphans

logger = logging.getLogger("openrft.worker")
_stop_watch = threading.Event()


@app.task(name=RUN_JOB_TASK, acks_late=True)
def run_job(job_id: str) -> None:
    runner.run_job(job_id, get_settings())


def requeue_orphaned_jobs() -> list[str]:
    """Send again every running job whose worker stopped renewing its lease."""
    settings = get_settings()
    job_ids = requeue_orphans(session_factory(settings))
    for job_id in job_ids:
        logger.warning("job %s lost its worker; queued again", job_id)
        send_job(app, settings, job_id)
    return job_ids


def _watch_for_orphans() -> None:
    interval = get_settings().job_lease_seconds
    while True:
        try:
            requeue_orphaned_jobs()
        except Exception:
            logger.exception("orphan watch failed; trying again")
        if _stop_watch.wait(interval):
            return


@worker_ready.connect
def _start_orphan_watch(**_: object) -> None:
    threading.Thread(target=_watch_for_orphans, name="orphan-watch", daemon=True).start()


@worker_shutdown.connect
def _stop_orphan_watch(**_: object) -> None:
    _stop_watch.set()
