"""The metadata at the head of a GGUF file, read without torch, numpy or the tensors.

A GGUF file starts with a header: magic, version, tensor count, then typed key/value pairs
(`general.architecture`, `<arch>.block_count`, `tokenizer.ggml.tokens`, ...). The API reads the
model's sizes from it to estimate a job's memory before any worker converts the file. Large
arrays (the token list) are skipped, keeping only their length.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

MAGIC = b"GGUF"
# value types of the GGUF spec (gguf.GGUFValueType)
_SCALARS = {
    0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
    10: "<Q", 11: "<q", 12: "<d",
}  # fmt: skip
_STRING, _ARRAY = 8, 9
# arrays longer than this are returned as their length only (the vocabulary is 49k-262k items)
KEEP_ARRAY_ITEMS = 64


class GGUFHeaderError(ValueError):
    """The bytes are not a GGUF header this reader understands."""


class _JoinedFiles:
    """Several files read as one stream, in order: a GGUF split across packages."""

    def __init__(self, paths: Iterable[Path]) -> None:
        self._paths: Iterator[Path] = iter(paths)
        self._handle: IO[bytes] | None = None

    def read(self, size: int) -> bytes:
        chunks: list[bytes] = []
        while size > 0:
            if self._handle is None:
                path = next(self._paths, None)
                if path is None:
                    break
                self._handle = path.open("rb")
            chunk = self._handle.read(size)
            if not chunk:
                self._handle.close()
                self._handle = None
                continue
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()


def _exact(stream: _JoinedFiles, size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise GGUFHeaderError("the file ends inside its header")
    return data


def _unpack(stream: _JoinedFiles, fmt: str) -> Any:
    return struct.unpack(fmt, _exact(stream, struct.calcsize(fmt)))[0]


def _string(stream: _JoinedFiles) -> str:
    return _exact(stream, _unpack(stream, "<Q")).decode("utf-8", errors="replace")


def _value(stream: _JoinedFiles, kind: int) -> Any:
    if kind in _SCALARS:
        return _unpack(stream, _SCALARS[kind])
    if kind == _STRING:
        return _string(stream)
    if kind == _ARRAY:
        item_kind, count = _unpack(stream, "<I"), _unpack(stream, "<Q")
        items = [_value(stream, item_kind) for _ in range(count)]
        return items if count <= KEEP_ARRAY_ITEMS else ArrayLength(count)
    raise GGUFHeaderError(f"unknown GGUF value type {kind}")


class ArrayLength(int):
    """A long array's length, standing in for its items."""


@dataclass(frozen=True)
class GGUFHeader:
    metadata: dict[str, Any]
    tensor_names: tuple[str, ...]


def _opened(paths: Path | Iterable[Path]) -> _JoinedFiles:
    return _JoinedFiles([paths] if isinstance(paths, Path) else paths)


def _counts(stream: _JoinedFiles) -> tuple[int, int]:
    """(tensors, key/value pairs) after checking the magic and the version."""
    if stream.read(4) != MAGIC:
        raise GGUFHeaderError("not a GGUF file (no GGUF magic)")
    version = _unpack(stream, "<I")
    if version < 2:
        raise GGUFHeaderError(f"GGUF version {version} is not supported")
    return _unpack(stream, "<Q"), _unpack(stream, "<Q")


def read_gguf_value(paths: Path | Iterable[Path], key: str) -> Any:
    """One metadata value of a GGUF file, or of one split into parts (given in order); None
    where the file has no such key. Reads no further than the key."""
    stream = _opened(paths)
    try:
        _tensors, pairs = _counts(stream)
        for _ in range(pairs):
            name = _string(stream)
            value = _value(stream, _unpack(stream, "<I"))
            if name == key:
                return value
        return None
    finally:
        stream.close()


def read_gguf_header(paths: Path | Iterable[Path]) -> GGUFHeader:
    """The key/value metadata and the tensor names of a GGUF file, or of one split into parts
    (given in order)."""
    stream = _opened(paths)
    try:
        tensors, pairs = _counts(stream)
        metadata: dict[str, Any] = {}
        for _ in range(pairs):
            key = _string(stream)
            metadata[key] = _value(stream, _unpack(stream, "<I"))
        names = []
        for _ in range(tensors):
            names.append(_string(stream))
            dims = _unpack(stream, "<I")
            _exact(stream, 8 * dims + 4 + 8)  # the dims, the type, the data offset
        return GGUFHeader(metadata, tuple(names))
    finally:
        stream.close()
