"""The artefact store on local disk and on a real S3 server: directories appear whole, by their
manifest, and come back into a size-bounded cache that evicts the least recently used."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.artifact_store import MANIFEST, ArtifactStore, DirCache, MissingArtifact, artifact_store
from app.settings import Settings
from app.storage import LocalStorage
from app.storage_s3 import S3Storage
from tests.s3 import S3Server


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    cache = DirCache(tmp_path / "cache", max_bytes=10**6)
    if request.param == "local":
        return ArtifactStore(LocalStorage(tmp_path / "stored"), cache)
    s3: S3Server = request.getfixturevalue("s3")
    monkeypatch: pytest.MonkeyPatch = request.getfixturevalue("monkeypatch")
    for key, value in s3.env.items():
        monkeypatch.setenv(key, value)
    return ArtifactStore(S3Storage(s3.new_bucket(), "tenant/checkpoints"), cache)


def _directory(root: Path, files: dict[str, bytes]) -> Path:
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(content)
    return root


FILES = {
    "adapter_config.json": b"{}",
    "adapter_model.safetensors": os.urandom(3000),
    "a/b.txt": b"x",
}


def test_exists_and_list_on_the_storage_itself(store: ArtifactStore) -> None:
    storage = store.storage
    assert not storage.exists("p/one") and storage.list("p") == []
    storage.write("p/one", [b"12345"], max_bytes=10)
    storage.write("p/sub/two", [b"12"], max_bytes=10)
    storage.write("pq/other", [b"1"], max_bytes=10)
    assert storage.exists("p/one") and not storage.exists("p/two")
    assert storage.list("p") == [("p/one", 5), ("p/sub/two", 2)]
    assert storage.list("p/sub/") == [("p/sub/two", 2)]


def test_a_directory_round_trips_and_exists_only_with_its_manifest(
    store: ArtifactStore, tmp_path: Path
) -> None:
    source = _directory(tmp_path / "src", FILES)
    assert not store.exists("job/step-1")
    manifest = store.put_dir(source, "job/step-1")
    assert manifest["files"] == {name: len(content) for name, content in FILES.items()}
    assert store.files("job/step-1") == manifest["files"]
    fetched = store.fetch_dir("job/step-1", tmp_path / "fetched" / "step-1")
    for name, content in FILES.items():
        assert (fetched / name).read_bytes() == content
    # no staging folder left beside the fetched one
    assert [path.name for path in fetched.parent.iterdir()] == ["step-1"]

    # files without their manifest are not a directory: the manifest goes last, and first away
    store.storage.delete(f"job/step-1/{MANIFEST}")
    if isinstance(store.storage, LocalStorage):
        # an old local folder, from before manifests, still counts: it appeared by rename
        assert store.exists("job/step-1")
        return
    assert not store.exists("job/step-1")
    with pytest.raises(MissingArtifact):
        store.fetch_dir("job/step-1", tmp_path / "again")
    assert not (tmp_path / "again").exists()


def test_delete_dir_removes_everything(store: ArtifactStore, tmp_path: Path) -> None:
    store.put_dir(_directory(tmp_path / "src", FILES), "job/final")
    store.delete_dir("job/final")
    assert not store.exists("job/final")
    assert store.storage.list("job/final") == []


def test_local_dir_fetches_once_into_the_cache(store: ArtifactStore, tmp_path: Path) -> None:
    store.put_dir(_directory(tmp_path / "src", FILES), "job/step-2")
    with store.local_dir("job/step-2") as first:
        assert (first / "adapter_config.json").read_bytes() == b"{}"
    with store.local_dir("job/step-2") as second:
        assert second == first
    if isinstance(store.storage, S3Storage):
        assert first.parent == tmp_path / "cache"
    with pytest.raises(MissingArtifact), store.local_dir("job/none"):
        pass


def test_the_cache_evicts_the_least_recently_used_directory_not_in_use(tmp_path: Path) -> None:
    store = ArtifactStore(LocalStorage(tmp_path / "stored"))
    for name in ("a", "b", "c"):
        store.put_dir(_directory(tmp_path / "src" / name, {"w": b"0" * 400}), name)
    cache = DirCache(tmp_path / "cache", max_bytes=1000)

    def use(key: str):  # noqa: ANN202
        return cache.use(key, lambda path: store.fetch_dir(key, path))

    def cached() -> set[str]:
        return {path.name.rsplit("-", 1)[-1] for _, _, path in cache.entries()}

    with use("a"):
        pass
    with use("b"):
        pass
    with use("a"):  # touched: now b is the least recently used
        pass
    past = os.stat(cache.path("a")).st_mtime
    os.utime(cache.path("b"), (past - 10, past - 10))
    with use("c"):
        pass
    assert cached() == {"a", "c"}
    # a directory in use is kept, even past the bound; the next least recently used goes
    os.utime(cache.path("a"), (past - 20, past - 20))
    with use("a"):
        os.utime(cache.path("a"), (past - 20, past - 20))
        with use("b"):
            assert cached() == {"a", "b"}
            with use("c"):
                # a and b in use, c just fetched: nothing can go, the bound is passed for now
                assert cached() == {"a", "b", "c"}
    with use("c"):
        pass
    assert len(cached()) == 2 and "c" in cached()


def test_settings_choose_local_folders_or_s3_prefixes(tmp_path: Path) -> None:
    local = artifact_store(Settings(data_dir=tmp_path), "checkpoints", "api")
    assert isinstance(local.storage, LocalStorage) and local.cache is None
    assert local.storage.root == (tmp_path / "checkpoints").resolve()
    merged = artifact_store(Settings(data_dir=tmp_path), "merged", "api")
    assert merged.storage.root == (tmp_path / "models" / "merged").resolve()  # type: ignore[attr-defined]
    settings = Settings(data_dir=tmp_path, storage_url="s3://b/pre", cache_max_bytes=123)
    remote = artifact_store(settings, "merged", "inference")
    assert isinstance(remote.storage, S3Storage)
    assert (remote.storage.bucket, remote.storage.prefix) == ("b", "pre/merged")
    assert remote.cache is not None and remote.cache.max_bytes == 123
    assert remote.cache.root == tmp_path.resolve() / "cache" / "inference" / "merged"
