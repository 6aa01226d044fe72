"""A real database with a project and uploaded files, and jobs created the way the API does."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.db import session_factory
from app.files.service import create_file
from app.jobs.schemas import JobCreateRequest
from app.jobs.service import create_job
from app.keys.service import get_or_create_project
from app.migrate import upgrade
from app.settings import Settings
from app.storage import LocalStorage
from app.tables import Job, Project
from tests.api.jobfiles import BASE_MODEL, rft_method, rft_rows


@dataclass
class JobDatabase:
    settings: Settings
    sessions: sessionmaker[Session]
    project: Project
    training_file: str
    validation_file: str
    sent: list[str] = field(default_factory=list)

    def send(self, job_id: str) -> None:
        """The queue: records which job ids were sent."""
        self.sent.append(job_id)

    def create_job(self, method: dict | None = None, **hyperparameters: object) -> str:
        body = JobCreateRequest(
            model=BASE_MODEL,
            training_file=self.training_file,
            validation_file=self.validation_file,
            method=method or rft_method(**hyperparameters),
        )
        with self.sessions() as session:
            storage = LocalStorage(self.settings.uploads_dir)
            return create_job(session, self.settings, self.project, body, self.send, storage).id

    def create_job_in(self, project_name: str) -> str:
        """A job of another project (made on first use, with files of its own)."""
        with self.sessions() as session:
            project = get_or_create_project(session, project_name)
            session.commit()
            training = upload(session, self.settings, project, "train.jsonl", rft_rows(10))
            validation = upload(session, self.settings, project, "valid.jsonl", rft_rows(2))
            body = JobCreateRequest(
                model=BASE_MODEL,
                training_file=training,
                validation_file=validation,
                method=rft_method(),
            )
            storage = LocalStorage(self.settings.uploads_dir)
            return create_job(session, self.settings, project, body, self.send, storage).id

    def job(self, job_id: str) -> Job:
        with self.sessions() as session:
            return session.scalars(select(Job).where(Job.id == job_id)).one()


def upload(session: Session, settings: Settings, project: Project, name: str, rows: list) -> str:
    content = "".join(json.dumps(row) + "\n" for row in rows).encode()
    storage = LocalStorage(settings.uploads_dir)
    row = create_file(
        session, storage, project, filename=name, purpose="fine-tune", chunks=[content],
        max_bytes=settings.max_upload_bytes,
    )  # fmt: skip
    return row.id


def job_database_on(database_url: str, data_dir: Path, models_root: Path) -> JobDatabase:
    settings = Settings(
        data_dir=data_dir, database_url=database_url, model_dirs=[models_root],
        job_lease_seconds=30,
    )  # fmt: skip
    upgrade(settings)
    sessions = session_factory(settings)
    with sessions() as session:
        project = get_or_create_project(session, "default")
        session.commit()
        training = upload(session, settings, project, "train.jsonl", rft_rows(10))
        validation = upload(session, settings, project, "valid.jsonl", rft_rows(2))
    return JobDatabase(settings, sessions, project, training, validation)
