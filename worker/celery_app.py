"""The worker's Celery app: the API's queue settings plus the tasks registered by name."""

from __future__ import annotations

from celery.signals import setup_logging

from app.observability.logs import configure_logging
from app.queue import make_celery
from app.settings import get_settings

app = make_celery(get_settings())
app.conf.update(imports=("worker.tasks",))


@setup_logging.connect
def _configure_logging(**_: object) -> None:
    # connecting here tells Celery to leave logging to us, so `openrft.*` records are not dropped
    configure_logging(get_settings().log_format, servers=True)
