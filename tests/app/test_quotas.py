"""Per-project quotas through the SDK: jobs waiting or running at once, bytes of files stored."""

from __future__ import annotations

import json
from pathlib import Path

import openai
import pytest
from starlette.testclient import TestClient

from app.db import session_scope
from app.keys.service import create_key
from app.main import create_app
from app.migrate import upgrade
from app.settings import Settings
from tests.api.jobfiles import BASE_MODEL, rft_method, rft_rows


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    return _jsonl(tmp_path / "train.jsonl", rft_rows(10)), _jsonl(
        tmp_path / "valid.jsonl", rft_rows(4)
    )


def _clients(
    tmp_path: Path, tiny_models_root: Path, **quotas: int
) -> tuple[openai.OpenAI, openai.OpenAI]:
    # no worker runs here: created jobs stay validating_files, so they count as active
    settings = Settings(data_dir=tmp_path / "data", model_dirs=[tiny_models_root], **quotas)
    upgrade(settings)
    with session_scope(settings) as session:
        first, second = create_key(session, "a"), create_key(session, "b")
    http = TestClient(create_app(settings))
    return tuple(  # type: ignore[return-value]
        openai.OpenAI(base_url="http://testserver/v1", api_key=key, http_client=http, max_retries=0)
        for key in (first, second)
    )


def test_storage_quota_refuses_the_file_that_would_pass_it(
    tmp_path: Path, tiny_models_root: Path, files: tuple[Path, Path]
) -> None:
    train, valid = files
    quota = train.stat().st_size + valid.stat().st_size + 10
    client, other = _clients(tmp_path, tiny_models_root, max_stored_bytes_per_project=quota)
    client.files.create(file=train.open("rb"), purpose="fine-tune")
    client.files.create(file=valid.open("rb"), purpose="fine-tune")
    with pytest.raises(openai.BadRequestError) as refused:
        client.files.create(file=train.open("rb"), purpose="fine-tune")
    assert refused.value.code == "storage_quota_exceeded"
    assert f"storage quota of {quota} bytes" in refused.value.message
    assert len(client.files.list().data) == 2  # nothing half-stored
    with pytest.raises(openai.BadRequestError) as too_big:
        client.uploads.create(
            bytes=100, filename="more.jsonl", mime_type="application/jsonl", purpose="fine-tune"
        )
    assert too_big.value.code == "storage_quota_exceeded"
    # another project has its own quota
    other.files.create(file=train.open("rb"), purpose="fine-tune")


def test_active_jobs_quota_is_a_429_until_one_ends(
    tmp_path: Path, tiny_models_root: Path, files: tuple[Path, Path]
) -> None:
    client, other = _clients(tmp_path, tiny_models_root, max_active_jobs_per_project=1)
    train, valid = files

    def create(sdk: openai.OpenAI) -> str:
        t = sdk.files.create(file=train.open("rb"), purpose="fine-tune").id
        v = sdk.files.create(file=valid.open("rb"), purpose="fine-tune").id
        return sdk.fine_tuning.jobs.create(
            model=BASE_MODEL, training_file=t, validation_file=v, method=rft_method()
        ).id

    first = create(client)
    with pytest.raises(openai.RateLimitError) as refused:
        create(client)
    assert refused.value.code == "too_many_active_jobs"
    assert "the limit is 1" in refused.value.message
    assert len(client.fine_tuning.jobs.list().data) == 1
    create(other)  # the quota is per project
    client.fine_tuning.jobs.cancel(first)
    create(client)
