"""The sweep every worker runs: nothing stranded, nothing looping.

- A job whose worker stopped renewing its lease is taken back: counted as a lost attempt,
  queued again (and sent), or failed once it has lost `max_job_attempts` attempts.
- A job waiting in validating_files/queued that no worker holds, and whose message was sent
  longer ago than `job_resend_seconds` (doubled after each re-send, up to 64 times), is sent
  again: its message may have been lost (the embedded transport deletes a message when a
  worker receives it). Duplicates are harmless: a worker that finds the job taken or done
  does nothing.
- A job's internal key whose attempt ended without revoking it (its worker was lost) is
  deleted; it was refused since its lease lapsed.
- An upload (`/v1/uploads`) left incomplete past its `expires_at` is expired and its parts
  removed from storage.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from app.files.service import purge_expired
from app.jobs import repository
from app.jobs.repository import WAITING_STATUSES
from app.jobs.service import Enqueue
from app.keys.service import purge_dead_job_keys
from app.settings import Settings
from app.storage import storage_from_settings
from app.uploads.service import expire_due

logger = logging.getLogger("openrft.worker")


@dataclass
class SweepReport:
    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    resent: list[str] = field(default_factory=list)
    expired_uploads: list[str] = field(default_factory=list)


def sweep(sessions: sessionmaker[Session], settings: Settings, send: Enqueue) -> SweepReport:
    report = SweepReport()
    with sessions() as session:
        lapsed = repository.lapsed_leases(session)
    for job_id in lapsed:
        with sessions.begin() as session:
            status = repository.reclaim_lapsed(session, job_id, settings.max_job_attempts)
        if status in WAITING_STATUSES:
            logger.warning("job %s lost its worker; sent again", job_id)
            report.requeued.append(job_id)
            send(job_id)
        elif status is not None:
            logger.error("job %s lost its worker too often and failed", job_id)
            report.failed.append(job_id)
    with sessions() as session:
        stranded = repository.stranded(session, settings.job_resend_seconds)
    for waiting in stranded:
        with sessions.begin() as session:
            due = repository.mark_resent(session, waiting)
        if due:
            logger.warning("job %s waited without a worker; sent again", waiting.job_id)
            report.resent.append(waiting.job_id)
            send(waiting.job_id)
    storage = storage_from_settings(settings)
    with sessions() as session:
        report.expired_uploads = expire_due(session, storage)
    with sessions() as session:
        for file_id in purge_expired(session, storage):
            logger.info("file %s expired; purged", file_id)
    with sessions.begin() as session:
        purge_dead_job_keys(session)
    return report


def sweep_interval(settings: Settings) -> float:
    """Often enough to notice a lapsed lease or a stranded job within about half its limit."""
    return max(0.5, min(settings.job_lease_seconds, settings.job_resend_seconds) / 2)


def sweep_forever(
    sessions: sessionmaker[Session], settings: Settings, send: Enqueue, stop: threading.Event
) -> None:
    while not stop.is_set():
        try:
            sweep(sessions, settings, send)
        except Exception:
            logger.exception("sweep failed; trying again")
        stop.wait(sweep_interval(settings))
