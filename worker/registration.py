"""A training worker tells the service what it can hold: its device, memory and bf16 support
(the workers table), refreshed by a heartbeat, and it takes from the tier queues its memory
covers (app/workers/queues.py).
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from app.settings import Settings
from app.workers.registry import DeviceReport, forget_worker, report_worker

logger = logging.getLogger("openrft.worker")
CGROUP_MEMORY_LIMIT = Path("/sys/fs/cgroup/memory.max")


def _host_memory_bytes() -> int:
    """Physical memory, or the container's cgroup limit when lower."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        limit = CGROUP_MEMORY_LIMIT.read_text().strip()
    except OSError:
        return memory
    return min(memory, int(limit)) if limit.isdigit() else memory


def detect_device(settings: Settings) -> DeviceReport:
    """The device this worker trains on (the trainer's own choice: CUDA when present)."""
    import torch

    from worker.trainer.models import pick_autocast_dtype, pick_device

    kind = pick_device()
    if kind == "cuda":
        properties = torch.cuda.get_device_properties(0)
        name, memory = properties.name, int(properties.total_memory)
    else:
        name, memory = f"cpu ({os.cpu_count()} cores)", _host_memory_bytes()
    bf16 = pick_autocast_dtype(kind, "auto") is not None
    return DeviceReport(kind, name, settings.worker_memory_bytes or memory, bf16)


def beat_forever(
    sessions: sessionmaker[Session],
    settings: Settings,
    name: str,
    device: DeviceReport,
    stop: threading.Event,
) -> None:
    """Report the worker every `worker_heartbeat_seconds` until `stop`, then forget it."""
    while True:
        try:
            with sessions() as session:
                report_worker(session, name, device)
        except Exception:  # the database is briefly away: the next beat tries again
            logger.exception("worker %s could not report itself", name)
        if stop.wait(settings.worker_heartbeat_seconds):
            break
    try:
        with sessions() as session:
            forget_worker(session, name)
    except Exception:
        logger.exception("worker %s could not remove its registration", name)
