"""Wire shapes of fine-tuning jobs, their events and checkpoints (reference section 2)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from app.tables import Checkpoint, Job, JobEvent, JobSample


class JobCreateRequest(BaseModel):
    """The create body; shapes inside `method` are checked by `app.jobs.params`."""

    model_config = ConfigDict(extra="forbid")

    model: str
    training_file: str
    validation_file: str | None = None
    suffix: str | None = None
    seed: int | None = None
    metadata: dict[str, Any] | None = None
    integrations: list[Any] | None = None
    hyperparameters: dict[str, Any] | None = None
    method: dict[str, Any] | None = None


class JobError(BaseModel):
    code: str
    message: str
    param: str | None = None


class FineTuningJob(BaseModel):
    id: str
    object: Literal["fine_tuning.job"] = "fine_tuning.job"
    created_at: int
    model: str
    organization_id: str
    status: str
    fine_tuned_model: str | None
    finished_at: int | None
    trained_tokens: int | None
    training_file: str
    validation_file: str | None
    result_files: list[str]
    seed: int
    hyperparameters: dict[str, Any] | None
    error: JobError | None
    estimated_finish: int | None
    integrations: list[Any] | None
    metadata: dict[str, str] | None
    method: dict[str, Any]
    user_provided_suffix: str | None
    # ours, beside OpenAI's fields (the SDK keeps unknown fields): the job whose fine-tuned
    # model or checkpoint, named in `model`, this job trains on from
    parent_job_id: str | None = None

    @classmethod
    def from_row(cls, job: Job) -> FineTuningJob:
        return cls(
            id=job.id,
            created_at=job.created_at,
            model=job.model,
            organization_id=job.project_id,
            status=job.status,
            fine_tuned_model=job.fine_tuned_model,
            finished_at=job.finished_at,
            trained_tokens=job.trained_tokens,
            training_file=job.training_file,
            validation_file=job.validation_file,
            result_files=list(job.result_files or []),
            seed=job.seed,
            hyperparameters=job.hyperparameters,
            error=JobError(**job.error) if job.error else None,
            estimated_finish=job.estimated_finish,
            integrations=job.integrations,
            metadata=job.job_metadata,
            method=job.method,
            user_provided_suffix=job.suffix,
            parent_job_id=job.parent_job_id,
        )

    @classmethod
    def from_columns(cls, row: dict[str, Any]) -> FineTuningJob:
        """From a row of `app.jobs.reads.JOB_COLUMNS` (already by these fields' names)."""
        return cls.model_validate(cls.fields_of(row))

    @staticmethod
    def fields_of(row: dict[str, Any]) -> dict[str, Any]:
        """A row of `app.jobs.reads.JOB_COLUMNS` as this model's fields."""
        return {**row, "result_files": row["result_files"] or [], "error": row["error"] or None}


class JobEventObject(BaseModel):
    id: str
    object: Literal["fine_tuning.job.event"] = "fine_tuning.job.event"
    created_at: int
    level: str
    message: str
    type: str
    data: dict[str, Any] | None

    @classmethod
    def from_row(cls, event: JobEvent) -> JobEventObject:
        return cls(
            id=event.id,
            created_at=event.created_at,
            level=event.level,
            message=event.message,
            type=event.type,
            data=event.data,
        )

    @classmethod
    def from_columns(cls, row: dict[str, Any]) -> JobEventObject:
        """From a row of `app.jobs.reads.EVENT_COLUMNS`."""
        return cls.model_validate(row)


class CheckpointObject(BaseModel):
    id: str
    object: Literal["fine_tuning.job.checkpoint"] = "fine_tuning.job.checkpoint"
    created_at: int
    fine_tuned_model_checkpoint: str
    fine_tuning_job_id: str
    step_number: int
    metrics: dict[str, Any]

    @classmethod
    def from_row(cls, checkpoint: Checkpoint) -> CheckpointObject:
        return cls(
            id=checkpoint.id,
            created_at=checkpoint.created_at,
            fine_tuned_model_checkpoint=checkpoint.fine_tuned_model_checkpoint,
            fine_tuning_job_id=checkpoint.job_id,
            step_number=checkpoint.step_number,
            metrics=checkpoint.metrics or {},
        )

    @classmethod
    def from_columns(cls, row: dict[str, Any]) -> CheckpointObject:
        """From a row of `app.jobs.reads.CHECKPOINT_COLUMNS`."""
        return cls.model_validate({**row, "metrics": row["metrics"] or {}})


class SampleObject(BaseModel):
    """One graded completion the trainer kept (an extension: OpenAI has no such resource)."""

    object: Literal["fine_tuning.job.sample"] = "fine_tuning.job.sample"
    step: int
    split: str
    group: int  # the prompt's index within the step's batch; a group's samples share it
    prompt: list[dict[str, Any]]
    reference: dict[str, Any]
    completion: str
    reward: float
    sub_rewards: dict[str, float] | None
    created_at: int

    @classmethod
    def from_row(cls, sample: JobSample) -> SampleObject:
        return cls(
            step=sample.step,
            split=sample.split,
            group=sample.group_index,
            prompt=sample.prompt,
            reference=sample.reference,
            completion=sample.completion,
            reward=sample.reward,
            sub_rewards=sample.sub_rewards,
            created_at=sample.created_at,
        )
