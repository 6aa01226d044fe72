"""The only place the worker writes job status, events and checkpoints."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from app.jobs import TERMINAL_STATUSES, JobStatus, advance, event_level, transition_message
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
        self,
        expected: JobStatus,
        to: JobStatus,
        *,
        error: dict[str, Any] | None = None,
        message: str | None = None,
        **fields: Any,
    ) -> bool:
        """Move the job from `expected` to `to`; False, and nothing written, if it moved meanwhile.

        A compare-and-set: a user may pause or cancel between our read and our write.
        """
        advance(expected, to)
        values: dict[str, Any] = {"status": to.value, **fields}
        if to in TERMINAL_STATUSES:
            values.update(finished_at=now(), estimated_finish=None)
        if to in (JobStatus.PAUSED, JobStatus.CANCELLED, JobStatus.QUEUED):
            values.update(cancel_requested=False, pause_requested=False)
        if error is not None:
            values["error"] = error
        with self.sessions() as session:
            result = session.execute(
                update(Job)
                .where(Job.id == self.job_id, Job.status == expected.value)
                .values(**values)
            )
            if result.rowcount != 1:
                session.rollback()
                return False
            reason = error["message"] if error else None
            record_event(
                session,
                self.job_id,
                message or transition_message(expected, to, reason=reason),
                level=event_level(to),
            )
            session.commit()
            return True

    def fail(self, expected: JobStatus, code: str, message: str, param: str | None = None) -> bool:
        error = {"code": code, "message": message, "param": param}
        return self.move_to(expected, JobStatus.FAILED, error=error)
