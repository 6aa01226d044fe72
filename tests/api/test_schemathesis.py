"""Schemathesis against the live app with a valid key: no generated request gets a 5xx.

Runs the examples, coverage and fuzzing phases for OPENRFT_SCHEMATHESIS_SECONDS (90 by
default) on the embedded default; one worker, since the coverage phase of Hypothesis's lambda
descriptions is not thread-safe on Python 3.11.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.services import LiveService, live_service, service_env

SECONDS = int(os.environ.get("OPENRFT_SCHEMATHESIS_SECONDS", "90"))


@pytest.fixture(scope="module")
def app_service(
    tmp_path_factory: pytest.TempPathFactory, tiny_models_root: Path
) -> Iterator[LiveService]:
    data_dir = tmp_path_factory.mktemp("schemathesis") / "data"
    env = service_env(data_dir, "embedded", None, OPENRFT_MODEL_DIRS=str(tiny_models_root))
    with live_service(env, data_dir) as service:
        yield service


@pytest.mark.slow
def test_no_generated_request_gets_a_server_error(app_service: LiveService) -> None:
    root = app_service.base_url.removesuffix("/v1")
    command = [
        str(Path(sys.executable).with_name("schemathesis")), "--no-color", "run",
        f"{root}/openapi.json", "--url", root,
        "--header", f"Authorization: Bearer {app_service.api_key}",
        "--phases", "examples,coverage,fuzzing", "--checks", "not_a_server_error",
        "--max-time", str(SECONDS), "--request-timeout", "30", "--workers", "1",
    ]  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True, timeout=SECONDS + 120)
    report = run.stdout + run.stderr
    assert run.returncode == 0, report[-6000:]
    assert "Server error" not in report
    assert "passed" in report  # it generated and sent requests
