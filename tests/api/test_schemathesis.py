"""Schemathesis against the live app with a valid key: no generated request gets a 5xx.

Runs the examples, coverage and fuzzing phases for OPENRFT_SCHEMATHESIS_SECONDS (90 by
default) on the embedded default; one worker, since the coverage phase of Hypothesis's lambda
descriptions is not thread-safe on Python 3.11.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.api.jobfiles import BASE_MODEL, rft_method, rft_rows, upload_rows
from tests.services import LiveService, live_service, service_env

SECONDS = int(os.environ.get("OPENRFT_SCHEMATHESIS_SECONDS", "90"))


@pytest.fixture(scope="module")
def app_service(
    tmp_path_factory: pytest.TempPathFactory, tiny_models_root: Path
) -> Iterator[LiveService]:
    data_dir = tmp_path_factory.mktemp("schemathesis") / "data"
    env = service_env(data_dir, "embedded", None, OPENRFT_MODEL_DIRS=str(tiny_models_root))
    with live_service(env, data_dir) as service:
        yield service


def _existing_ids(service: LiveService, folder: Path) -> dict[str, str]:
    """A file, a cancelled job and an upload, so that routes taking their ids get past 404."""
    client = openai.OpenAI(base_url=service.base_url, api_key=service.api_key, max_retries=0)
    training = upload_rows(client, folder, "train.jsonl", rft_rows(10))
    validation = upload_rows(client, folder, "valid.jsonl", rft_rows(2))
    job = client.fine_tuning.jobs.create(
        model=BASE_MODEL, training_file=training, validation_file=validation, method=rft_method()
    )
    client.fine_tuning.jobs.cancel(job.id)
    upload = client.uploads.create(
        bytes=10, filename="a.jsonl", mime_type="text/jsonl", purpose="fine-tune"
    )
    return {"file_id": training, "job_id": job.id, "upload_id": upload.id, "model_id": BASE_MODEL}


@pytest.mark.slow
def test_no_generated_request_gets_a_server_error(app_service: LiveService, tmp_path: Path) -> None:
    root = app_service.base_url.removesuffix("/v1")
    config = tmp_path / "schemathesis.toml"
    ids = _existing_ids(app_service, tmp_path)
    config.write_text(
        "[parameters]\n" + "".join(f'"path.{name}" = "{value}"\n' for name, value in ids.items())
    )
    command = [
        str(Path(sys.executable).with_name("schemathesis")), "--no-color",
        "--config-file", str(config), "run",
        f"{root}/openapi.json", "--url", root,
        "--header", f"Authorization: Bearer {app_service.api_key}",
        "--phases", "examples,coverage,fuzzing", "--checks", "not_a_server_error",
        "--max-time", str(SECONDS), "--request-timeout", "30", "--workers", "1",
    ]  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True, timeout=SECONDS + 120)
    report = run.stdout + run.stderr
    print(report[report.find("SUMMARY") :])  # shown with -s: what ran, and its warnings
    assert run.returncode == 0, report[-6000:]
    assert "Server error" not in report
    assert "passed" in report  # it generated and sent requests
