"""Directories that appear whole or not at all: write into a hidden staging folder beside the
target, then rename it into place (a rename within one file system is atomic)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_directory(target: Path) -> Iterator[Path]:
    """Yield an empty staging folder beside `target`; when the block succeeds it becomes
    `target` (replacing one that exists), when it raises it is removed."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield staging
        replace_directory(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def replace_directory(staged: Path, target: Path) -> None:
    """Rename `staged` to `target`, mode 0o755, on the same file system.

    An existing `target` is first renamed aside and removed afterwards: a reader sees the old
    folder or the new one (or, between the two renames, none), never a mix of both.
    """
    os.chmod(staged, 0o755)
    displaced = _rename_aside(target, "replaced") if target.exists() else None
    try:
        os.rename(staged, target)
    except BaseException:
        if displaced is not None:
            os.rename(displaced, target)
        raise
    if displaced is not None:
        shutil.rmtree(displaced, ignore_errors=True)


def remove_directory(target: Path) -> None:
    """Remove `target`: it disappears in one rename, then its files are deleted; a missing
    target is no error."""
    if target.exists():
        shutil.rmtree(_rename_aside(target, "removed"), ignore_errors=True)


def _rename_aside(target: Path, why: str) -> Path:
    # mkdtemp reserves a unique hidden name; renaming a folder onto an empty one replaces it
    aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.{why}.", dir=target.parent))
    try:
        os.rename(target, aside)
    except BaseException:
        aside.rmdir()
        raise
    return aside
