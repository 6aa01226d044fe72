"""Sandbox limits that protect the host: /tmp counts against memory, the seccomp filter refuses
what reaches past the namespaces, and only so many sandboxes run at once."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest

from app.graders import GraderConfig, GradeResult, grade, make_sample

MB = 1024 * 1024


def run(source: str, config: GraderConfig, item: dict | None = None) -> GradeResult:
    grader = {"type": "python", "name": "limits", "source": source}
    return grade(grader, make_sample("x"), item or {}, config)


def runtime_error(result: GradeResult) -> str:
    assert result.reward == 0.0
    assert result.errors["python_grader_runtime_error"] is True, result.errors
    return str(result.errors["python_grader_runtime_error_details"])


@pytest.fixture
def small(config: GraderConfig) -> GraderConfig:
    """256 MB in all for a sandbox, with a file size limit far above it."""
    return replace(config, memory_bytes=256 * MB, file_size_bytes=1024 * MB)


def test_filling_tmp_past_the_memory_limit_fails_cleanly(small: GraderConfig) -> None:
    source = """
def grade(sample, item):
    chunk = b"x" * (1024 * 1024)
    with open("/tmp/fill", "wb") as handle:
        for _ in range(300):  # 300 MB: more than the whole memory limit
            handle.write(chunk)
    return 1.0
"""
    assert "No space left on device" in runtime_error(run(source, small))


def test_tmp_and_allocations_together_stay_under_the_memory_limit(small: GraderConfig) -> None:
    # 100 MB in /tmp fits its share; 200 MB more in the address space would pass 256 MB in all
    source = """
def grade(sample, item):
    with open("/tmp/half", "wb") as handle:
        handle.write(b"x" * (100 * 1024 * 1024))
    hoard = bytearray(200 * 1024 * 1024)
    return float(len(hoard))
"""
    assert "MemoryError" in runtime_error(run(source, small))
    fits = source.replace("200 * 1024 * 1024", "16 * 1024 * 1024")
    assert run(fits, small).reward == 16 * MB


SYSCALL_PROBE = """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWUSER = 0x10000000

def refused(call):
    ctypes.set_errno(0)
    result = call()
    return result == -1 and ctypes.get_errno() == 1  # EPERM

def grade(sample, item):
    probes = {
        "ptrace": lambda: libc.ptrace(0, 0, None, None),  # PTRACE_TRACEME
        "unshare_user": lambda: libc.unshare(CLONE_NEWUSER),
        "mount": lambda: libc.mount(b"none", b"/tmp", b"tmpfs", 0, None),
        "keyctl": lambda: libc.syscall(250, 0, 0, 0, 0, 0),
        "bpf": lambda: libc.syscall(321, 0, 0, 0),
        "userfaultfd": lambda: libc.syscall(323, 0),
        "perf_event_open": lambda: libc.syscall(298, 0, 0, -1, -1, 0),
    }
    open_ = [name for name, call in probes.items() if not refused(call)]
    if open_:
        raise AssertionError(f"allowed: {open_}")
    import subprocess
    command = subprocess.run(["unshare", "-U", "true"], capture_output=True)
    if command.returncode == 0:
        raise AssertionError("unshare -U ran")
    if os.fork() == 0:  # an ordinary fork still works
        os._exit(7)
    _, status = os.wait()
    return float(os.waitstatus_to_exitcode(status))
"""


def test_seccomp_refuses_ptrace_namespaces_mount_and_kernel_interfaces(
    config: GraderConfig,
) -> None:
    result = run(SYSCALL_PROBE, config)
    assert not result.has_error, result.errors
    assert result.reward == 7.0


SLEEPER = "import time\ndef grade(sample, item):\n    time.sleep(1.5)\n    return 1.0\n"


def test_sandboxes_running_at_once_in_a_process_are_capped(config: GraderConfig) -> None:
    capped = replace(config, max_sandboxes=1)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=2) as executor:
        results = list(executor.map(lambda _: run(SLEEPER, capped), range(2)))
    assert [result.reward for result in results] == [1.0, 1.0]
    assert time.monotonic() - started >= 3.0  # one after the other


def test_sandboxes_of_one_grader_are_capped(config: GraderConfig) -> None:
    multi = {
        "type": "multi",
        "name": "two",
        "graders": {
            "a": {"type": "python", "name": "a", "source": SLEEPER},
            "b": {"type": "python", "name": "b", "source": SLEEPER},
        },
        "calculate_output": "a + b",
    }
    timings = {}
    for per_grader in (1, 2):
        capped = replace(config, max_sandboxes=8, max_sandboxes_per_grader=per_grader)
        started = time.monotonic()
        result = grade(multi, make_sample("x"), {}, capped)
        timings[per_grader] = time.monotonic() - started
        assert result.reward == 2.0, result.errors
    assert timings[1] >= 3.0  # one after the other
    assert timings[2] < 3.0  # side by side
