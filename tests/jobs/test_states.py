import itertools

import pytest

from app.jobs import (
    TERMINAL_STATUSES,
    IllegalTransition,
    JobStatus,
    advance,
    allowed_user_actions,
    apply_user_action,
    event_level,
    transition_message,
    validating_file_message,
)
from app.jobs.states import USER_ACTIONS

S = JobStatus

# Every legal user action, written out independently of the module's table.
LEGAL_USER_ACTIONS = {
    ("cancel", S.VALIDATING_FILES): (S.CANCELLED, False, False, False),
    ("cancel", S.QUEUED): (S.CANCELLED, False, False, False),
    ("cancel", S.PAUSED): (S.CANCELLED, False, False, False),
    ("cancel", S.RUNNING): (None, True, False, False),
    ("pause", S.VALIDATING_FILES): (S.PAUSED, False, False, False),
    ("pause", S.QUEUED): (S.PAUSED, False, False, False),
    ("pause", S.RUNNING): (None, False, True, False),
    ("resume", S.PAUSED): (S.QUEUED, False, False, True),
}

LEGAL_WORKER_MOVES = {
    (S.VALIDATING_FILES, S.QUEUED),
    (S.VALIDATING_FILES, S.FAILED),
    (S.VALIDATING_FILES, S.CANCELLED),
    (S.QUEUED, S.RUNNING),
    (S.QUEUED, S.CANCELLED),
    (S.QUEUED, S.FAILED),
    (S.RUNNING, S.SUCCEEDED),
    (S.RUNNING, S.FAILED),
    (S.RUNNING, S.CANCELLED),
    (S.RUNNING, S.PAUSED),
    (S.RUNNING, S.QUEUED),
    (S.PAUSED, S.QUEUED),
    (S.PAUSED, S.CANCELLED),
}


def test_status_values_are_the_wire_strings():
    assert [status.value for status in JobStatus] == [
        "validating_files",
        "queued",
        "running",
        "succeeded",
        "failed",
        "cancelled",
        "paused",
    ]
    assert TERMINAL_STATUSES == {S.SUCCEEDED, S.FAILED, S.CANCELLED}


@pytest.mark.parametrize(("action", "status"), list(LEGAL_USER_ACTIONS))
def test_legal_user_action(action, status):
    outcome = apply_user_action(status, action)
    new_status, cancel_requested, pause_requested, enqueue_worker = LEGAL_USER_ACTIONS[
        (action, status)
    ]
    assert outcome.new_status == new_status
    assert outcome.cancel_requested is cancel_requested
    assert outcome.pause_requested is pause_requested
    assert outcome.enqueue_worker is enqueue_worker
    assert outcome.event_message


ILLEGAL_USER_ACTIONS = [
    pair for pair in itertools.product(USER_ACTIONS, JobStatus) if pair not in LEGAL_USER_ACTIONS
]


@pytest.mark.parametrize(("action", "status"), ILLEGAL_USER_ACTIONS)
def test_illegal_user_action_names_action_and_status(action, status):
    with pytest.raises(IllegalTransition) as caught:
        apply_user_action(status, action)
    assert caught.value.message == f"Cannot {action} a job that is {status.value}."


def test_user_action_accepts_plain_status_strings():
    assert apply_user_action("queued", "cancel").new_status is S.CANCELLED


def test_cancel_and_pause_of_running_job_record_a_request_not_a_change():
    assert "next step" in apply_user_action(S.RUNNING, "cancel").event_message
    assert "pause" in apply_user_action(S.RUNNING, "pause").event_message.lower()


def test_allowed_user_actions():
    assert allowed_user_actions(S.RUNNING) == ["cancel", "pause"]
    assert allowed_user_actions(S.PAUSED) == ["cancel", "resume"]
    assert allowed_user_actions(S.SUCCEEDED) == []


@pytest.mark.parametrize(("status", "to"), sorted(LEGAL_WORKER_MOVES))
def test_legal_worker_move(status, to):
    assert advance(status, to) is to


ILLEGAL_WORKER_MOVES = [
    pair for pair in itertools.product(JobStatus, JobStatus) if pair not in LEGAL_WORKER_MOVES
]


@pytest.mark.parametrize(("status", "to"), ILLEGAL_WORKER_MOVES)
def test_illegal_worker_move(status, to):
    with pytest.raises(IllegalTransition, match=f"from {status.value} to {to.value}"):
        advance(status, to)


def test_terminal_statuses_have_no_way_out():
    for status, to in itertools.product(TERMINAL_STATUSES, JobStatus):
        with pytest.raises(IllegalTransition):
            advance(status, to)


@pytest.mark.parametrize(
    ("status", "to", "message"),
    [
        (S.VALIDATING_FILES, S.QUEUED, "Files validated, moving job to queued state"),
        (S.PAUSED, S.QUEUED, "Job resumed"),
        (
            S.RUNNING,
            S.QUEUED,
            "The worker running the job was lost, moving job back to queued state",
        ),
        (S.QUEUED, S.RUNNING, "Fine-tuning job started"),
        (S.RUNNING, S.PAUSED, "The job has been paused"),
        (S.RUNNING, S.CANCELLED, "Fine-tuning job cancelled"),
        (S.QUEUED, S.CANCELLED, "Fine-tuning job cancelled"),
        (S.RUNNING, S.SUCCEEDED, "The job has successfully completed"),
    ],
)
def test_transition_message(status, to, message):
    assert transition_message(status, to) == message


def test_every_legal_worker_move_has_a_message():
    for status, to in LEGAL_WORKER_MOVES:
        assert transition_message(status, to)


def test_failure_message_carries_the_reason():
    message = transition_message(S.VALIDATING_FILES, S.FAILED, reason="Line 3: invalid JSON.")
    assert message == "The job failed: Line 3: invalid JSON."
    assert transition_message(S.RUNNING, S.FAILED) == "The job failed"


def test_transition_message_refuses_illegal_moves():
    with pytest.raises(IllegalTransition):
        transition_message(S.SUCCEEDED, S.QUEUED)


def test_validating_file_message():
    assert validating_file_message("training_file", "file-a") == "Validating training file: file-a"
    assert validating_file_message("validation_file", "file-b") == (
        "Validating validation file: file-b"
    )


def test_event_level():
    assert event_level(S.FAILED) == "error"
    assert event_level(S.SUCCEEDED) == "info"
