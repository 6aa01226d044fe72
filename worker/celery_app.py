"""The worker's Celery app: the API's queue settings plus the tasks registered by name."""

from __future__ import annotations

from app.queue import make_celery
from app.settings import get_settings

app = make_celery(get_settings())
app.conf.update(imports=("worker.tasks",))
