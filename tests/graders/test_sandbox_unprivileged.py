"""The process limit holds when the service does not run as root: bubblewrap then gives the
sandbox a user namespace of its own, where RLIMIT_NPROC counts the sandbox's processes only.

The sandbox is started as `nobody` with the system's Python (the test's own interpreter may
live where `nobody` cannot read), speaking the runner's protocol by hand.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from app.graders import GraderConfig, make_sample
from app.graders.sandbox import RUNNER_PATH, Isolation, isolated_command

NOBODY = 65534
SYSTEM_PYTHON = "/usr/bin/python3"
FORK_BOMB = """
import os
def grade(sample, item):
    children = 0
    for _ in range(500):
        try:
            if os.fork() == 0:
                os.execv("/usr/bin/sleep", ["sleep", "5"])
            children += 1
        except OSError:
            break
    return float(children)
"""


def _readable_by_anyone(path: Path) -> bool:
    folders_open = all(os.stat(folder).st_mode & 0o001 for folder in path.parents)
    return folders_open and bool(os.stat(path).st_mode & 0o004)


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root to start the sandbox as nobody"
    for tool in ("bwrap", "setpriv"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not Path(SYSTEM_PYTHON).exists():
        return f"no {SYSTEM_PYTHON}"
    if not _readable_by_anyone(RUNNER_PATH):
        return f"nobody cannot read {RUNNER_PATH}"
    return None


def test_the_process_limit_holds_without_root(config: GraderConfig) -> None:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    isolation = Isolation(privileged=False, python=SYSTEM_PYTHON, python_roots=())
    command = isolated_command(replace(config, max_processes=16), "bwrap", isolation)
    assert "--unshare-user" in command.argv
    as_nobody = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    assert command.seccomp_fd is not None
    try:
        sandbox = subprocess.Popen(
            [*as_nobody, *command.argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=(command.seccomp_fd,),
            start_new_session=True,
        )
    finally:
        command.close_seccomp_fd()
    messages = [{"source": FORK_BOMB}, {"pairs": [[make_sample("x"), {}]]}]
    request = "".join(json.dumps(message) + "\n" for message in messages).encode()
    try:
        output, errors = sandbox.communicate(request, timeout=60)
    finally:
        if sandbox.poll() is None:
            os.killpg(sandbox.pid, 9)
    replies = [json.loads(line) for line in output.splitlines()]
    assert replies and replies[0] == {"loaded": True}, (replies, errors.decode()[-2000:])
    children = replies[1]["reward"]
    assert 0 < children < 16, replies
