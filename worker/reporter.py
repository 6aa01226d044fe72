"""The only place the worker writes job status, events and checkpoints."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.jobs import IllegalTransition, JobStatus, advance, event_level, transition_message
from app.models import Job, now
from app.services.jobs import record_event


class JobReporter:
    """Writes one job's progress; each call is its own short transaction."""

    def __init__(self, sessions: sessionmaker[Session], job_id: str) -> None:
        self.sessions = sessions
        self.job_id = job_id

    def _load(self, session: Session, *, lock: bool = False) -> Job:
        query = select(Job).where(Job.id == self.job_id)
        return session.scalars(query.with_for_update() if lock else query).one()

    def job(self) -> Job:
        with self.sessions() as session:
            return self._load(session)

    def event(
        self,
        message: str,
        *,
        level: str = "info",
        type: str = "message",
        data: dict[str, Any] | None = None,
    ) -> None:
        with self.sessions() as session:
            record_event(session, self.job_id, message, level=level, type=type, data=data)
            session.commit()

    def move_to(
        self, to: JobStatus, *, error: dict[str, Any] | None = None, message: str | None = None
    ) -> bool:
        """Apply a worker-driven change; False (and nothing written) if the job moved meanwhile.

        A user may cancel between our read and our write; the state machine decides.
        """
        with self.sessions() as session:
            job = self._load(session, lock=True)
            current = JobStatus(job.status)
            if current == to:
                return True
            try:
                advance(current, to)
            except IllegalTransition:
                return False
            reason = error["message"] if error else None
            job.status = to.value
            if to in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED):
                job.finished_at = now()
                job.estimated_finish = None
            if error is not None:
                job.error = error
            record_event(
                session,
                self.job_id,
                message or transition_message(current, to, reason=reason),
                level=event_level(to),
            )
            session.commit()
            return True

    def fail(self, code: str, message: str, param: str | None = None) -> bool:
        return self.move_to(
            JobStatus.FAILED, error={"code": code, "message": message, "param": param}
        )
