"""Taking a job's lease and keeping it alive while the worker trains.

At most one worker holds a job at a time. A lease that lapsed (the worker was killed, stalled,
or lost its database) is taken back first: the lost attempt is counted, and a job that lost
too many fails instead of looping. The holder renews from a background thread; when a renewal
finds the lease gone, the attempt is stale and the worker stops at its next step boundary.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.orm import Session, sessionmaker

from app.jobs import dispatch, repository
from app.jobs.repository import Fence, StaleAttempt

logger = logging.getLogger("openrft.worker")


def worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def take_lease(
    sessions: sessionmaker[Session],
    job_id: str,
    owner: str,
    lease_seconds: float,
    max_attempts: int,
) -> Fence | None:
    """The job's lease for a new attempt, or None when the job is not ours to run."""
    with sessions.begin() as session:
        view = repository.lease_view(session, job_id)
        if view is None:
            return None
        if view.lapsed:
            repository.reclaim_lapsed(session, job_id, max_attempts)
    with sessions.begin() as session:
        return repository.claim(session, job_id, owner, lease_seconds)


# a fair pick another worker took first is passed over for the next; more rounds than this
# means workers are racing for the last few jobs, and the message's own job is enough
FAIR_CLAIM_ROUNDS = 4


def take_fair_lease(
    sessions: sessionmaker[Session],
    sent_job_id: str,
    owner: str,
    lease_seconds: float,
    max_attempts: int,
) -> Fence | None:
    """The lease of the fairest waiting job (`app.jobs.dispatch`), which may not be the job
    the message named; None when no job waits for a worker.

    The named job's lapsed lease is taken back first, so it competes like any waiting job.
    """
    with sessions.begin() as session:
        view = repository.lease_view(session, sent_job_id)
        if view is not None and view.lapsed:
            repository.reclaim_lapsed(session, sent_job_id, max_attempts)
    for _ in range(FAIR_CLAIM_ROUNDS):
        with sessions() as session:
            candidates = dispatch.fair_order(session, sent_job_id)
        if not candidates:
            return None
        for job_id in candidates:
            with sessions.begin() as session:
                fence = repository.claim(session, job_id, owner, lease_seconds)
            if fence is not None:
                return fence
    return None


class Heartbeat:
    """Renews one attempt's lease every third of its length; notices when it is lost."""

    def __init__(self, sessions: sessionmaker[Session], fence: Fence, lease_seconds: float) -> None:
        self.sessions = sessions
        self.fence = fence
        self.lease_seconds = lease_seconds
        self.lost = threading.Event()

    def check(self) -> None:
        """Raise StaleAttempt once a renewal found the lease taken over."""
        if self.lost.is_set():
            raise StaleAttempt(
                f"attempt {self.fence.attempt} of job {self.fence.job_id} lost its lease"
            )

    def _renew(self) -> bool:
        with self.sessions.begin() as session:
            return repository.renew(session, self.fence, self.lease_seconds)

    @contextmanager
    def kept_alive(self) -> Iterator[None]:
        """Renew until the block ends, then give the lease up."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(self.lease_seconds / 3):
                try:
                    if not self._renew():
                        self.lost.set()
                        return
                except Exception:  # a database hiccup: try again at the next beat
                    logger.exception("could not renew the lease of job %s", self.fence.job_id)

        thread = threading.Thread(target=beat, name=f"lease-{self.fence.job_id}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            with self.sessions.begin() as session:
                repository.release(session, self.fence)
