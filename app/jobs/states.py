"""Job statuses, every legal transition, and the event message each one records.

Two kinds of change exist. A user action (cancel, pause, resume) arrives through the API and may
only *ask* a running worker to stop; `apply_user_action` says what to store now and what to flag.
A worker-driven change (validation finished, training started, a step boundary honoured a stop
request) goes through `advance`. Both tables below are the only place these rules live.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal


class JobStatus(StrEnum):
    VALIDATING_FILES = "validating_files"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    PAUSED = "paused"


TERMINAL_STATUSES: frozenset[JobStatus] = frozenset(
    {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED}
)

UserAction = Literal["cancel", "pause", "resume"]
USER_ACTIONS: tuple[UserAction, ...] = ("cancel", "pause", "resume")


class IllegalTransition(Exception):
    """A change the state machine forbids; the API answers it with 400 (409 would be retried)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# Event messages, in one place so the API and the worker record the same words.
CREATED_MESSAGE = "Created fine-tuning job"
FILES_VALIDATED_MESSAGE = "Files validated, moving job to queued state"
STARTED_MESSAGE = "Fine-tuning job started"
PAUSED_MESSAGE = "The job has been paused"
RESUMED_MESSAGE = "Job resumed"
CANCELLED_MESSAGE = "Fine-tuning job cancelled"
SUCCEEDED_MESSAGE = "The job has successfully completed"
REQUEUED_MESSAGE = "The worker running the job was lost, moving job back to queued state"
CANCEL_REQUESTED_MESSAGE = "Cancellation requested, the job will stop at the next step"
PAUSE_REQUESTED_MESSAGE = "Pause requested, the job will pause after the next checkpoint"


@dataclass(frozen=True)
class UserActionOutcome:
    """What the API stores after a user action.

    `new_status` is None when the status must not change yet (a running worker stops itself).
    """

    new_status: JobStatus | None
    event_message: str
    cancel_requested: bool = False
    pause_requested: bool = False
    enqueue_worker: bool = False


_S = JobStatus

# (action, current status) -> outcome. A pair that is missing is illegal.
_USER_ACTION_TABLE: dict[tuple[UserAction, JobStatus], UserActionOutcome] = {
    # Nothing is training yet, so a cancel needs no worker's help: the job ends now. A worker
    # that later picks the job up sees a terminal status and does nothing.
    ("cancel", _S.VALIDATING_FILES): UserActionOutcome(_S.CANCELLED, CANCELLED_MESSAGE),
    ("cancel", _S.QUEUED): UserActionOutcome(_S.CANCELLED, CANCELLED_MESSAGE),
    ("cancel", _S.PAUSED): UserActionOutcome(_S.CANCELLED, CANCELLED_MESSAGE),
    # A running worker owns the model and the checkpoint files; it stops at its next step
    # boundary and moves the job to cancelled itself.
    ("cancel", _S.RUNNING): UserActionOutcome(
        None, CANCEL_REQUESTED_MESSAGE, cancel_requested=True
    ),
    # No training progress exists to snapshot yet, so pausing is only a hold: resume re-queues
    # and the worker starts from the beginning (files are validated again).
    ("pause", _S.VALIDATING_FILES): UserActionOutcome(_S.PAUSED, PAUSED_MESSAGE),
    ("pause", _S.QUEUED): UserActionOutcome(_S.PAUSED, PAUSED_MESSAGE),
    # The worker saves a checkpoint, stops at the next step boundary and sets paused itself.
    ("pause", _S.RUNNING): UserActionOutcome(None, PAUSE_REQUESTED_MESSAGE, pause_requested=True),
    # Resume re-queues; the worker continues from the last checkpoint, if any.
    ("resume", _S.PAUSED): UserActionOutcome(_S.QUEUED, RESUMED_MESSAGE, enqueue_worker=True),
}

# current status -> statuses a worker may move the job to.
_WORKER_TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    _S.VALIDATING_FILES: frozenset({_S.QUEUED, _S.FAILED, _S.CANCELLED}),
    _S.QUEUED: frozenset({_S.RUNNING, _S.CANCELLED, _S.FAILED}),
    # queued again: the worker was lost and the job is handed to another one.
    _S.RUNNING: frozenset({_S.SUCCEEDED, _S.FAILED, _S.CANCELLED, _S.PAUSED, _S.QUEUED}),
    _S.PAUSED: frozenset({_S.QUEUED, _S.CANCELLED}),
    _S.SUCCEEDED: frozenset(),
    _S.FAILED: frozenset(),
    _S.CANCELLED: frozenset(),
}


def apply_user_action(status: JobStatus, action: UserAction) -> UserActionOutcome:
    """Decide what a cancel, pause or resume does to a job in `status`.

    Raises IllegalTransition when the action makes no sense in that status.
    """
    outcome = _USER_ACTION_TABLE.get((action, JobStatus(status)))
    if outcome is None:
        raise IllegalTransition(f"Cannot {action} a job that is {JobStatus(status).value}.")
    return outcome


def allowed_user_actions(status: JobStatus) -> list[UserAction]:
    """The actions a user may take on a job in `status`, in a fixed order."""
    return [action for action in USER_ACTIONS if (action, JobStatus(status)) in _USER_ACTION_TABLE]


def can_advance(status: JobStatus, to: JobStatus) -> bool:
    return JobStatus(to) in _WORKER_TRANSITIONS[JobStatus(status)]


def advance(status: JobStatus, to: JobStatus) -> JobStatus:
    """Check a worker-driven change and return the new status, or raise IllegalTransition."""
    if not can_advance(status, to):
        raise IllegalTransition(
            f"Cannot move a job from {JobStatus(status).value} to {JobStatus(to).value}."
        )
    return JobStatus(to)


def validating_file_message(
    param: Literal["training_file", "validation_file"], file_id: str
) -> str:
    """'Validating training file: file-…' or 'Validating validation file: file-…'."""
    kind = "training" if param == "training_file" else "validation"
    return f"Validating {kind} file: {file_id}"


def transition_message(status: JobStatus, to: JobStatus, *, reason: str | None = None) -> str:
    """The event message for a worker-driven change from `status` to `to`.

    `reason` explains a failure. Raises IllegalTransition for a change `advance` would refuse.
    """
    status, to = JobStatus(status), advance(status, to)
    if to is JobStatus.FAILED:
        return f"The job failed: {reason}" if reason else "The job failed"
    if to is JobStatus.QUEUED:
        return {
            JobStatus.VALIDATING_FILES: FILES_VALIDATED_MESSAGE,
            JobStatus.PAUSED: RESUMED_MESSAGE,
            JobStatus.RUNNING: REQUEUED_MESSAGE,
        }[status]
    return {
        JobStatus.RUNNING: STARTED_MESSAGE,
        JobStatus.PAUSED: PAUSED_MESSAGE,
        JobStatus.CANCELLED: CANCELLED_MESSAGE,
        JobStatus.SUCCEEDED: SUCCEEDED_MESSAGE,
    }[to]


def event_level(to: JobStatus) -> Literal["info", "warn", "error"]:
    """The level of the event recorded when a job moves to `to`."""
    return "error" if JobStatus(to) is JobStatus.FAILED else "info"
