"""The light lane checks a new job's files without a lease and hands good ones to training."""

from __future__ import annotations

import json
import time
from pathlib import Path

import openai
import pytest

from app.jobs import repository
from app.jobs.states import JobStatus
from app.tables import File
from tests.api.jobfiles import BASE_MODEL, cancel_unfinished, rft_method, rft_rows, upload_rows
from tests.conftest import wait_for_job
from tests.jobs.database import JobDatabase
from worker.lease import take_lease
from worker.light import validate_job


def _break_training_file(db: JobDatabase) -> None:
    with db.sessions() as session:
        row = session.query(File).filter(File.id == db.training_file).one()
        path = db.settings.uploads_dir / row.storage_key
    lines = path.read_text().splitlines()
    lines[3] = "{not json"
    path.write_text("\n".join(lines) + "\n")


def test_good_files_queue_the_job_and_send_it_to_training(job_database: JobDatabase) -> None:
    db = job_database
    job_id = db.create_job()
    sent: list[str] = []
    validate_job(job_id, db.settings, sent.append)
    assert db.job(job_id).status == JobStatus.QUEUED.value
    assert sent == [job_id]
    validate_job(job_id, db.settings, sent.append)  # a duplicate message changes nothing
    assert sent == [job_id]


def test_a_bad_line_fails_the_job_naming_it(job_database: JobDatabase) -> None:
    db = job_database
    _break_training_file(db)
    job_id = db.create_job()
    sent: list[str] = []
    validate_job(job_id, db.settings, sent.append)
    job = db.job(job_id)
    assert job.status == JobStatus.FAILED.value and sent == []
    assert job.error["param"] == "training_file" and "Line 4" in job.error["message"]


def test_an_image_fails_the_job_naming_the_line_and_the_model(job_database: JobDatabase) -> None:
    db = job_database
    with db.sessions() as session:
        row = session.query(File).filter(File.id == db.training_file).one()
        path = db.settings.uploads_dir / row.storage_key
    lines = path.read_text().splitlines()
    line = json.loads(lines[1])
    image = {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
    line["messages"][-1]["content"] = [{"type": "text", "text": "What is this?"}, image]
    lines[1] = json.dumps(line)
    path.write_text("\n".join(lines) + "\n")
    job_id = db.create_job()
    validate_job(job_id, db.settings, lambda _: None)
    job = db.job(job_id)
    assert job.status == JobStatus.FAILED.value and job.error["param"] == "training_file"
    assert job.error["message"].startswith("Line 2: messages[0].content[1]: images are not")
    assert f"{BASE_MODEL} reads text only" in job.error["message"]


def test_a_response_format_that_cannot_be_enforced_fails_the_job_naming_why(
    job_database: JobDatabase,
) -> None:
    db = job_database
    method = rft_method()
    method["reinforcement"]["response_format"] = {
        "type": "json_schema",
        "json_schema": {"name": "zip", "strict": True,
                        "schema": {"type": "string", "format": "postcode"}},
    }  # fmt: skip
    job_id = db.create_job(method)
    sent: list[str] = []
    validate_job(job_id, db.settings, sent.append)
    job = db.job(job_id)
    assert job.status == JobStatus.FAILED.value and sent == []
    assert job.error["code"] == "invalid_response_format"
    assert job.error["param"] == "method.reinforcement.response_format"
    assert "Unknown format: postcode" in job.error["message"]


def test_a_job_a_worker_holds_or_a_user_moved_is_left_alone(job_database: JobDatabase) -> None:
    db = job_database
    held = db.create_job()
    assert take_lease(db.sessions, held, "worker-1", 30, 3) is not None
    cancelled = db.create_job()
    with db.sessions() as session:
        repository.act(session, cancelled, "cancel")
    sent: list[str] = []
    for job_id in (held, cancelled):
        validate_job(job_id, db.settings, sent.append)
    assert db.job(held).status == JobStatus.VALIDATING_FILES.value
    assert db.job(cancelled).status == JobStatus.CANCELLED.value
    assert sent == []


@pytest.mark.slow
def test_a_bad_file_fails_at_once_while_the_training_worker_is_busy(
    client: openai.OpenAI, tmp_path: Path
) -> None:
    # a job whose every sample waits 0.3 s keeps the one embedded training worker busy
    paced = {
        "type": "python",
        "name": "paced",
        "source": "import time\n\ndef grade(sample, item):\n    time.sleep(0.3)\n    return 0.5\n",
    }
    method = rft_method(n_epochs=4)
    method["reinforcement"]["grader"] = paced
    training = upload_rows(client, tmp_path, "train.jsonl", rft_rows(12))
    validation = upload_rows(client, tmp_path, "valid.jsonl", rft_rows(4))
    busy = client.fine_tuning.jobs.create(
        model=BASE_MODEL, training_file=training, validation_file=validation, method=method
    )
    try:
        wait_for_job(client, busy.id, {"running"}, timeout=120)
        bad_rows = [json.dumps(row) for row in rft_rows(12)]
        bad_rows[6] = "{not json"
        bad = upload_rows(client, tmp_path, "bad.jsonl", bad_rows)
        started = time.monotonic()
        job = client.fine_tuning.jobs.create(
            model=BASE_MODEL, training_file=bad, validation_file=validation, method=rft_method()
        )
        failed = wait_for_job(client, job.id, {"failed"}, timeout=60)
        seconds = time.monotonic() - started
        assert "Line 7" in failed.error.message
        # the light lane answered while the long job still held the training worker
        assert client.fine_tuning.jobs.retrieve(busy.id).status == "running", seconds
    finally:
        cancel_unfinished(client)
