"""The uploads API through the official SDK: a file sent in parts becomes a normal file."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.api.chunked import post_chunked_form
from tests.api.jobfiles import BASE_MODEL, cancel_unfinished, rft_method, rft_rows, upload_rows
from tests.conftest import make_client, wait_for_job
from tests.services import LiveService, live_service, service_env

JSONL = "application/jsonl"


def _stored_parts(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "files").rglob("part_*"))


def _jsonl(path: Path, rows: list[dict]) -> bytes:
    content = "".join(json.dumps(row) + "\n" for row in rows).encode()
    path.write_bytes(content)
    return content


def test_a_chunked_upload_becomes_a_file_a_job_trains_on(
    client: openai.OpenAI, service: LiveService, tmp_path: Path
) -> None:
    path = tmp_path / "train.jsonl"
    content = _jsonl(path, rft_rows(40))
    assert len(content) > 3 * 512
    upload = client.uploads.upload_file_chunked(
        file=path,
        mime_type=JSONL,
        purpose="fine-tune",
        part_size=512,
        md5=hashlib.md5(content).hexdigest(),
    )
    assert upload.object == "upload" and upload.id.startswith("upload_")
    assert (upload.status, upload.bytes, upload.filename) == ("completed", len(content), path.name)
    assert upload.expires_at > upload.created_at
    assert upload.file is not None and upload.file.id.startswith("file-")
    assert (upload.file.bytes, upload.file.purpose) == (len(content), "fine-tune")
    assert client.files.retrieve(upload.file.id).filename == "train.jsonl"
    assert client.files.content(upload.file.id).content == content
    # the parts are gone once they are the file
    assert _stored_parts(service.data_dir) == []

    validation = upload_rows(client, tmp_path, "valid.jsonl", rft_rows(4))
    job = client.fine_tuning.jobs.create(
        model=BASE_MODEL,
        training_file=upload.file.id,
        validation_file=validation,
        method=rft_method(),
    )
    try:
        job = wait_for_job(client, job.id, {"succeeded", "failed"}, timeout=240)
        assert job.status == "succeeded", job.error
    finally:
        cancel_unfinished(client)


def test_parts_are_joined_in_the_order_named(client: openai.OpenAI) -> None:
    upload = client.uploads.create(
        bytes=12, filename="order.jsonl", mime_type=JSONL, purpose="fine-tune"
    )
    assert upload.status == "pending"
    first = client.uploads.parts.create(upload_id=upload.id, data=b'{"a": 1}\n')
    second = client.uploads.parts.create(upload_id=upload.id, data=b"{}\n")
    assert (first.object, first.upload_id) == ("upload.part", upload.id)
    assert first.id.startswith("part_")
    done = client.uploads.complete(upload_id=upload.id, part_ids=[second.id, first.id])
    assert done.file is not None
    assert client.files.content(done.file.id).content == b'{}\n{"a": 1}\n'


def test_an_md5_mismatch_stores_nothing_and_the_upload_can_be_completed_again(
    client: openai.OpenAI, service: LiveService
) -> None:
    data = b'{"x": 1}\n' * 3
    upload = client.uploads.create(
        bytes=len(data), filename="md5.jsonl", mime_type=JSONL, purpose="fine-tune"
    )
    part = client.uploads.parts.create(upload_id=upload.id, data=data)
    files_before = [file.id for file in client.files.list()]
    with pytest.raises(openai.BadRequestError) as raised:
        client.uploads.complete(upload_id=upload.id, part_ids=[part.id], md5="0" * 32)
    assert (raised.value.param, raised.value.code) == ("md5", "md5_mismatch")
    assert [file.id for file in client.files.list()] == files_before
    stored = [path for path in (service.data_dir / "files").rglob("*") if path.is_file()]
    assert not [path for path in stored if path.name.startswith(".upload-")]
    with pytest.raises(openai.BadRequestError) as raised:
        client.uploads.complete(upload_id=upload.id, part_ids=[part.id], md5="not-hex")
    assert raised.value.param == "md5"

    done = client.uploads.complete(
        upload_id=upload.id, part_ids=[part.id], md5=hashlib.md5(data).hexdigest()
    )
    assert done.status == "completed" and done.file is not None
    with pytest.raises(openai.BadRequestError, match="already completed"):
        client.uploads.complete(upload_id=upload.id, part_ids=[part.id])


def test_cancel_removes_the_parts_and_closes_the_upload(
    client: openai.OpenAI, service: LiveService
) -> None:
    upload = client.uploads.create(
        bytes=100, filename="cancel.jsonl", mime_type=JSONL, purpose="fine-tune"
    )
    part = client.uploads.parts.create(upload_id=upload.id, data=b"{}\n")
    assert [path.name for path in _stored_parts(service.data_dir)] == [part.id]
    cancelled = client.uploads.cancel(upload.id)
    assert (cancelled.id, cancelled.status, cancelled.file) == (upload.id, "cancelled", None)
    assert _stored_parts(service.data_dir) == []
    with pytest.raises(openai.BadRequestError, match="was cancelled") as raised:
        client.uploads.parts.create(upload_id=upload.id, data=b"{}\n")
    assert raised.value.code == "upload_not_pending"
    with pytest.raises(openai.BadRequestError, match="was cancelled"):
        client.uploads.complete(upload_id=upload.id, part_ids=[part.id])
    with pytest.raises(openai.BadRequestError, match="was cancelled"):
        client.uploads.cancel(upload.id)


def test_bad_part_ids_are_400s_naming_part_ids(
    client: openai.OpenAI, other_client: openai.OpenAI
) -> None:
    upload = client.uploads.create(
        bytes=6, filename="parts.jsonl", mime_type=JSONL, purpose="fine-tune"
    )
    other = client.uploads.create(
        bytes=3, filename="other.jsonl", mime_type=JSONL, purpose="fine-tune"
    )
    first = client.uploads.parts.create(upload_id=upload.id, data=b"{}\n")
    second = client.uploads.parts.create(upload_id=upload.id, data=b"{}\n")
    foreign = client.uploads.parts.create(upload_id=other.id, data=b"{}\n")
    cases = {
        "has no part 'part_nope'": [first.id, "part_nope"],
        f"has no part '{foreign.id}'": [first.id, foreign.id],
        "more than once": [first.id, first.id],
        "hold 3 bytes": [first.id],
        "at least one part": [],
    }
    for message, part_ids in cases.items():
        with pytest.raises(openai.BadRequestError, match=message) as raised:
            client.uploads.complete(upload_id=upload.id, part_ids=part_ids)
        assert raised.value.param == "part_ids"
    # parts may not add up to more than the declared size
    with pytest.raises(openai.BadRequestError, match="more than the 6 bytes") as raised:
        client.uploads.parts.create(upload_id=upload.id, data=b"{}\n")
    assert raised.value.param == "data"
    # another project's upload does not exist for the caller
    with pytest.raises(openai.NotFoundError):
        other_client.uploads.parts.create(upload_id=upload.id, data=b"{}\n")
    with pytest.raises(openai.NotFoundError):
        other_client.uploads.complete(upload_id=upload.id, part_ids=[first.id, second.id])
    with pytest.raises(openai.NotFoundError):
        other_client.uploads.cancel(upload.id)
    done = client.uploads.complete(upload_id=upload.id, part_ids=[first.id, second.id])
    assert done.status == "completed"


def test_create_checks_like_a_direct_upload(client: openai.OpenAI) -> None:
    cases = [
        ({"filename": "data.csv"}, "file", "invalid_file_format"),
        ({"purpose": "nonsense"}, "purpose", None),
        ({"bytes": 0}, "bytes", None),
        ({"bytes": 9 * 1024**3}, "bytes", "file_too_large"),
        ({"mime_type": "jsonl"}, "mime_type", None),
        ({"filename": "x" * 600 + ".jsonl"}, "file", "invalid_file_name"),
    ]
    for change, param, code in cases:
        request = {"bytes": 10, "filename": "a.jsonl", "mime_type": JSONL, "purpose": "fine-tune"}
        with pytest.raises(openai.BadRequestError) as raised:
            client.uploads.create(**{**request, **change})  # type: ignore[arg-type]
        assert (raised.value.param, raised.value.code) == (param, code), change


def test_a_file_name_that_is_not_utf8_is_a_400(client: openai.OpenAI) -> None:
    # a lone surrogate is valid JSON but no UTF-8 (the SDK refuses to send it, so by hand)
    body = (
        '{"bytes": 10, "filename": "\\ud800name.jsonl", "mime_type": "%s", "purpose": "fine-tune"}'
    )
    answer = httpx.post(
        f"{client.base_url}uploads",
        content=(body % JSONL).encode(),
        headers={"Authorization": f"Bearer {client.api_key}", "Content-Type": "application/json"},
    )
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert (error["param"], error["code"]) == ("file", "invalid_file_name")


def test_expires_after_is_passed_to_the_file(client: openai.OpenAI) -> None:
    upload = client.uploads.create(
        bytes=3,
        filename="expiring.jsonl",
        mime_type=JSONL,
        purpose="fine-tune",
        expires_after={"anchor": "created_at", "seconds": 7200},
    )
    part = client.uploads.parts.create(upload_id=upload.id, data=b"{}\n")
    done = client.uploads.complete(upload_id=upload.id, part_ids=[part.id])
    assert done.file is not None and done.file.expires_at == done.file.created_at + 7200
    with pytest.raises(openai.BadRequestError) as raised:
        client.uploads.create(
            bytes=3,
            filename="expiring.jsonl",
            mime_type=JSONL,
            purpose="fine-tune",
            expires_after={"anchor": "created_at", "seconds": 60},
        )
    assert raised.value.param == "expires_after.seconds"


@pytest.fixture(scope="module")
def short_lived(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    """The API alone (no worker, so no sweep) with 1 s uploads and 64-byte parts."""
    data_dir = tmp_path_factory.mktemp("short-uploads") / "data"
    env = service_env(
        data_dir,
        "embedded",
        None,
        OPENRFT_UPLOAD_EXPIRY_SECONDS="1",
        OPENRFT_UPLOAD_PART_MAX_BYTES="64",
    )
    with live_service(env, data_dir, command="api") as service:
        yield service


def test_a_part_over_the_limit_is_refused_and_not_stored(short_lived: LiveService) -> None:
    client = make_client(short_lived)
    upload = client.uploads.create(
        bytes=1000, filename="big.jsonl", mime_type=JSONL, purpose="fine-tune"
    )
    with pytest.raises(openai.BadRequestError) as raised:
        client.uploads.parts.create(upload_id=upload.id, data=b"x" * 65)
    assert (raised.value.param, raised.value.code) == ("data", "part_too_large")
    assert [p for p in (short_lived.data_dir / "files").rglob("*") if p.is_file()] == []

    chunked = post_chunked_form(
        short_lived.base_url, f"/uploads/{upload.id}/parts", short_lived.api_key, {}, "data",
        file_bytes=8 * 1024 * 1024,
    )  # fmt: skip
    assert chunked.status == 400
    assert (chunked.error["param"], chunked.error["code"]) == ("data", "part_too_large")
    assert chunked.body_bytes_sent < 1024 * 1024
    assert [p for p in (short_lived.data_dir / "files").rglob("*") if p.is_file()] == []


def test_an_expired_upload_is_closed_on_access(short_lived: LiveService) -> None:
    client = make_client(short_lived)
    upload = client.uploads.create(
        bytes=6, filename="slow.jsonl", mime_type=JSONL, purpose="fine-tune"
    )
    assert upload.expires_at == upload.created_at + 1
    part = client.uploads.parts.create(upload_id=upload.id, data=b"{}\n")
    time.sleep(2.1)
    with pytest.raises(openai.BadRequestError, match="has expired"):
        client.uploads.parts.create(upload_id=upload.id, data=b"{}\n")
    assert part.id not in [path.name for path in _stored_parts(short_lived.data_dir)]
    with pytest.raises(openai.BadRequestError, match="has expired"):
        client.uploads.complete(upload_id=upload.id, part_ids=[part.id])


def test_the_sweep_expires_uploads_nobody_touches(short_lived: LiveService) -> None:
    from app.db import session_factory
    from app.settings import Settings
    from worker.sweeper import sweep

    client = make_client(short_lived)
    upload = client.uploads.create(
        bytes=6, filename="left.jsonl", mime_type=JSONL, purpose="fine-tune"
    )
    part = client.uploads.parts.create(upload_id=upload.id, data=b"{}\n")
    assert part.id in [path.name for path in _stored_parts(short_lived.data_dir)]
    time.sleep(2.1)
    settings = Settings(data_dir=short_lived.data_dir)
    report = sweep(session_factory(settings), settings, send=lambda _job_id: None)
    assert upload.id in report.expired_uploads
    assert part.id not in [path.name for path in _stored_parts(short_lived.data_dir)]
    with pytest.raises(openai.BadRequestError, match="has expired"):
        client.uploads.cancel(upload.id)
