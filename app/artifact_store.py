"""Directories in storage: checkpoints, final adapters and merged models, shared by key.

No process hands another a file-system path. A directory is published under a key (a relative
path such as `<job id>/checkpoints/step-000004`) with `put_dir`: every file goes up first, then a
small manifest naming the files and their sizes, written last; a directory exists in storage only
once its manifest does, so a reader never sees half of one. A process that needs the files on
disk (to load an adapter, to resume training) asks `local_dir`, which fetches the directory into
this process's `DirCache` (size-bounded, least recently used evicted first) and renames it into
place whole.

With local storage (the embedded default) the store's root is the data directory's own folder,
so a directory written there is already in storage: `put_dir` adds only the manifest and
`local_dir` returns the folder itself, as before.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from app.atomic import remove_directory, replace_directory
from app.storage import LocalStorage, Storage

if TYPE_CHECKING:
    from app.settings import Settings

MANIFEST = "MANIFEST.json"
CHUNK_BYTES = 1 << 20
# a directory's file is never larger than this (the largest merged model weights fit)
MAX_FILE_BYTES = 1 << 40

Area = Literal["checkpoints", "merged", "models"]


class MissingArtifact(Exception):
    """No complete directory under that key."""


class DirCache:
    """Fetched directories under `root`, at most `max_bytes` in all (but those in use).

    Each use touches the directory; when the cache grows past its bound the least recently used
    directories that no block of this process is using are removed.
    """

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self._in_use: Counter[str] = Counter()
        self._lock = threading.Lock()

    def path(self, key: str) -> Path:
        digest = hashlib.sha256(key.encode()).hexdigest()[:24]
        readable = "".join(c if c.isalnum() or c in "-_." else "-" for c in key)[-60:]
        return self.root / f"{digest}-{readable.strip('-.') or 'dir'}"

    @contextmanager
    def use(self, key: str, fill: Callable[[Path], None]) -> Iterator[Path]:
        """The cached directory of `key`, made by `fill(path)` when missing; kept while in use."""
        path = self.path(key)
        with self._lock:
            self._in_use[path.name] += 1
        try:
            if not path.is_dir():
                fill(path)
            now = time.time()
            os.utime(path, (now, now))
            self.evict()
            yield path
        finally:
            with self._lock:
                self._in_use[path.name] -= 1
                if self._in_use[path.name] <= 0:
                    del self._in_use[path.name]

    def entries(self) -> list[tuple[float, int, Path]]:
        """(last use, size, path) of every cached directory, least recently used first."""
        if not self.root.is_dir():
            return []
        found = []
        for path in self.root.iterdir():
            if path.name.startswith(".") or not path.is_dir():
                continue
            try:
                size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
                found.append((path.stat().st_mtime, size, path))
            except FileNotFoundError:  # another process evicted it meanwhile
                continue
        return sorted(found, key=lambda entry: entry[0])

    def evict(self) -> None:
        entries = self.entries()
        total = sum(size for _, size, _ in entries)
        for _, size, path in entries:
            if total <= self.max_bytes:
                break
            with self._lock:
                if self._in_use[path.name]:
                    continue
                remove_directory(path)
            total -= size


class ArtifactStore:
    def __init__(self, storage: Storage, cache: DirCache | None = None) -> None:
        self.storage = storage
        self.cache = cache

    def _local_path(self, key: str) -> Path | None:
        """Where the storage itself keeps `key` on this disk (local storage), else None."""
        if isinstance(self.storage, LocalStorage):
            return self.storage.local_path(key)
        return None

    def put_dir(self, local_dir: Path, key: str) -> dict[str, Any]:
        """Store every file of `local_dir` under `key`, then the manifest; return the manifest."""
        files = {
            str(path.relative_to(local_dir)): path
            for path in sorted(local_dir.rglob("*"))
            if path.is_file() and path.name != MANIFEST
        }
        in_place = self._local_path(key)
        if in_place is None or in_place.resolve() != local_dir.resolve():
            for name, path in files.items():
                self.storage.write(f"{key}/{name}", _read(path), max_bytes=MAX_FILE_BYTES)
        manifest = {
            "id": uuid.uuid4().hex,
            "files": {name: path.stat().st_size for name, path in files.items()},
        }
        content = json.dumps(manifest, indent=1).encode()
        self.storage.write(f"{key}/{MANIFEST}", [content], max_bytes=len(content))
        return manifest

    def manifest(self, key: str) -> dict[str, Any] | None:
        """The manifest of the directory under `key`, or None when there is no complete one."""
        if self.storage.exists(f"{key}/{MANIFEST}"):
            return json.loads(b"".join(self.storage.iter_bytes(f"{key}/{MANIFEST}")))
        local = self._local_path(key)
        if local is not None and local.is_dir():
            # written before manifests existed: a local folder only ever appeared whole
            files = {
                str(path.relative_to(local)): path.stat().st_size
                for path in sorted(local.rglob("*"))
                if path.is_file() and not any(part.startswith(".") for part in path.parts)
            }
            return {"id": "", "files": files} if files else None
        return None

    def exists(self, key: str) -> bool:
        return self.manifest(key) is not None

    def files(self, key: str) -> dict[str, int]:
        """Name -> size of the directory's files; MissingArtifact when it is not stored."""
        manifest = self.manifest(key)
        if manifest is None:
            raise MissingArtifact(key)
        return dict(manifest["files"])

    def iter_file(self, key: str, name: str) -> Iterator[bytes]:
        return self.storage.iter_bytes(f"{key}/{name}", CHUNK_BYTES)

    def fetch_dir(self, key: str, target: Path) -> Path:
        """Download the directory of `key` to `target`, which appears whole or not at all."""
        files = self.files(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        staged = Path(tempfile.mkdtemp(prefix=f".{target.name}.fetch.", dir=target.parent))
        try:
            for name, size in files.items():
                path = staged / name
                path.parent.mkdir(parents=True, exist_ok=True)
                with path.open("wb") as out:
                    for chunk in self.iter_file(key, name):
                        out.write(chunk)
                if path.stat().st_size != size:
                    raise MissingArtifact(f"{key}/{name}: {path.stat().st_size} != {size} bytes")
            replace_directory(staged, target)
        finally:
            shutil.rmtree(staged, ignore_errors=True)
        return target

    @contextmanager
    def local_dir(self, key: str) -> Iterator[Path]:
        """The directory of `key` on this disk while the block runs; MissingArtifact if none."""
        local = self._local_path(key)
        if local is not None:
            if not self.exists(key):
                raise MissingArtifact(key)
            yield local
            return
        assert self.cache is not None, "a remote store needs a local cache"
        with self.cache.use(key, lambda path: self.fetch_dir(key, path)) as path:
            yield path

    def local_copy(self, key: str, scratch: Path) -> Path:
        """The directory of `key` on this disk for as long as the caller keeps `scratch`: the
        stored folder itself with local storage, else a fresh download into `scratch`."""
        local = self._local_path(key)
        if local is not None:
            if not self.exists(key):
                raise MissingArtifact(key)
            return local
        return self.fetch_dir(key, scratch)

    def read_file(self, key: str, name: str) -> bytes:
        """One (small) file of the directory of `key`; MissingArtifact when it is not stored."""
        if name not in self.files(key):
            raise MissingArtifact(f"{key}/{name}")
        return b"".join(self.iter_file(key, name))

    def delete_dir(self, key: str) -> None:
        """Remove the directory of `key`: the manifest first, so it is gone at once."""
        self.storage.delete(f"{key}/{MANIFEST}")
        local = self._local_path(key)
        if local is not None:
            remove_directory(local)
            return
        for name, _ in self.storage.list(key):
            self.storage.delete(name)


def artifact_store(settings: Settings, area: Area, role: str) -> ArtifactStore:
    """The store of `area` ("checkpoints": checkpoints and final adapters, "merged": merged
    models, "models": base models pushed with `openrft models push`) as process `role` ("api", "worker", "inference") sees it, with its own cache.

    One store per place and role in a process: its S3 client and its cache's record of the
    directories in use are shared by every request."""
    if settings.storage_url:
        cache_root = settings.resolved_data_dir / "cache" / role / area
        return _remote_store(settings.storage_url, area, cache_root, settings.cache_max_bytes)
    if area == "checkpoints":
        return ArtifactStore(LocalStorage(settings.checkpoints_dir))
    if area == "models":
        return ArtifactStore(LocalStorage(settings.resolved_data_dir / "models"))
    return ArtifactStore(LocalStorage(settings.model_cache_dir / "merged"))


@functools.lru_cache(maxsize=32)
def _remote_store(storage_url: str, area: Area, cache_root: Path, max_bytes: int) -> ArtifactStore:
    from app.storage_s3 import S3Storage, parse_s3_url

    bucket, prefix = parse_s3_url(storage_url)
    storage = S3Storage(bucket, f"{prefix}/{area}" if prefix else area)
    return ArtifactStore(storage, DirCache(cache_root, max_bytes))


def _read(path: Path) -> Iterator[bytes]:
    with path.open("rb") as source:
        while chunk := source.read(CHUNK_BYTES):
            yield chunk
