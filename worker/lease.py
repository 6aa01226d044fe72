"""A job's lease: at most one worker runs a job at a time, and a dead worker's job moves on.

The holder renews the lease from a background thread while it trains. A lease that lapsed
(the worker was killed, or lost its database) lets another worker take the job over; it then
continues from the latest checkpoint.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.jobs import JobStatus
from app.jobs.service import record_event
from app.jobs.states import REQUEUED_MESSAGE
from app.tables import Job

logger = logging.getLogger("openrft.worker")


def worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class JobLease:
    def __init__(
        self, sessions: sessionmaker[Session], job_id: str, owner: str, seconds: float
    ) -> None:
        self.sessions = sessions
        self.job_id = job_id
        self.owner = owner
        self.seconds = seconds

    def acquire(self) -> bool:
        """Take the lease if nobody holds a live one (compare-and-set)."""
        now = time.time()
        with self.sessions() as session:
            result = session.execute(
                update(Job)
                .where(
                    Job.id == self.job_id,
                    or_(
                        Job.lease_owner.is_(None),
                        Job.lease_owner == self.owner,
                        Job.lease_expires_at < now,
                    ),
                )
                .values(lease_owner=self.owner, lease_expires_at=now + self.seconds)
            )
            session.commit()
            return result.rowcount == 1

    def renew(self) -> bool:
        """Extend our lease; False when another worker has taken the job."""
        with self.sessions() as session:
            result = session.execute(
                update(Job)
                .where(Job.id == self.job_id, Job.lease_owner == self.owner)
                .values(lease_expires_at=time.time() + self.seconds)
            )
            session.commit()
            return result.rowcount == 1

    def release(self) -> None:
        with self.sessions() as session:
            session.execute(
                update(Job)
                .where(Job.id == self.job_id, Job.lease_owner == self.owner)
                .values(lease_owner=None, lease_expires_at=None)
            )
            session.commit()

    @contextmanager
    def kept_alive(self) -> Iterator[None]:
        """Renew the lease every third of its length until the block ends, then release it."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(self.seconds / 3):
                try:
                    self.renew()
                except Exception:  # a database hiccup: try again at the next beat
                    logger.exception("could not renew the lease of job %s", self.job_id)

        thread = threading.Thread(target=beat, name=f"lease-{self.job_id}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            self.release()


def requeue_orphans(sessions: sessionmaker[Session]) -> list[str]:
    """Move running jobs whose lease lapsed back to queued; returns their ids to re-send."""
    now = time.time()
    requeued: list[str] = []
    with sessions() as session:
        orphans = session.scalars(
            select(Job.id).where(
                Job.status == JobStatus.RUNNING.value,
                or_(Job.lease_expires_at.is_(None), Job.lease_expires_at < now),
            )
        ).all()
        for job_id in orphans:
            result = session.execute(
                update(Job)
                .where(
                    Job.id == job_id,
                    Job.status == JobStatus.RUNNING.value,
                    or_(Job.lease_expires_at.is_(None), Job.lease_expires_at < now),
                )
                .values(status=JobStatus.QUEUED.value, lease_owner=None, lease_expires_at=None)
            )
            if result.rowcount == 1:
                record_event(session, job_id, REQUEUED_MESSAGE, level="warn")
                requeued.append(job_id)
        session.commit()
    return requeued
