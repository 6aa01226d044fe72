"""The service on an S3-compatible store: uploads and result files live in the bucket only."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.api.jobfiles import BASE_MODEL, rft_method, rft_rows, upload_rows
from tests.conftest import wait_for_job
from tests.s3 import S3Server
from tests.services import LiveService, live_service, service_env


@pytest.fixture(scope="module")
def s3_service(
    s3: S3Server, tmp_path_factory: pytest.TempPathFactory, tiny_models_root: Path
) -> Iterator[tuple[LiveService, str]]:
    bucket = s3.new_bucket()
    data_dir = tmp_path_factory.mktemp("s3-service") / "data"
    env = service_env(
        data_dir, "embedded", None,
        OPENRFT_MODEL_DIRS=str(tiny_models_root),
        OPENRFT_STORAGE_URL=f"s3://{bucket}/deploy-{secrets.token_hex(3)}",
        **s3.env,
    )  # fmt: skip
    with live_service(env, data_dir) as service:
        yield service, bucket


@pytest.mark.slow
def test_job_reads_its_files_from_the_bucket_and_stores_results_there(
    s3: S3Server, s3_service: tuple[LiveService, str], tmp_path: Path
) -> None:
    service, bucket = s3_service
    client = openai.OpenAI(base_url=service.base_url, api_key=service.api_key, max_retries=0)
    training = upload_rows(client, tmp_path, "train.jsonl", rft_rows(10))
    keys = [item["Key"] for item in s3.client().list_objects_v2(Bucket=bucket)["Contents"]]
    assert len(keys) == 1 and keys[0].endswith(f"/uploads/{_project_key(keys[0])}/{training}")
    assert not (service.data_dir / "uploads").exists() or not any(
        (service.data_dir / "uploads").rglob(training)
    )
    assert client.files.content(training).read().count(b"\n") == 10

    validation = upload_rows(client, tmp_path, "valid.jsonl", rft_rows(4))
    job = client.fine_tuning.jobs.create(
        model=BASE_MODEL, training_file=training, validation_file=validation, method=rft_method()
    )
    done = wait_for_job(client, job.id, {"succeeded", "failed"}, timeout=240)
    assert done.status == "succeeded", done.error
    (result_id,) = done.result_files
    csv = client.files.content(result_id).read().decode()
    assert csv.startswith("step,") and len(csv.splitlines()) > 1
    keys = [item["Key"] for item in s3.client().list_objects_v2(Bucket=bucket)["Contents"]]
    assert any(key.endswith(f"/{result_id}") for key in keys)


def _project_key(key: str) -> str:
    return key.split("/uploads/")[1].split("/")[0]
