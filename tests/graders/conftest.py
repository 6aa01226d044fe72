from __future__ import annotations

import pytest

from app.graders import GraderConfig


@pytest.fixture
def config() -> GraderConfig:
    """Reference limits, with a short wall time so hang tests finish quickly."""
    return GraderConfig(timeout_seconds=3.0, memory_bytes=512 * 1024**2, sandbox_pool_size=2)
