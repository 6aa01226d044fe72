"""Base models pushed to storage: offered by the catalogue, fetched by the hosts that use them."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from app.base_models import (
    find_base_model,
    forget_stored_list,
    list_base_models,
    push_base_model,
    stored_model_names,
)
from app.settings import Settings
from tests.s3 import S3Server


@pytest.fixture(params=["local", "s3"])
def settings_pair(
    request: pytest.FixtureRequest, tmp_path: Path, s3: S3Server, monkeypatch: pytest.MonkeyPatch
) -> tuple[Settings, Settings]:
    """Two hosts' settings sharing one storage but no disk."""
    if request.param == "local":
        one = Settings(data_dir=tmp_path / "shared")
        return one, one
    for key, value in s3.env.items():
        monkeypatch.setenv(key, value)
    url = f"s3://{s3.new_bucket()}/catalogue"
    return (
        Settings(data_dir=tmp_path / "host-a", storage_url=url),
        Settings(data_dir=tmp_path / "host-b", storage_url=url),
    )


def test_a_pushed_model_is_offered_and_fetched_elsewhere(
    settings_pair: tuple[Settings, Settings], tiny_models_root: Path
) -> None:
    pusher, other = settings_pair
    forget_stored_list()
    assert find_base_model(other, "tiny-pushed") is None
    count = push_base_model(pusher, "tiny-pushed", tiny_models_root / "tiny-chat")
    assert count >= 3
    forget_stored_list()
    assert "tiny-pushed" in stored_model_names(other)
    found = find_base_model(other, "tiny-pushed")
    assert found is not None and found.stored_key == "tiny-pushed"
    assert [m.name for m in list_base_models(other)].count("tiny-pushed") == 1

    from worker.base_model_dirs import base_model_dir

    local = base_model_dir(other, "tiny-pushed", "worker")
    assert (local / "config.json").is_file()
    with pytest.raises(ValueError, match="not in storage"):
        base_model_dir(other, "never-pushed", "worker")


def test_push_refuses_bad_names_and_non_model_dirs(tmp_path: Path, tiny_models_root: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    with pytest.raises(ValueError, match="cannot name"):
        push_base_model(settings, "../escape", tiny_models_root / "tiny-chat")
    with pytest.raises(ValueError, match="cannot name"):
        push_base_model(settings, "SmolLM2-135M-Instruct", tiny_models_root / "tiny-chat")
    with pytest.raises(ValueError, match="no config.json"):
        push_base_model(settings, "empty", tmp_path)


def test_the_stored_list_is_read_again_after_a_while(
    tmp_path: Path, tiny_models_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import app.base_models as catalogue

    settings = Settings(data_dir=tmp_path)
    forget_stored_list()
    assert stored_model_names(settings) == []
    # pushed by another process: this one sees it once its listing is older than the period
    from app.artifact_store import artifact_store

    artifact_store(settings, "models", "elsewhere").put_dir(tiny_models_root / "tiny-chat", "late")
    assert stored_model_names(settings) == []
    monkeypatch.setattr(catalogue, "STORED_LIST_SECONDS", 0.0)
    time.sleep(0.01)
    assert stored_model_names(settings) == ["late"]
