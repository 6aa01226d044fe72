"""The only place the worker writes job status, events and checkpoints."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from app import ids
from app.jobs import TERMINAL_STATUSES, JobStatus, advance, event_level, transition_message
from app.jobs.service import record_event
from app.storage import Storage
from app.tables import Checkpoint, File, Job, Project, now


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

    def resolved_hyperparameters(self, method: str, resolved: dict[str, Any]) -> None:
        """Echo the values "auto" resolved to in the job's `method` and `hyperparameters`."""
        with self.sessions() as session:
            job = self._load(session, lock=True)
            echo = dict(job.method)
            echo[method] = {**echo.get(method, {}), "hyperparameters": dict(resolved)}
            job.method = echo
            job.hyperparameters = {
                key: resolved[key] for key in (job.hyperparameters or {}) if key in resolved
            }
            session.commit()

    def stop_request(self) -> str | None:
        """'cancel' or 'pause' when the user asked the running job to stop, else None."""
        job = self.job()
        if job.cancel_requested:
            return "cancel"
        if job.pause_requested:
            return "pause"
        return None

    def metrics(self, message: str, data: dict[str, Any], *, estimated_finish: int | None) -> None:
        """One `metrics` event per step, and the job's finish estimate."""
        with self.sessions() as session:
            record_event(session, self.job_id, message, type="metrics", data=data)
            session.execute(
                update(Job).where(Job.id == self.job_id).values(estimated_finish=estimated_finish)
            )
            session.commit()

    def checkpoint(self, step_number: int, storage_path: str, metrics: dict[str, Any]) -> str:
        """Record a checkpoint saved under the checkpoints dir; returns its model name."""
        with self.sessions() as session:
            job = self._load(session)
            model_name = ids.checkpoint_model_name(
                self.fine_tuned_model_name(session, job), step_number
            )
            session.execute(
                delete(Checkpoint).where(
                    Checkpoint.job_id == self.job_id, Checkpoint.step_number == step_number
                )
            )
            session.add(
                Checkpoint(
                    id=ids.new_checkpoint_id(),
                    job_id=self.job_id,
                    step_number=step_number,
                    fine_tuned_model_checkpoint=model_name,
                    metrics=metrics,
                    storage_path=storage_path,
                )
            )
            session.commit()
            return model_name

    def checkpoint_deleted(self, step_number: int) -> None:
        with self.sessions() as session:
            session.execute(
                delete(Checkpoint).where(
                    Checkpoint.job_id == self.job_id, Checkpoint.step_number == step_number
                )
            )
            session.commit()

    def fine_tuned_model_name(self, session: Session, job: Job) -> str:
        project = session.get_one(Project, job.project_id)
        return ids.fine_tuned_model_name(job.model, project.name, job.suffix, job.id)

    def result_file(self, filename: str, content: bytes, storage: Storage) -> str:
        """Store a `fine-tune-results` file in the job's project; returns its id."""
        with self.sessions() as session:
            job = self._load(session)
            file_id = ids.new_file_id()
            storage_key = f"{job.project_id}/{file_id}"
            size = storage.write(storage_key, [content], max_bytes=len(content))
            session.add(
                File(
                    id=file_id,
                    project_id=job.project_id,
                    filename=filename,
                    purpose="fine-tune-results",
                    bytes=size,
                    storage_key=storage_key,
                )
            )
            session.commit()
            return file_id

    def succeed(
        self, *, result_adapter_path: str, trained_tokens: int, result_files: list[str]
    ) -> bool:
        with self.sessions() as session:
            name = self.fine_tuned_model_name(session, self._load(session))
        moved = self.move_to(
            JobStatus.RUNNING,
            JobStatus.SUCCEEDED,
            fine_tuned_model=name,
            result_adapter_path=result_adapter_path,
            trained_tokens=trained_tokens,
            result_files=result_files,
        )
        if moved:
            self.event(f"New fine-tuned model created: {name}")
        return moved
