"""One attempt's writes to its job, each a short transaction of its own, all fenced."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.jobs import repository
from app.jobs.repository import Fence
from app.jobs.states import JobStatus
from app.tables import File, Job


class JobWriter:
    """Everything a worker records about its job goes through here; a stale attempt's writes
    raise StaleAttempt and leave nothing behind."""

    def __init__(self, sessions: sessionmaker[Session], fence: Fence) -> None:
        self.sessions = sessions
        self.fence = fence

    @property
    def job_id(self) -> str:
        return self.fence.job_id

    @contextmanager
    def holding(self) -> Iterator[Session]:
        """A transaction that holds the job row under the fence until it commits."""
        with self.sessions.begin() as session:
            repository.hold(session, self.fence)
            yield session

    def job(self) -> Job:
        with self.sessions() as session:
            return session.scalars(select(Job).where(Job.id == self.job_id)).one()

    def move(self, expected: JobStatus, to: JobStatus, **kwargs: Any) -> bool:
        with self.sessions.begin() as session:
            return repository.move(session, self.fence, expected, to, **kwargs)

    def fail(self, expected: JobStatus, code: str, message: str, param: str | None = None) -> bool:
        error = {"code": code, "message": message, "param": param}
        return self.move(expected, JobStatus.FAILED, error=error)

    def event(
        self,
        message: str,
        *,
        level: str = "info",
        type: str = "message",
        data: dict[str, Any] | None = None,
    ) -> None:
        with self.sessions.begin() as session:
            repository.event(session, self.fence, message, level=level, type=type, data=data)

    def metrics(self, message: str, data: dict[str, Any], *, estimated_finish: int | None) -> None:
        with self.sessions.begin() as session:
            repository.step_metrics(session, self.fence, message, data, estimated_finish)

    def discard_metrics_after(self, step: int) -> int:
        with self.sessions.begin() as session:
            return repository.discard_metrics_after(session, self.fence, step)

    def samples(self, step: int, split: str, samples: list[dict[str, Any]]) -> None:
        with self.sessions.begin() as session:
            repository.replace_samples(session, self.fence, step, split, samples)

    def discard_samples_after(self, step: int) -> int:
        with self.sessions.begin() as session:
            return repository.discard_samples_after(session, self.fence, step)

    def stop_request(self) -> str | None:
        with self.sessions() as session:
            return repository.stop_request(session, self.fence)

    def echo_hyperparameters(self, method: str, resolved: dict[str, Any]) -> None:
        with self.sessions.begin() as session:
            repository.echo_hyperparameters(session, self.fence, method, resolved)

    def succeed(
        self,
        *,
        result_adapter_path: str,
        trained_tokens: int,
        store_result_files: Callable[[Job], list[File]],
    ) -> bool:
        """Store the result files and finish the job, all while holding it: a stale attempt
        stores nothing."""
        with self.sessions.begin() as session:
            job = repository.hold(session, self.fence)
            return repository.succeed(
                session,
                self.fence,
                result_adapter_path=result_adapter_path,
                trained_tokens=trained_tokens,
                result_files=store_result_files(job),
            )
