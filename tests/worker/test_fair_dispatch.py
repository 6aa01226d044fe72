"""Fair dispatch: one project's pile of queued jobs does not starve another project's one job.

The real runner on a real database drains the queue's messages in the order they were sent,
as a worker does; training is a stand-in that only records which job it was given.
"""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.orm import Session

from app.jobs.dispatch import fair_order
from app.jobs.states import JobStatus
from app.tables import Job, Project
from tests.jobs.database import JobDatabase
from worker.lease import take_fair_lease, take_lease
from worker.light import validate_job
from worker.runner import run_job
from worker.trainer.spec import TrainResult


def _queued(db: JobDatabase, job_id: str, training_queue: list[str] | None = None) -> str:
    """The light lane checks the job's files and sends it to `training_queue`."""
    validate_job(job_id, db.settings, (training_queue if training_queue is not None else []).append)
    assert db.job(job_id).status == JobStatus.QUEUED.value
    return job_id


def _recording_train(started: list[str]):  # type: ignore[no-untyped-def]
    def train(spec, reporter, checkpoints) -> TrainResult:  # type: ignore[no-untyped-def]
        started.append(spec.work_dir.name.split(".attempt-")[0])
        return TrainResult(
            status="cancelled", total_steps=1, steps_done=0,
            trained_tokens=0, adapter_dir=None, best_step=None,
        )  # fmt: skip

    return train


def _project_of(db: JobDatabase, project: Project, job_ids: list[str]) -> list[str]:
    return [job_id for job_id in job_ids if db.job(job_id).project_id == project.id]


def test_one_job_of_a_second_project_starts_before_the_pile_of_the_first(
    job_database: JobDatabase,
) -> None:
    db = job_database
    training_messages: list[str] = []
    pile = [_queued(db, db.create_job(), training_messages) for _ in range(8)]
    single = _queued(db, db.create_job_in("project-b"), training_messages)
    assert training_messages == [*pile, single]  # first in, first out: the single one last
    started: list[str] = []
    for job_id in training_messages:  # one worker takes the messages in order
        run_job(job_id, db.settings, db.send, train=_recording_train(started))
    assert started[:2] == [pile[0], single]
    assert sorted(started) == sorted([*pile, single])  # every job ran once, none lost
    assert _project_of(db, db.project, started) == pile  # each project in its own order


def test_a_project_with_jobs_running_waits_for_one_without(job_database: JobDatabase) -> None:
    db = job_database
    pile = [_queued(db, db.create_job()) for _ in range(4)]
    assert take_lease(db.sessions, pile[0], "worker-1", 30, 3) is not None
    single = _queued(db, db.create_job_in("project-b"))
    with db.sessions() as session:
        assert fair_order(session)[0] == single
    # a second worker, given a message of the first project, starts the other's job
    fence = take_fair_lease(db.sessions, pile[1], "worker-2", 30, 3)
    assert fence is not None and fence.job_id == single
    # nothing of the second project waits now: the next turn is the first project's again
    fence = take_fair_lease(db.sessions, pile[2], "worker-3", 30, 3)
    assert fence is not None and fence.job_id == pile[1]


def test_a_message_with_nothing_waiting_takes_nothing(job_database: JobDatabase) -> None:
    db = job_database
    job_id = _queued(db, db.create_job())
    assert take_fair_lease(db.sessions, job_id, "worker-1", 30, 3) is not None
    assert take_fair_lease(db.sessions, job_id, "worker-2", 30, 3) is None


def test_a_job_still_validating_runs_on_its_own_message(job_database: JobDatabase) -> None:
    # no light worker: the sweep sends the job to training, which checks its files itself
    db = job_database
    job_id = db.create_job()
    other_validating = db.create_job()
    fence = take_fair_lease(db.sessions, job_id, "worker-1", 30, 3)
    assert fence is not None and fence.job_id == job_id
    with db.sessions() as session:
        assert other_validating not in fair_order(session)  # its message is on the light lane
        assert _served(session, db.project) is not None


def test_a_validating_job_whose_turn_went_elsewhere_is_sent_again(
    job_database: JobDatabase,
) -> None:
    # the sweep sent a job still validating to training; a fairer queued job takes that turn
    db = job_database
    queued = _queued(db, db.create_job_in("project-b"))
    validating = db.create_job()
    with db.sessions.begin() as session:  # the default project was served just now
        session.get_one(Project, db.project.id).last_dispatched_at = 1e12
    db.sent.clear()
    started: list[str] = []
    run_job(validating, db.settings, db.send, train=_recording_train(started))
    assert started == [queued]
    assert db.sent.count(validating) == 1  # its turn is kept for it
    run_job(validating, db.settings, db.send, train=_recording_train(started))
    assert started == [queued, validating]


def _served(session: Session, project: Project) -> float | None:
    return session.get_one(Project, project.id).last_dispatched_at


def test_a_message_takes_only_jobs_placed_on_its_own_queue(job_database: JobDatabase) -> None:
    db = job_database
    small = _queued(db, db.create_job())
    large = _queued(db, db.create_job_in("project-b"))
    with db.sessions.begin() as session:  # placed where only a large worker takes from
        session.execute(update(Job).where(Job.id == large).values(queue="openrft.cuda.80"))
    # the other project is fairer, but its job waits on a queue this message did not come from
    fence = take_fair_lease(db.sessions, small, "worker-1", 30, 3)
    assert fence is not None and fence.job_id == small
    assert take_fair_lease(db.sessions, small, "worker-2", 30, 3) is None
    fence = take_fair_lease(db.sessions, large, "worker-3", 30, 3)
    assert fence is not None and fence.job_id == large
