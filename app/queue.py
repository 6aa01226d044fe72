"""Send work to the workers by task name: the API never imports the worker package.

The Celery app here is a sender only. The worker builds its own app from the same settings
(`worker/celery_app.py`) and registers the tasks under these names.
"""

from __future__ import annotations

from collections.abc import Callable

from celery import Celery

from app.settings import Settings

RUN_JOB_TASK = "openrft.run_job"
# the light lane: checks a new job's files, so that a bad line is reported at once even while
# every training worker is busy with a long job
VALIDATE_JOB_TASK = "openrft.validate_job"


def light_queue(settings: Settings) -> str:
    """The queue of short tasks; workers and the light worker take from it."""
    return f"{settings.queue_name}.light"


def _filesystem_transport_options(settings: Settings) -> dict[str, object]:
    # The embedded transport: messages are files in one folder shared by API and worker.
    queue_dir = settings.broker_dir / "queue"
    processed_dir = settings.broker_dir / "processed"
    control_dir = settings.broker_dir / "control"
    for folder in (queue_dir, processed_dir, control_dir):
        folder.mkdir(parents=True, exist_ok=True)
    return {
        "data_folder_in": str(queue_dir),
        "data_folder_out": str(queue_dir),
        "processed_folder": str(processed_dir),
        "control_folder": str(control_dir),
        "store_processed": False,
    }


def make_celery(settings: Settings) -> Celery:
    """A Celery app on the configured broker with the queue's delivery guarantees."""
    broker_url = settings.resolved_broker_url
    celery = Celery("openrft", broker=broker_url)
    transport_options: dict[str, object] = {}
    if broker_url.startswith("filesystem"):
        transport_options = _filesystem_transport_options(settings)
    else:
        # an unacknowledged job goes back to the queue when its worker dies
        transport_options = {"visibility_timeout": settings.job_visibility_timeout_seconds}
    celery.conf.update(
        broker_transport_options=transport_options,
        broker_connection_retry_on_startup=True,
        task_default_queue=settings.queue_name,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
    )
    return celery


def send_job(celery: Celery, settings: Settings, job_id: str, queue: str | None = None) -> None:
    """Hand a job id to the workers, on the queue it was placed on (app.workers.queues) or the
    plain one; raises when the broker cannot take the message."""
    celery.send_task(RUN_JOB_TASK, args=[job_id], queue=queue or settings.queue_name)


def send_validation(celery: Celery, settings: Settings, job_id: str) -> None:
    """Hand a new job to the light lane, which checks its files and then sends it to training."""
    celery.send_task(VALIDATE_JOB_TASK, args=[job_id], queue=light_queue(settings))


def job_sender(settings: Settings) -> Callable[[str], None]:
    """Sends a job id to training with `settings`, reusing one Celery app for every send."""
    celery = make_celery(settings)
    return lambda job_id: send_job(celery, settings, job_id)


def validation_sender(settings: Settings) -> Callable[[str], None]:
    """Sends a new job's id to the light lane, reusing one Celery app for every send."""
    celery = make_celery(settings)
    return lambda job_id: send_validation(celery, settings, job_id)
