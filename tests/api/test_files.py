"""The files API through the official SDK against a live server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.api.chunked import post_chunked_form
from tests.conftest import make_client
from tests.services import LiveService, live_service, service_env


def test_file_lifecycle(client: openai.OpenAI, tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    content = b'{"messages": [{"role": "user", "content": "hi"}]}\n' * 3
    path.write_bytes(content)

    created = client.files.create(file=path.open("rb"), purpose="fine-tune")
    assert created.id.startswith("file-")
    assert (created.object, created.status, created.purpose) == ("file", "processed", "fine-tune")
    assert created.bytes == len(content) and created.filename == "train.jsonl"

    assert client.files.retrieve(created.id).model_dump() == created.model_dump()
    assert client.files.content(created.id).content == content
    assert created.id in [row.id for row in client.files.list(purpose="fine-tune")]

    deleted = client.files.delete(created.id)
    assert (deleted.id, deleted.deleted) == (created.id, True)
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        client.files.content(created.id)


def test_wait_for_processing_returns_at_once(client: openai.OpenAI, tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("anything")
    created = client.files.create(file=path.open("rb"), purpose="user_data")
    assert (
        client.files.wait_for_processing(created.id, poll_interval=0.1, max_wait_seconds=2).status
        == "processed"
    )


def test_list_pages_in_both_orders(client: openai.OpenAI, tmp_path: Path) -> None:
    ids = []
    for index in range(5):
        path = tmp_path / f"page-{index}.txt"
        path.write_text(str(index))
        ids.append(client.files.create(file=path.open("rb"), purpose="batch").id)

    first = client.files.list(purpose="batch", limit=2, order="asc")
    assert first.has_more and len(first.data) == 2
    ascending = [row.id for row in client.files.list(purpose="batch", limit=2, order="asc")]
    assert ascending[-5:] == ids  # auto-pagination follows `after` across pages
    descending = [row.id for row in client.files.list(purpose="batch", limit=2, order="desc")]
    assert descending[:5] == ids[::-1]


def test_expires_after_is_recorded(client: openai.OpenAI, tmp_path: Path) -> None:
    path = tmp_path / "expiring.jsonl"
    path.write_text("{}\n")
    created = client.files.create(
        file=path.open("rb"),
        purpose="batch",
        expires_after={"anchor": "created_at", "seconds": 3600},
    )
    assert created.expires_at == created.created_at + 3600


@pytest.mark.parametrize(
    ("purpose", "name", "param"),
    [("fine-tune", "train.csv", "file"), ("nonsense", "a.jsonl", "purpose")],
)
def test_bad_upload_names_the_field(
    client: openai.OpenAI, tmp_path: Path, purpose: str, name: str, param: str
) -> None:
    path = tmp_path / name
    path.write_text("{}\n")
    with pytest.raises(openai.BadRequestError) as raised:
        client.files.create(file=path.open("rb"), purpose=purpose)  # type: ignore[arg-type]
    assert raised.value.param == param
    assert raised.value.request_id


@pytest.fixture(scope="module")
def small_limit_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    data_dir = tmp_path_factory.mktemp("small-limit") / "data"
    env = service_env(data_dir, "embedded", None, OPENRFT_MAX_UPLOAD_BYTES="1024")
    with live_service(env, data_dir) as service:
        yield service


def test_upload_over_the_limit_is_rejected_and_nothing_stored(
    small_limit_service: LiveService, tmp_path: Path
) -> None:
    client = make_client(small_limit_service)
    path = tmp_path / "big.jsonl"
    path.write_bytes(b"x" * 4096)
    with pytest.raises(openai.BadRequestError) as raised:
        client.files.create(file=path.open("rb"), purpose="fine-tune")
    assert (raised.value.param, raised.value.code) == ("file", "file_too_large")
    assert list(client.files.list()) == []
    uploads = small_limit_service.data_dir / "files"
    assert not uploads.exists() or not [p for p in uploads.rglob("*") if p.is_file()]

    path.write_bytes(b"x" * 1000)
    assert client.files.create(file=path.open("rb"), purpose="fine-tune").bytes == 1000


def test_a_chunked_upload_over_the_limit_is_refused_while_it_streams(
    small_limit_service: LiveService,
) -> None:
    """No Content-Length to check up front: the server must stop reading once the bytes that
    arrived pass the limit (1 kB here, plus the form's framing), not spool the whole body."""
    client = make_client(small_limit_service)
    before = [row.id for row in client.files.list()]
    answer = post_chunked_form(
        small_limit_service.base_url, "/files", small_limit_service.api_key,
        {"purpose": "fine-tune"}, "file", file_bytes=8 * 1024 * 1024,
    )  # fmt: skip
    assert answer.status == 400
    assert (answer.error["param"], answer.error["code"]) == ("file", "file_too_large")
    assert "1024 bytes" in answer.error["message"]
    # refused after about the limit and its framing (64 kB), with most of the 8 MB unsent
    assert answer.body_bytes_sent < 1024 * 1024
    assert [row.id for row in client.files.list()] == before


@pytest.mark.parametrize(
    ("filename", "content", "code"),
    [
        ("x" * 600 + ".jsonl", b"{}\n", "invalid_file_name"),
        ("tab\there.jsonl", b"{}\n", "invalid_file_name"),
        ("\udcff\udcfename.jsonl", b"{}\n", "invalid_file_name"),  # bytes that are not UTF-8
        ("empty.jsonl", b"", "empty_file"),
    ],
)
def test_bad_names_and_empty_files_are_400s_and_store_nothing(
    client: openai.OpenAI, filename: str, content: bytes, code: str
) -> None:
    before = [f.id for f in client.files.list()]
    boundary = "b0undary"
    # built by hand: a client library would encode or refuse the name before it is sent
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nfine-tune\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="'.encode()
        + filename.encode("utf-8", "surrogateescape")
        + b'"\r\nContent-Type: application/octet-stream\r\n\r\n'
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    answer = httpx.post(
        f"{client.base_url}files",
        content=body,
        headers={
            "Authorization": f"Bearer {client.api_key}",
            "Content-Type": f"multipart/form-data; boundary={boundary}",
        },
    )
    assert answer.status_code == 400, answer.text
    assert (answer.json()["error"]["param"], answer.json()["error"]["code"]) == ("file", code)
    assert [f.id for f in client.files.list()] == before
