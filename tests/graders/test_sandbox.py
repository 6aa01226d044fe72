"""Python graders try to escape their sandbox; every attempt must fail while a loopback
server (standing in for this service) keeps answering."""

from __future__ import annotations

import http.server
import json
import secrets
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest

from app.graders import GraderConfig, GradeResult, grade, make_sample

SECRET = "sk-secret-that-must-not-leak"


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"alive")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[int]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = tmp_path / "data"
    (data / "files").mkdir(parents=True)
    (data / "openrft.db").write_text("tenant rows")
    (data / "files" / "file-other-tenant.jsonl").write_text('{"secret": 1}\n')
    monkeypatch.setenv("OPENRFT_API_KEY", SECRET)
    return data


def answers(port: int) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
        return response.read() == b"alive"


def run(source: str, config: GraderConfig, item: dict | None = None) -> GradeResult:
    grader = {"type": "python", "name": "escape", "source": source}
    return grade(grader, make_sample("x"), item or {}, config)


def escaped(source_body: str, config: GraderConfig, item: dict) -> GradeResult:
    """Run `source_body` (which sets `escaped`) and return the result; errors are test bugs."""
    source = (
        "def grade(sample, item):\n    escaped = False\n"
        + source_body
        + ("\n    return 1.0 if escaped else 0.0\n")
    )
    result = run(source, config, item)
    assert not result.has_error, result.errors
    return result


def indent(code: str) -> str:
    return "\n".join("    " + line for line in code.strip().splitlines())


def test_no_network_not_even_loopback(config: GraderConfig, server: int) -> None:
    body = indent(
        """
import socket
try:
    socket.create_connection(("127.0.0.1", item["port"]), timeout=2).close()
    escaped = True
except OSError:
    pass
names = [name for _, name in socket.if_nameindex()]
escaped = escaped or names != ["lo"]
"""
    )
    assert escaped(body, config, {"port": server}).reward == 0.0
    assert answers(server)


def test_data_dir_database_and_tenant_files_are_invisible(
    config: GraderConfig, data_dir: Path, server: int
) -> None:
    body = indent(
        """
import os
for path in item["paths"]:
    try:
        with open(path) as handle:
            handle.read()
        escaped = True
    except OSError:
        pass
    escaped = escaped or os.path.exists(path)
"""
    )
    paths = [
        str(data_dir / "openrft.db"),
        str(data_dir / "files" / "file-other-tenant.jsonl"),
        str(data_dir),
        str(Path.cwd() / "app" / "settings.py"),
        "/etc/passwd",
        "/root/.bash_history",
    ]
    config = replace(config, hidden_paths=(data_dir,))
    assert escaped(body, config, {"paths": paths}).reward == 0.0
    assert answers(server)


def test_environment_secrets_are_invisible(config: GraderConfig, data_dir: Path) -> None:
    body = indent(
        """
import glob, os
escaped = any(item["secret"] in value for value in os.environ.values())
for path in glob.glob("/proc/*/environ"):
    try:
        with open(path, "rb") as handle:
            escaped = escaped or item["secret"].encode() in handle.read()
    except OSError:
        pass
"""
    )
    assert escaped(body, config, {"secret": SECRET}).reward == 0.0


def test_writes_outside_the_private_temp_dir_fail(config: GraderConfig, tmp_path: Path) -> None:
    target = tmp_path / "written-by-grader"
    body = indent(
        """
import os
for path in item["paths"]:
    try:
        with open(path, "w") as handle:
            handle.write("x")
        escaped = True
    except OSError:
        pass
with open("/tmp/scratch.txt", "w") as handle:  # the private temp dir is writable
    handle.write("fine")
"""
    )
    paths = [str(target), "/usr/lib/evil", "/evil", "/opt/evil", "/root/evil"]
    assert escaped(body, config, {"paths": paths}).reward == 0.0
    assert not target.exists()


def test_file_size_is_limited(config: GraderConfig) -> None:
    source = """
def grade(sample, item):
    with open("/tmp/big", "wb") as handle:
        handle.write(b"x" * (4 * 1024 * 1024))
    return 1.0
"""
    result = run(source, replace(config, file_size_bytes=1024 * 1024), {})
    assert result.errors["python_grader_runtime_error"] is True
    assert "File too large" in result.errors["python_grader_runtime_error_details"]


def test_fork_bomb_is_capped_and_cleaned_up(config: GraderConfig, server: int) -> None:
    marker = f"{60 + secrets.randbelow(10**6) / 10**7:.7f}"  # a sleep length no one else uses
    source = """
import os
def grade(sample, item):
    children = 0
    for _ in range(500):
        try:
            if os.fork() == 0:
                os.execv("/usr/bin/sleep", ["sleep", item["marker"]])
            children += 1
        except OSError:
            break
    return float(children)
"""
    result = run(source, replace(config, max_processes=16), {"marker": marker})
    assert not result.has_error, result.errors
    assert 0 < result.reward < 16
    assert answers(server)
    deadline = time.monotonic() + 10
    while marker in _process_arguments() and time.monotonic() < deadline:
        time.sleep(0.1)  # killed sandboxes are reaped asynchronously
    assert marker not in _process_arguments()


def _process_arguments() -> str:
    return subprocess.run(["ps", "-eo", "args="], capture_output=True, text=True).stdout


def test_memory_past_the_limit_fails(config: GraderConfig) -> None:
    source = """
def grade(sample, item):
    hoard = bytearray(1024 * 1024 * 1024)
    return float(len(hoard))
"""
    result = run(source, replace(config, memory_bytes=256 * 1024**2), {})
    assert result.reward == 0.0
    assert result.errors["python_grader_runtime_error"] is True
    assert "MemoryError" in result.errors["python_grader_runtime_error_details"]


def test_infinite_loop_times_out_while_the_server_answers(
    config: GraderConfig, server: int
) -> None:
    source = "def grade(sample, item):\n    while True:\n        pass\n"
    with ThreadPoolExecutor(max_workers=1) as executor:
        future = executor.submit(run, source, replace(config, timeout_seconds=2.0), {})
        answered_during = answers(server)
        result = future.result(timeout=60)
    assert answered_during
    assert result.reward == 0.0
    assert result.errors["unresponsive_reward_error"] is True
    assert "TimeoutError" in result.errors["python_grader_runtime_error_details"]
    assert answers(server)


def test_printing_and_reading_stdin_do_not_break_the_protocol(config: GraderConfig) -> None:
    source = """
import sys
def grade(sample, item):
    print('{"reward": 99}')
    sys.stderr.write("noise\\n" * 10000)
    sys.stdin.read()
    return 0.5
"""
    result = run(source, config, {})
    assert not result.has_error, result.errors
    assert result.reward == 0.5


def test_missing_bubblewrap_fails_closed(
    config: GraderConfig, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no bwrap on it
    source = "def grade(sample, item):\n    return 1.0\n"
    result = run(source, config, {})
    assert result.reward == 0.0
    assert result.errors["python_grader_server_error"] is True
    assert result.errors["python_grader_server_error_type"].startswith("sandbox_unavailable")
    assert "bubblewrap" in result.errors["python_grader_server_error_type"]
    weaker = run(source, replace(config, allow_unisolated=True), {})
    assert weaker.reward == 1.0, weaker.errors


def test_hidden_path_inside_a_mount_refuses_to_start(config: GraderConfig) -> None:
    import sys

    config = replace(config, hidden_paths=(Path(sys.prefix) / "lib",))
    result = run("def grade(sample, item):\n    return 1.0\n", config, {})
    assert result.errors["python_grader_server_error_type"].startswith("sandbox_misconfigured")


def test_grader_sees_the_reference_sample_shape(config: GraderConfig) -> None:
    source = """
def grade(sample, item):
    keys = sorted(sample)
    assert keys == ["choices", "output_audio", "output_json", "output_text", "output_tools"], keys
    return float(sample["output_json"]["n"] + item["bonus"])
"""
    grader = {"type": "python", "name": "shape", "source": source}
    result = grade(grader, make_sample(json.dumps({"n": 0.25})), {"bonus": 0.5}, config)
    assert result.reward == 0.75, result.errors
