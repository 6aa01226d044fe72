"""ORM tables. Every tenant-owned row carries `project_id`.

Rows that are listed with cursors have an integer `seq` primary key for a stable order
(many rows share one `created_at` second) and a public string `id`.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy import false as sa_false
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
    # when a worker last took one of the project's jobs (database clock): the fair dispatch
    # serves the project that waited longest first
    last_dispatched_at: Mapped[float | None] = mapped_column(Float, nullable=True)


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
    # a job's internal key (its model graders call this service as the job's project): valid
    # only while that attempt of the job runs and holds its lease; None for a user's key
    job_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    job_attempt: Mapped[int | None] = mapped_column(Integer, nullable=True)


class File(Base):
    __tablename__ = "files"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    filename: Mapped[str] = mapped_column(String(512))
    purpose: Mapped[str] = mapped_column(String(32), index=True)
    bytes: Mapped[int] = mapped_column(BigInteger)
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
    # as given: a catalogue model, or a fine-tuned model (or checkpoint) the job trains on from
    model: Mapped[str] = mapped_column(String(256))
    # the catalogue model whose weights the adapter sits on (`model` itself unless it is an ft
    # model); None only on rows written before the column existed, read through `base_model_name`
    base_model: Mapped[str | None] = mapped_column(String(256), nullable=True)
    # a job trained on from a fine-tuned model: that model's job, and the adapter it starts from
    # (relative to the checkpoints dir)
    parent_job_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    parent_adapter_path: Mapped[str | None] = mapped_column(String(512), nullable=True)
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
    # the training queue a fitting worker consumes (app/workers/placement.py); None: the plain
    # queue every training worker takes from (no worker had registered when it was created)
    queue: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # turned on at creation when the job fits a worker only with it
    gradient_checkpointing: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=sa_false()
    )

    @property
    def base_model_name(self) -> str:
        """The catalogue model the job's weights build on."""
        return self.base_model or self.model


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


class WebhookEndpoint(Base):
    __tablename__ = "webhook_endpoints"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(256))
    url: Mapped[str] = mapped_column(String(2048))
    event_types: Mapped[list[str]] = mapped_column(JSON)
    # `whsec_<base64>`: kept in the clear because every delivery is signed with it; the API
    # shows it only when it is created or rotated
    signing_secret: Mapped[str] = mapped_column(String(128))
    # after a rotation that keeps the old secret for a while, deliveries carry both signatures
    previous_signing_secret: Mapped[str | None] = mapped_column(String(128), nullable=True)
    previous_secret_expires_at: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[int] = mapped_column(Integer, default=now)
    updated_at: Mapped[int] = mapped_column(Integer, default=now)


class WebhookDelivery(Base):
    """The outbox: one row per event and endpoint, written in the transaction that caused the
    event, sent (and retried) by the workers' delivery loop; also the endpoint's delivery log."""

    __tablename__ = "webhook_deliveries"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    endpoint_id: Mapped[str] = mapped_column(
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), index=True
    )
    # `webhook-id`: one per event, the same on every attempt (receivers deduplicate on it)
    webhook_id: Mapped[str] = mapped_column(String(64), index=True)
    event_id: Mapped[str] = mapped_column(String(64))
    event_type: Mapped[str] = mapped_column(String(64))
    # the exact body every attempt sends (serialized once, so the signature covers the same bytes)
    payload: Mapped[str] = mapped_column(Text)
    # pending, delivered or failed (gave up after the retry window)
    status: Mapped[str] = mapped_column(String(16), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # when the next attempt is due (database clock, unix seconds); while an attempt is under
    # way, when another worker may take it over
    next_attempt_at: Mapped[float | None] = mapped_column(Float, nullable=True, index=True)
    created_at: Mapped[int] = mapped_column(Integer, default=now)
    delivered_at: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)


class WebhookDeliveryAttempt(Base):
    __tablename__ = "webhook_delivery_attempts"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), index=True
    )
    attempt: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[int] = mapped_column(Integer, default=now)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    duration_ms: Mapped[int] = mapped_column(Integer)


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


class Upload(Base):
    """A file arriving in parts (`/v1/uploads`); completing it makes a `File`."""

    __tablename__ = "uploads"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    filename: Mapped[str] = mapped_column(String(512))
    purpose: Mapped[str] = mapped_column(String(32))
    mime_type: Mapped[str] = mapped_column(String(255))
    # the size declared at creation; the parts named on completion must add up to it
    bytes: Mapped[int] = mapped_column(BigInteger)
    # pending, completing (a completion is concatenating the parts), completed, cancelled,
    # expired; "completing" is shown as "pending"
    status: Mapped[str] = mapped_column(String(16), index=True)
    # `expires_after.seconds` for the file the upload becomes
    file_expires_after: Mapped[int | None] = mapped_column(Integer, nullable=True)
    file_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[int] = mapped_column(Integer, default=now)
    expires_at: Mapped[int] = mapped_column(Integer)


class UploadPart(Base):
    __tablename__ = "upload_parts"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    upload_id: Mapped[str] = mapped_column(ForeignKey("uploads.id", ondelete="CASCADE"), index=True)
    bytes: Mapped[int] = mapped_column(BigInteger)
    storage_key: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[int] = mapped_column(Integer, default=now)


class CheckpointPermission(Base):
    """A fine-tuned checkpoint of `owner_project_id` shared with `project_id`.

    Keyed by the checkpoint's model name, which outlives its row: a checkpoint rewritten at the
    same step (a resumed job) keeps its name and its permissions.
    """

    __tablename__ = "checkpoint_permissions"
    __table_args__ = (UniqueConstraint("fine_tuned_model_checkpoint", "project_id"),)

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    fine_tuned_model_checkpoint: Mapped[str] = mapped_column(String(512), index=True)
    owner_project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[int] = mapped_column(Integer, default=now)


class Worker(Base):
    """A training worker's device, as it last reported it (a heartbeat refreshes `last_seen`)."""

    __tablename__ = "workers"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)  # Celery's node name
    device_kind: Mapped[str] = mapped_column(String(16))  # "cpu" | "cuda"
    device_name: Mapped[str] = mapped_column(String(255))
    memory_bytes: Mapped[int] = mapped_column(BigInteger)  # what a job may use on the device
    bf16: Mapped[bool] = mapped_column(Boolean)  # the trainer computes in bf16 there
    started_at: Mapped[int] = mapped_column(Integer, default=now)
    last_seen: Mapped[float] = mapped_column(Float)  # unix seconds
