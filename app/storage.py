"""Where uploaded bytes live: a small interface, local disk (embedded) or S3 (production)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol

if TYPE_CHECKING:
    from app.settings import Settings


class TooLarge(Exception):
    """The stream went past the allowed size; nothing was stored."""


class Storage(Protocol):
    def write(self, key: str, chunks: Iterable[bytes], max_bytes: int) -> int: ...

    def open(self, key: str) -> BinaryIO: ...

    def iter_bytes(self, key: str, chunk_size: int = 1 << 20) -> Iterator[bytes]: ...

    def delete(self, key: str) -> None: ...

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str) -> list[tuple[str, int]]:
        """`(key, size)` of every object whose key starts with `prefix/`, sorted by key."""
        ...


class LocalStorage:
    """Objects as files under one root; writes land whole or not at all (temp file + rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root not in path.parents:
            raise ValueError(f"storage key escapes the root: {key!r}")
        return path

    def write(self, key: str, chunks: Iterable[bytes], max_bytes: int) -> int:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
        written = 0
        try:
            with os.fdopen(handle, "wb") as out:
                for chunk in chunks:
                    written += len(chunk)
                    if written > max_bytes:
                        raise TooLarge(f"more than {max_bytes} bytes")
                    out.write(chunk)
            os.replace(temp_name, path)
        except BaseException:
            Path(temp_name).unlink(missing_ok=True)
            raise
        return written

    def open(self, key: str) -> BinaryIO:
        return self._path(key).open("rb")

    def iter_bytes(self, key: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        with self.open(key) as source:
            while chunk := source.read(chunk_size):
                yield chunk

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str) -> list[tuple[str, int]]:
        folder = self._path(prefix.rstrip("/")) if prefix.strip("/") else self.root
        if not folder.is_dir():
            return []
        found = [
            (str(path.relative_to(self.root)), path.stat().st_size)
            for path in folder.rglob("*")
            if path.is_file() and not path.name.startswith(".upload-")
        ]
        return sorted(found)

    def local_path(self, key: str) -> Path:
        """Where the object of `key` is, or would be, on this disk."""
        return self._path(key)


def storage_from_settings(settings: Settings) -> Storage:
    """`OPENRFT_STORAGE_URL=s3://bucket/prefix` for an S3-compatible store, else the data dir."""
    if settings.storage_url:
        from app.storage_s3 import S3Storage, parse_s3_url

        bucket, prefix = parse_s3_url(settings.storage_url)
        return S3Storage(bucket, f"{prefix}/uploads" if prefix else "uploads")
    return LocalStorage(settings.uploads_dir)
