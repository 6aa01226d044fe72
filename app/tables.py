"""ORM tables. Every tenant-owned row carries `project_id`.

Rows that are listed with cursors have an integer `seq` primary key for a stable order
(many rows share one `created_at` second) and a public string `id`.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def now() -> int:
    return int(time.time())


class Base(DeclarativeBase):
    pass


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[int] = mapped_column(Integer, default=now)


class ApiKey(Base):
    __tablename__ = "api_keys"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    # sha256 of the key; the key itself is shown once and never stored
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    key_prefix: Mapped[str] = mapped_column(String(24))
    created_at: Mapped[int] = mapped_column(Integer, default=now)


class File(Base):
    __tablename__ = "files"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    filename: Mapped[str] = mapped_column(String(512))
    purpose: Mapped[str] = mapped_column(String(32), index=True)
    bytes: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="processed")
    storage_key: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[int] = mapped_column(Integer, default=now)
    expires_at: Mapped[int | None] = mapped_column(Integer, nullable=True)


class Job(Base):
    __tablename__ = "jobs"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    model: Mapped[str] = mapped_column(String(256))
    status: Mapped[str] = mapped_column(String(32), index=True)
    training_file: Mapped[str] = mapped_column(String(64))
    validation_file: Mapped[str | None] = mapped_column(String(64), nullable=True)
    suffix: Mapped[str | None] = mapped_column(String(64), nullable=True)
    seed: Mapped[int] = mapped_column(Integer)
    # "metadata" is reserved on declarative classes
    job_metadata: Mapped[dict[str, str] | None] = mapped_column("metadata", JSON, nullable=True)
    method: Mapped[dict[str, Any]] = mapped_column(JSON)
    hyperparameters: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    integrations: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    fine_tuned_model: Mapped[str | None] = mapped_column(String(512), nullable=True)
    trained_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    estimated_finish: Mapped[int | None] = mapped_column(Integer, nullable=True)
    finished_at: Mapped[int | None] = mapped_column(Integer, nullable=True)
    result_files: Mapped[list[str]] = mapped_column(JSON, default=list)
    # adapter served as `fine_tuned_model`, relative to the checkpoints dir
    result_adapter_path: Mapped[str | None] = mapped_column(String(512), nullable=True)
    created_at: Mapped[int] = mapped_column(Integer, default=now)
    # stop requests the worker honours at its next step boundary
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    pause_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    # the worker holding the job and until when (unix seconds on the database's clock); a
    # lapsed lease may be taken over
    lease_owner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    lease_expires_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    # the fencing token: raised each time a worker takes the lease, so writes from an older
    # attempt can be refused (a lapsed lease taken back also loses its holder)
    attempt: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # the attempts whose worker stopped renewing its lease (crashed, killed, stalled)
    lost_attempts: Mapped[list[int]] = mapped_column(JSON, default=list, server_default="[]")
    # when the job's latest queue message was sent (database clock), and how often the sweep
    # has sent it again since a worker last took it (each time waiting twice as long)
    enqueued_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    resend_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class JobEvent(Base):
    __tablename__ = "job_events"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[int] = mapped_column(Integer, default=now)
    level: Mapped[str] = mapped_column(String(8), default="info")
    message: Mapped[str] = mapped_column(Text)
    type: Mapped[str] = mapped_column(String(16), default="message")
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class Checkpoint(Base):
    __tablename__ = "checkpoints"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    step_number: Mapped[int] = mapped_column(Integer)
    fine_tuned_model_checkpoint: Mapped[str] = mapped_column(String(512), index=True)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # directory holding the adapter, relative to the checkpoints dir
    storage_path: Mapped[str] = mapped_column(String(512))
    created_at: Mapped[int] = mapped_column(Integer, default=now)


class JobSample(Base):
    """One graded completion the trainer kept for a step or a validation run (bounded per step
    by OPENRFT_SAMPLES_PER_STEP); the prompt and reference repeat on each of a group's rows."""

    __tablename__ = "job_samples"
    __table_args__ = (Index("ix_job_samples_job_split_step", "job_id", "split", "step"),)

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    step: Mapped[int] = mapped_column(Integer)
    split: Mapped[str] = mapped_column(String(16))  # "train" | "validation"
    # the prompt's index within the step's batch (or the validation set): a group's key
    group_index: Mapped[int] = mapped_column(Integer)
    prompt: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    reference: Mapped[dict[str, Any]] = mapped_column(JSON)
    completion: Mapped[str] = mapped_column(Text)
    reward: Mapped[float] = mapped_column(Float)
    sub_rewards: Mapped[dict[str, float] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[int] = mapped_column(Integer, default=now)
