"""Fine-tuning jobs through the official SDK: create checks, validation, actions, lists."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.api.jobfiles import (
    BASE_MODEL,
    cancel_unfinished,
    rft_method,
    rft_rows,
    sft_rows,
    upload_rows,
)
from tests.conftest import wait_for_job

VALIDATED = {"queued", "running", "succeeded"}


@pytest.fixture(autouse=True)
def _free_worker(client: openai.OpenAI) -> Iterator[None]:
    yield
    cancel_unfinished(client)


@pytest.fixture
def rft_files(client: openai.OpenAI, tmp_path: Path) -> tuple[str, str]:
    return (
        upload_rows(client, tmp_path, "train.jsonl", rft_rows(12)),
        upload_rows(client, tmp_path, "valid.jsonl", rft_rows(4)),
    )


def test_rft_job_validates_files_then_starts(
    client: openai.OpenAI, rft_files: tuple[str, str]
) -> None:
    training, validation = rft_files
    job = client.fine_tuning.jobs.create(
        model=BASE_MODEL,
        training_file=training,
        validation_file=validation,
        method=rft_method(batch_size=4),
        suffix="adder",
        seed=7,
        metadata={"team": "math"},
    )
    assert job.id.startswith("ftjob-") and job.status == "validating_files"
    assert (job.seed, job.user_provided_suffix, job.metadata) == (7, "adder", {"team": "math"})
    assert job.method.type == "reinforcement"
    hyperparameters = job.method.reinforcement.hyperparameters
    assert hyperparameters.batch_size == 4 and hyperparameters.eval_interval == "auto"
    assert job.method.reinforcement.grader.name == "exact"

    job = wait_for_job(client, job.id, VALIDATED)
    assert job.error is None
    messages = [event.message for event in client.fine_tuning.jobs.list_events(job.id, limit=50)]
    oldest = messages[::-1]
    assert oldest[:3] == [
        "Created fine-tuning job",
        f"Validating training file: {training}",
        f"Validating validation file: {validation}",
    ]
    assert oldest[3].startswith("Estimated memory: ")  # where the job was placed, and why
    assert oldest[4] == "Files validated, moving job to queued state"


def test_supervised_job_with_deprecated_hyperparameters(
    client: openai.OpenAI, tmp_path: Path
) -> None:
    training = upload_rows(client, tmp_path, "sft.jsonl", sft_rows(10))
    job = client.fine_tuning.jobs.create(
        model=BASE_MODEL, training_file=training, hyperparameters={"n_epochs": 2}
    )
    assert job.method.type == "supervised"
    assert job.method.supervised.hyperparameters.n_epochs == 2
    assert job.hyperparameters.n_epochs == 2 and job.hyperparameters.batch_size == "auto"
    assert 0 <= job.seed <= 2**31 - 1  # none was given: the server drew one


def _create_error(client: openai.OpenAI, **overrides: object) -> openai.BadRequestError:
    with pytest.raises(openai.BadRequestError) as raised:
        client.fine_tuning.jobs.create(**overrides)  # type: ignore[arg-type]
    return raised.value


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"model": "no-such-model"}, "model"),
        ({"training_file": "file-missing"}, "training_file"),
        ({"validation_file": "file-missing"}, "validation_file"),
        ({"validation_file": None}, "validation_file"),
        ({"method": rft_method(batch_size=0)}, "method.reinforcement.hyperparameters.batch_size"),
        ({"method": rft_method(n_epochs=51)}, "method.reinforcement.hyperparameters.n_epochs"),
        (
            {"method": rft_method(reasoning_effort="auto")},
            "method.reinforcement.hyperparameters.reasoning_effort",
        ),
        (
            {"method": rft_method(compute_multiplier=11)},
            "method.reinforcement.hyperparameters.compute_multiplier",
        ),
        ({"method": {"type": "reinforcement", "reinforcement": {}}}, "method.reinforcement.grader"),
        ({"suffix": "x" * 65}, "suffix"),
        ({"seed": -1}, "seed"),
        ({"metadata": {f"k{n}": "v" for n in range(17)}}, "metadata"),
    ],
)
def test_create_rejects_bad_parameters_naming_the_field(
    client: openai.OpenAI, rft_files: tuple[str, str], change: dict, param: str
) -> None:
    training, validation = rft_files
    request = {
        "model": BASE_MODEL,
        "training_file": training,
        "validation_file": validation,
        "method": rft_method(),
        **change,
    }
    error = _create_error(client, **request)
    assert error.param == param, error.message
    assert error.type == "invalid_request_error"


def test_create_rejects_a_malformed_grader_with_its_path(
    client: openai.OpenAI, rft_files: tuple[str, str]
) -> None:
    training, validation = rft_files
    grader = {"type": "string_check", "name": "g", "input": "{{ sample.output_text }}",
              "reference": "x", "operation": "contains"}  # fmt: skip
    method = {"type": "reinforcement", "reinforcement": {"grader": grader}}
    error = _create_error(
        client, model=BASE_MODEL, training_file=training, validation_file=validation, method=method
    )
    assert error.param == "method.reinforcement.grader.operation"


def test_create_rejects_a_file_with_another_purpose(client: openai.OpenAI, tmp_path: Path) -> None:
    path = tmp_path / "batch.jsonl"
    path.write_text("{}\n")
    batch_file = client.files.create(file=path.open("rb"), purpose="batch").id
    error = _create_error(client, model=BASE_MODEL, training_file=batch_file)
    assert error.param == "training_file"


def test_create_rejects_unknown_arguments(
    client: openai.OpenAI, rft_files: tuple[str, str]
) -> None:
    error = _create_error(
        client, model=BASE_MODEL, training_file=rft_files[0], extra_body={"colour": "blue"}
    )
    assert error.param == "colour"


@pytest.mark.parametrize(
    ("role", "rows", "line", "words"),
    [
        ("training_file", rft_rows(3) + ["{not json"] + rft_rows(8), 4, "JSON"),
        ("training_file", rft_rows(5), None, "10"),
        ("training_file", rft_rows(6) + [{"answer": "1"}] + rft_rows(6), 7, "messages"),
        (
            "training_file",
            rft_rows(1)
            + [
                {
                    "messages": [
                        {"role": "user", "content": "q"},
                        {"role": "assistant", "content": "a"},
                    ]
                }
            ]
            + rft_rows(9),
            2,
            "user",
        ),
        (
            "validation_file",
            rft_rows(1)
            + [
                {"messages": [{"role": "system", "content": "x"}, {"role": "user", "content": "q"}]}
            ],
            2,
            "system",
        ),
    ],
)
def test_bad_file_fails_the_job_naming_the_line(
    client: openai.OpenAI, tmp_path: Path, role: str, rows: list, line: int | None, words: str
) -> None:
    good_training = rft_rows(12)
    training = upload_rows(
        client, tmp_path, "t.jsonl", rows if role == "training_file" else good_training
    )
    validation = upload_rows(
        client, tmp_path, "v.jsonl", rows if role == "validation_file" else rft_rows(3)
    )
    job = client.fine_tuning.jobs.create(
        model=BASE_MODEL, training_file=training, validation_file=validation, method=rft_method()
    )
    job = wait_for_job(client, job.id, {"failed"}, timeout=120)
    assert job.error is not None and job.error.param == role
    assert words in job.error.message
    if line is not None:
        assert f"Line {line}" in job.error.message
    assert job.finished_at is not None and job.finished_at >= job.created_at
    [newest] = client.fine_tuning.jobs.list_events(job.id, limit=1).data
    assert (newest.level, newest.message) == ("error", f"The job failed: {job.error.message}")


def test_cancel_during_validation_takes_effect_at_once(
    client: openai.OpenAI, rft_files: tuple[str, str]
) -> None:
    training, validation = rft_files
    job = client.fine_tuning.jobs.create(
        model=BASE_MODEL, training_file=training, validation_file=validation, method=rft_method()
    )
    assert client.fine_tuning.jobs.cancel(job.id).status == "cancelled"
    # the worker finds a cancelled job and leaves it so
    wait_for_job(client, job.id, {"cancelled"})
    assert client.fine_tuning.jobs.retrieve(job.id).status == "cancelled"


def test_list_jobs_pages_and_filters_by_metadata(client: openai.OpenAI, tmp_path: Path) -> None:
    training = upload_rows(client, tmp_path, "sft.jsonl", sft_rows(10))
    created = [
        client.fine_tuning.jobs.create(
            model=BASE_MODEL, training_file=training, metadata={"batch": "pages", "n": str(n)}
        ).id
        for n in range(3)
    ]
    first = client.fine_tuning.jobs.list(limit=2)
    assert first.has_more and [job.id for job in first.data] == created[::-1][:2]
    listed = [job.id for job in client.fine_tuning.jobs.list(limit=2)]
    assert listed[:3] == created[::-1]

    filtered = client.fine_tuning.jobs.list(metadata={"batch": "pages", "n": "1"})
    assert [job.id for job in filtered.data] == [created[1]]
    assert client.fine_tuning.jobs.list(metadata={"batch": "nothing"}).data == []


def test_events_page_newest_first(client: openai.OpenAI, rft_files: tuple[str, str]) -> None:
    training, validation = rft_files
    job = client.fine_tuning.jobs.create(
        model=BASE_MODEL, training_file=training, validation_file=validation, method=rft_method()
    )
    client.fine_tuning.jobs.cancel(job.id)
    everything = client.fine_tuning.jobs.list_events(job.id, limit=100).data
    # the creation's four events (the memory estimate last), then the cancel's and whatever the
    # worker did before it
    assert len(everything) >= 4
    assert [event.message for event in everything[-3:]] == [
        f"Validating validation file: {validation}",
        f"Validating training file: {training}",
        "Created fine-tuning job",
    ]
    first = client.fine_tuning.jobs.list_events(job.id, limit=2)
    assert first.has_more and [e.id for e in first.data] == [e.id for e in everything[:2]]
    paged = [event.id for event in client.fine_tuning.jobs.list_events(job.id, limit=2)]
    assert paged == [event.id for event in everything]
    assert all(event.object == "fine_tuning.job.event" for event in everything)
    assert [event.created_at for event in everything] == sorted(
        (e.created_at for e in everything), reverse=True
    )
    checkpoints = client.fine_tuning.jobs.checkpoints.list(job.id)
    assert checkpoints.data == [] and checkpoints.has_more is False


def test_unknown_job_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.fine_tuning.jobs.retrieve("ftjob-nope")
    with pytest.raises(openai.NotFoundError):
        client.fine_tuning.jobs.cancel("ftjob-nope")
