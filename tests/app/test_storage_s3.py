"""S3Storage against a real S3-compatible server: whole objects or none, streamed both ways."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator

import pytest

from app.settings import Settings
from app.storage import LocalStorage, TooLarge, storage_from_settings
from app.storage_s3 import S3Storage, parse_s3_url
from tests.s3 import S3Server

MIB = 1024 * 1024
PART = 5 * MIB  # the smallest part S3 allows


@pytest.fixture
def storage(s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Storage:
    for key, value in s3.env.items():
        monkeypatch.setenv(key, value)
    return S3Storage(s3.new_bucket(), "tenant/uploads", part_size=PART)


def _stream(total: int, chunk: int = MIB) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        size = min(chunk, total - sent)
        yield os.urandom(size)
        sent += size


def _objects(storage: S3Storage) -> list[str]:
    listed = storage.client.list_objects_v2(Bucket=storage.bucket)
    return [item["Key"] for item in listed.get("Contents", [])]


def test_small_object_round_trip_and_lines(storage: S3Storage) -> None:
    content = b'{"a": 1}\n{"a": 2}\n'
    assert storage.write("p/file-1", [content[:5], content[5:]], max_bytes=100) == len(content)
    assert _objects(storage) == ["tenant/uploads/p/file-1"]
    with storage.open("p/file-1") as lines:
        assert list(lines) == [b'{"a": 1}\n', b'{"a": 2}\n']
    assert b"".join(storage.iter_bytes("p/file-1", chunk_size=3)) == content
    storage.delete("p/file-1")
    assert _objects(storage) == []


def test_large_object_goes_up_in_parts_and_comes_back_whole(storage: S3Storage) -> None:
    digest = hashlib.sha256()

    def chunks() -> Iterator[bytes]:
        for chunk in _stream(2 * PART + 123):
            digest.update(chunk)
            yield chunk

    assert storage.write("big", chunks(), max_bytes=20 * MIB) == 2 * PART + 123
    head = storage.client.head_object(Bucket=storage.bucket, Key="tenant/uploads/big")
    assert head["ETag"].strip('"').endswith("-3")  # three parts
    back = hashlib.sha256()
    for chunk in storage.iter_bytes("big"):
        back.update(chunk)
    assert back.hexdigest() == digest.hexdigest()


def test_too_large_stores_nothing_and_leaves_no_pending_upload(storage: S3Storage) -> None:
    with pytest.raises(TooLarge):
        storage.write("over", _stream(2 * PART + 1), max_bytes=2 * PART)
    assert _objects(storage) == []
    pending = storage.client.list_multipart_uploads(Bucket=storage.bucket)
    assert pending.get("Uploads", []) == []


def test_keys_cannot_escape_the_prefix(storage: S3Storage) -> None:
    with pytest.raises(ValueError):
        storage.write("../other-tenant/x", [b"x"], max_bytes=10)


def test_settings_choose_the_store(tmp_path: object) -> None:
    assert isinstance(storage_from_settings(Settings(data_dir=tmp_path)), LocalStorage)
    chosen = storage_from_settings(Settings(data_dir=tmp_path, storage_url="s3://bucket/env/a"))
    assert isinstance(chosen, S3Storage)
    assert (chosen.bucket, chosen.prefix) == ("bucket", "env/a/uploads")
    with pytest.raises(ValueError, match="s3://bucket/prefix"):
        parse_s3_url("https://bucket/x")
