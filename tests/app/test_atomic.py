"""Directories written whole or not at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.atomic import atomic_directory, remove_directory, replace_directory


def names(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def test_a_written_directory_appears_whole(tmp_path: Path) -> None:
    target = tmp_path / "nested" / "model"
    with atomic_directory(target) as staging:
        assert staging.parent == target.parent and staging.name.startswith(".model.")
        (staging / "weights").write_text("w")
        assert not target.exists()
    assert (target / "weights").read_text() == "w"
    assert target.stat().st_mode & 0o777 == 0o755
    assert names(target.parent) == ["model"]


def test_a_failure_leaves_neither_staging_nor_target(tmp_path: Path) -> None:
    target = tmp_path / "model"
    with pytest.raises(RuntimeError), atomic_directory(target) as staging:
        (staging / "half").write_text("h")
        raise RuntimeError("disk full")
    assert names(tmp_path) == []


def test_a_failure_keeps_the_old_target(tmp_path: Path) -> None:
    target = tmp_path / "model"
    target.mkdir()
    (target / "old").write_text("o")
    with pytest.raises(RuntimeError), atomic_directory(target):
        raise RuntimeError("killed")
    assert names(tmp_path) == ["model"] and names(target) == ["old"]


def test_replacing_swaps_the_whole_folder(tmp_path: Path) -> None:
    target = tmp_path / "final"
    target.mkdir()
    (target / "old-only").write_text("o")
    (target / "shared").write_text("old")
    staged = tmp_path / ".staged"
    staged.mkdir()
    (staged / "shared").write_text("new")
    replace_directory(staged, target)
    assert names(target) == ["shared"] and (target / "shared").read_text() == "new"
    assert names(tmp_path) == ["final"]


def test_remove_directory(tmp_path: Path) -> None:
    target = tmp_path / "step-000001"
    target.mkdir()
    (target / "adapter").write_text("a")
    remove_directory(target)
    remove_directory(target)  # already gone: no error
    assert names(tmp_path) == []
