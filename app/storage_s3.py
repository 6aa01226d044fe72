"""Objects in any S3-compatible store (AWS S3, MinIO, Ceph, R2, ...), streamed both ways.

Chosen library: boto3, AWS's own SDK; it speaks to every S3-compatible server, reads the usual
AWS_* variables (credentials, region, AWS_ENDPOINT_URL for a non-AWS server) and is kept in
step with the S3 API. Writes go up in parts of `part_size` bytes, so an upload is never held in
memory whole, and appear only when the multipart upload completes: a reader sees the whole
object or none.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO
from urllib.parse import urlparse

from app.storage import TooLarge

# S3's smallest part (but the last) is 5 MiB; 8 MiB keeps a request per 8 MiB of upload
DEFAULT_PART_SIZE = 8 * 1024 * 1024


class _BodyReader(io.RawIOBase):
    """A botocore streaming body as a raw stream, so it can be buffered and read by lines."""

    def __init__(self, body: Any) -> None:
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._body.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._body.close()
        super().close()


def parse_s3_url(url: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix` -> ("bucket", "some/prefix")."""
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"storage URL must look like s3://bucket/prefix, not {url!r}")
    return parsed.netloc, parsed.path.strip("/")


def make_client() -> Any:
    import boto3
    from botocore.config import Config

    # a non-AWS server (MinIO, moto) is usually reached by path, not by bucket sub-domain
    custom = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    config = Config(
        s3={"addressing_style": "path" if custom else "auto"},
        retries={"max_attempts": 5, "mode": "standard"},
    )
    return boto3.client("s3", config=config)


class S3Storage:
    def __init__(
        self, bucket: str, prefix: str = "", client: Any = None, part_size: int = DEFAULT_PART_SIZE
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = client or make_client()
        self.part_size = part_size

    def _key(self, key: str) -> str:
        if key.startswith("/") or ".." in key.split("/"):
            raise ValueError(f"storage key escapes the prefix: {key!r}")
        return f"{self.prefix}/{key}" if self.prefix else key

    def write(self, key: str, chunks: Iterable[bytes], max_bytes: int) -> int:
        object_key = self._key(key)
        parts = _parts(chunks, self.part_size, max_bytes)
        first = next(parts, b"")
        second = next(parts, None)
        if second is None:  # small enough for one request
            self.client.put_object(Bucket=self.bucket, Key=object_key, Body=first)
            return len(first)
        upload = self.client.create_multipart_upload(Bucket=self.bucket, Key=object_key)
        upload_id = upload["UploadId"]
        try:
            written, done = 0, []
            for number, part in enumerate(_chain(first, second, parts), start=1):
                reply = self.client.upload_part(
                    Bucket=self.bucket, Key=object_key, UploadId=upload_id,
                    PartNumber=number, Body=part,
                )  # fmt: skip
                done.append({"PartNumber": number, "ETag": reply["ETag"]})
                written += len(part)
            self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=object_key, UploadId=upload_id,
                MultipartUpload={"Parts": done},
            )  # fmt: skip
        except BaseException:
            self.client.abort_multipart_upload(
                Bucket=self.bucket, Key=object_key, UploadId=upload_id
            )
            raise
        return written

    def open(self, key: str) -> BinaryIO:
        reply = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        return io.BufferedReader(_BodyReader(reply["Body"]), buffer_size=1 << 16)  # type: ignore[return-value]

    def iter_bytes(self, key: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        reply = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        body = reply["Body"]
        try:
            yield from body.iter_chunks(chunk_size)
        finally:
            body.close()

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def list(self, prefix: str) -> list[tuple[str, int]]:
        if prefix.strip("/"):
            start = self._key(prefix.rstrip("/")) + "/"
        else:  # everything under this store's prefix
            start = f"{self.prefix}/" if self.prefix else ""
        cut = len(self.prefix) + 1 if self.prefix else 0
        found = []
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=start
        ):
            found += [(item["Key"][cut:], item["Size"]) for item in page.get("Contents", [])]
        return sorted(found)


def _parts(chunks: Iterable[bytes], part_size: int, max_bytes: int) -> Iterator[bytes]:
    """The stream cut into parts of `part_size` (the last may be shorter); TooLarge past max."""
    buffer = bytearray()
    total = 0
    for chunk in chunks:
        total += len(chunk)
        if total > max_bytes:
            raise TooLarge(f"more than {max_bytes} bytes")
        buffer += chunk
        while len(buffer) >= part_size:
            yield bytes(buffer[:part_size])
            del buffer[:part_size]
    if buffer or total == 0:
        yield bytes(buffer)


def _chain(first: bytes, second: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield second
    yield from rest
