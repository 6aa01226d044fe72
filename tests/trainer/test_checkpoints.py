"""The checkpoint store on a folder, and which checkpoints are kept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from worker.trainer.checkpoints import (
    ADAPTER_FILE,
    STATE_FILE,
    Checkpoint,
    DirectoryCheckpointStore,
    unkept_checkpoints,
)


def stage(store: DirectoryCheckpointStore, step: int, weights: str = "w") -> Path:
    staged = store.staging_dir(f"step-{step:06d}")
    (staged / ADAPTER_FILE).write_text(weights)
    state = {"step": step, "metrics": {"step": step}, "score": None, "trained_tokens": 0}
    (staged / STATE_FILE).write_text(json.dumps(state))
    return staged


def test_staging_folders_are_hidden_and_never_listed(tmp_path: Path) -> None:
    store = DirectoryCheckpointStore(tmp_path / "job", staging_prefix="attempt-3.")
    staged = stage(store, 4)
    assert staged.parent == store.root
    assert staged.name.startswith(".attempt-3.step-000004.")
    assert store.list() == []
    assert stage(store, 4) != staged  # each call gets a new folder


def test_published_checkpoints_are_listed_oldest_first(tmp_path: Path) -> None:
    store = DirectoryCheckpointStore(tmp_path)
    for step in (8, 2, 4):
        checkpoint = store.publish(step, stage(store, step))
        assert checkpoint.path == tmp_path / f"step-{step:06d}"
        assert checkpoint.metrics == {"step": step}
    assert [checkpoint.step for checkpoint in store.list()] == [2, 4, 8]
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "step-000002",
        "step-000004",
        "step-000008",
    ]


def test_publishing_a_step_again_replaces_it_whole(tmp_path: Path) -> None:
    store = DirectoryCheckpointStore(tmp_path)
    first = stage(store, 4, weights="old")
    (first / "optimizer.pt").write_text("old only")
    store.publish(4, first)
    store.publish(4, stage(store, 4, weights="new"))
    (checkpoint,) = store.list()
    assert (checkpoint.path / ADAPTER_FILE).read_text() == "new"
    assert not (checkpoint.path / "optimizer.pt").exists()
    assert [path.name for path in tmp_path.iterdir()] == ["step-000004"]


def test_an_incomplete_or_mislabelled_staging_folder_is_not_published(tmp_path: Path) -> None:
    store = DirectoryCheckpointStore(tmp_path)
    with pytest.raises(ValueError, match="no complete checkpoint of step 5"):
        store.publish(5, stage(store, 4))
    incomplete = store.staging_dir("step-000006")
    (incomplete / ADAPTER_FILE).write_text("w")
    with pytest.raises(ValueError):
        store.publish(6, incomplete)
    assert store.list() == []


def test_delete_removes_a_published_checkpoint(tmp_path: Path) -> None:
    store = DirectoryCheckpointStore(tmp_path)
    for step in (1, 2):
        store.publish(step, stage(store, step))
    store.delete(1)
    assert [checkpoint.step for checkpoint in store.list()] == [2]
    assert [path.name for path in tmp_path.iterdir()] == ["step-000002"]


def test_the_final_adapter_is_published_apart_from_the_checkpoints(tmp_path: Path) -> None:
    store = DirectoryCheckpointStore(tmp_path)
    staged = store.staging_dir("final")
    (staged / ADAPTER_FILE).write_text("final")
    final = store.publish_final(staged)
    assert final == tmp_path / "final"
    assert (final / ADAPTER_FILE).read_text() == "final"
    assert store.list() == []


def checkpoint(step: int, score: float | None) -> Checkpoint:
    return Checkpoint(step, Path(f"step-{step}"), {"step": step, "metrics": {}, "score": score})


def test_the_three_best_and_the_latest_are_kept() -> None:
    checkpoints = [
        checkpoint(1, 0.1),
        checkpoint(2, 0.5),
        checkpoint(3, 0.5),
        checkpoint(4, 0.9),
        checkpoint(5, 0.5),
        checkpoint(6, None),
    ]
    # 4 is best; of the three tied at 0.5 the later two are kept; 6 is the latest
    assert [c.step for c in unkept_checkpoints(checkpoints)] == [1, 2]
    assert unkept_checkpoints([]) == []
