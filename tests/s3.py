"""A real S3-compatible server for tests: the one `.ci/run` started, or moto in server mode."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from tests.services import free_port

# credentials the test server accepts; a real store takes the operator's
S3_TEST_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "openrft-test",
    "AWS_SECRET_ACCESS_KEY": "openrft-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass(frozen=True)
class S3Server:
    endpoint: str

    @property
    def env(self) -> dict[str, str]:
        """What a process needs to reach this server through boto3's own variables."""
        return {**S3_TEST_CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint}

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=S3_TEST_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=S3_TEST_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name=S3_TEST_CREDENTIALS["AWS_DEFAULT_REGION"],
        )

    def new_bucket(self) -> str:
        name = f"openrft-test-{secrets.token_hex(6)}"
        self.client().create_bucket(Bucket=name)
        return name


def _wait_until_up(endpoint: str, process: subprocess.Popen[bytes] | None) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError("the S3 test server exited early")
        try:
            httpx.get(endpoint, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"no S3 server answered at {endpoint}")


@contextmanager
def s3_server() -> Iterator[S3Server]:
    """OPENRFT_TEST_S3_ENDPOINT when set (CI starts one), else a moto server for this session."""
    endpoint = os.environ.get("OPENRFT_TEST_S3_ENDPOINT")
    if endpoint:
        _wait_until_up(endpoint, None)
        yield S3Server(endpoint)
        return
    moto = shutil.which("moto_server") or os.path.join(
        os.path.dirname(sys.executable), "moto_server"
    )
    port = free_port()
    process = subprocess.Popen(
        [moto, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        endpoint = f"http://127.0.0.1:{port}"
        _wait_until_up(endpoint, process)
        yield S3Server(endpoint)
    finally:
        process.terminate()
        process.wait(timeout=10)
