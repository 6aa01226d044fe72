"""A job's samples through the real runner: the setting reaches the trainer's spec, and a new
attempt drops what an earlier one reported past the checkpoint it resumes from."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select

from app.jobs.service import act_on_job
from app.tables import JobSample
from tests.jobs.database import JobDatabase
from worker.runner import run_job
from worker.trainer.checkpoints import ADAPTER_FILE, STATE_FILE
from worker.trainer.spec import TrainResult


def _sample(completion: str) -> dict[str, Any]:
    return {
        "group": 0,
        "prompt": [{"role": "user", "content": "What is 1 + 1?"}],
        "reference": {"answer": "2"},
        "completion": completion,
        "reward": 1.0 if completion == "2" else 0.0,
        "sub_rewards": None,
    }


def _stored(db: JobDatabase, job_id: str) -> list[tuple[int, str, str]]:
    with db.sessions() as session:
        rows = session.scalars(
            select(JobSample).where(JobSample.job_id == job_id).order_by(JobSample.seq)
        ).all()
        return [(row.step, row.split, row.completion) for row in rows]


def test_a_new_attempt_drops_samples_reported_past_its_checkpoint(
    job_database: JobDatabase,
) -> None:
    db = job_database
    settings = db.settings.model_copy(update={"samples_per_step": 5})
    job_id = db.create_job()
    seen: dict[str, Any] = {}

    def first_attempt(spec, reporter, checkpoints) -> TrainResult:  # type: ignore[no-untyped-def]
        seen["samples_per_step"] = spec.samples_per_step
        reporter.on_samples(0, "validation", [_sample("baseline")])
        for step in (1, 2, 3):
            reporter.on_samples(step, "train", [_sample(f"first attempt, step {step}")])
            reporter.on_step(step, 3, f"Step {step}/3", {"step": step})
            if step == 1:
                staged = checkpoints.staging_dir("step-000001")
                (staged / ADAPTER_FILE).write_bytes(b"")
                state = {"step": 1, "metrics": {}, "score": None, "trained_tokens": 0}
                (staged / STATE_FILE).write_text(json.dumps(state))
                checkpoints.publish(1, staged)
        # the attempt stops here with steps 2 and 3 reported past its only checkpoint
        return TrainResult("paused", 3, 3, 0, checkpoints.list()[-1].path, None)

    def second_attempt(spec, reporter, checkpoints) -> TrainResult:  # type: ignore[no-untyped-def]
        seen["at_start"] = _stored(db, job_id)
        reporter.on_samples(2, "train", [_sample("2")])
        staged = checkpoints.staging_dir("final")
        (staged / "adapter_config.json").write_text("{}")
        return TrainResult("completed", 3, 3, 0, checkpoints.publish_final(staged), None)

    run_job(job_id, settings, db.send, train=first_attempt)
    assert db.job(job_id).status == "paused"
    assert seen["samples_per_step"] == 5
    with db.sessions() as session:
        act_on_job(session, db.project, job_id, "resume", db.send)
    run_job(job_id, settings, db.send, train=second_attempt)
    assert db.job(job_id).status == "succeeded"

    assert seen["at_start"] == [
        (0, "validation", "baseline"),
        (1, "train", "first attempt, step 1"),
    ]
    assert _stored(db, job_id) == [
        (0, "validation", "baseline"),
        (1, "train", "first attempt, step 1"),
        (2, "train", "2"),
    ]
