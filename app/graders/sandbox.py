"""Sandboxed processes for python graders: bubblewrap isolation plus resource limits.

Each worker is one process that loads one grader's source and grades many (sample, item)
pairs sent over a pipe. Under bubblewrap it has no network (a fresh network namespace, so not
even the host's loopback), its own pid/ipc/uts namespaces, a read-only view of the Python
installation and nothing else of the host's files (no data dir, database or other tenants'
files), a private tmpfs as working directory, an empty environment, a seccomp filter
(`app.graders.seccomp_filter`), and its own uid (as root) or its own user namespace (as any
other user) so that the process limit counts its processes alone. The runner sets CPU,
memory, file-size, process and open-file limits on itself before any grader code runs; this
side enforces the wall-time limit per grade and kills the worker when it is exceeded.

Memory: the tmpfs lives in the host's memory, outside the process's address space, so the
memory limit is split: at most half of it for /tmp, the rest for the address space. A grader
that fills /tmp gets "No space left on device", one that allocates gets MemoryError, and
together they never hold more than `memory_bytes`.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import stat
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from app.graders.config import GraderConfig
from app.graders.seccomp_filter import SeccompUnavailable, filter_fd

RUNNER_PATH = Path(__file__).with_name("sandbox_runner.py")
RUNNER_MOUNT = "/opt/openrft/sandbox_runner.py"
# A worker's CPU budget across all its grades is this many per-grade timeouts; the runner
# exits before it is spent and the next batch starts a fresh one.
CPU_BUDGET_TIMEOUTS = 32
# uids handed to sandboxes, far from any real account's
SANDBOX_UID_RANGE = (1_000_000, 2_000_000_000)
SANDBOX_ENVIRONMENT = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": "/tmp",
    "LANG": "C.UTF-8",
    "PYTHONDONTWRITEBYTECODE": "1",
    # one thread per numeric library: threads count against the process limit
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}


class SandboxUnavailable(RuntimeError):
    """The sandbox cannot run here; `kind` becomes python_grader_server_error_type."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _python_roots() -> list[Path]:
    """Directories the interpreter and its packages live in."""
    roots = {Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve()}
    roots.add(Path(os.path.realpath(sys.executable)).parent.parent)
    return sorted(root for root in roots if not root.is_relative_to("/usr"))


def _parents(path: Path) -> list[Path]:
    return [parent for parent in reversed(path.parents) if parent != Path("/")]


def tmp_bytes(config: GraderConfig) -> int:
    """The size of the sandbox's /tmp: its share of the memory limit, at most the file size."""
    return min(config.file_size_bytes, config.memory_bytes // 2)


@dataclass(frozen=True)
class Isolation:
    """Who starts the sandbox and with which interpreter: root hands each sandbox a uid of
    its own, anyone else a user namespace of its own."""

    privileged: bool
    python: str
    python_roots: tuple[Path, ...]

    @classmethod
    def here(cls) -> Isolation:
        return cls(os.geteuid() == 0, sys.executable, tuple(_python_roots()))


def _bwrap_arguments(
    config: GraderConfig, bwrap: str, seccomp_fd: int, isolation: Isolation
) -> list[str]:
    arguments = [
        bwrap,
        "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts",
        "--unshare-cgroup-try", "--die-with-parent", "--new-session",
        "--hostname", "sandbox", "--clearenv",
        "--seccomp", str(seccomp_fd),
        "--ro-bind", "/usr", "/usr",
    ]  # fmt: skip
    if not isolation.privileged:
        # a user namespace of its own: RLIMIT_NPROC then counts the sandbox's processes,
        # not every process of the service's user
        arguments.append("--unshare-user")
    for top in ("bin", "lib", "lib32", "lib64", "sbin"):
        host = Path("/") / top
        if host.is_symlink():
            arguments += ["--symlink", os.readlink(host), str(host)]
        elif host.is_dir():
            arguments += ["--ro-bind", str(host), str(host)]
    # the private /tmp comes before the Python mounts: a virtualenv may itself live under /tmp
    arguments += ["--perms", "1777", "--size", str(tmp_bytes(config)), "--tmpfs", "/tmp"]
    made: set[Path] = {Path("/tmp")}
    roots = isolation.python_roots
    for root in [*roots, Path(RUNNER_MOUNT)]:
        for parent in _parents(root):
            if parent not in made and not parent.is_relative_to("/usr"):
                # bubblewrap makes missing directories 0700, unreadable once we drop root
                arguments += ["--perms", "0755", "--dir", str(parent)]
                made.add(parent)
    for root in roots:
        arguments += ["--ro-bind", str(root), str(root)]
    arguments += [
        "--ro-bind", str(RUNNER_PATH), RUNNER_MOUNT,
        "--proc", "/proc", "--dev", "/dev",
        "--remount-ro", "/", "--chdir", "/tmp",
    ]  # fmt: skip
    for name, value in SANDBOX_ENVIRONMENT.items():
        arguments += ["--setenv", name, value]
    if isolation.privileged:
        # kept only until the runner switches to its own uid, which clears them
        arguments += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    return arguments


def check_hidden_paths(config: GraderConfig) -> None:
    """Refuse to start when a path that must stay hidden sits inside a mounted directory."""
    mounted = [*_python_roots(), Path("/usr")]
    for hidden in config.hidden_paths:
        hidden = hidden.resolve()
        for root in mounted:
            if hidden.is_relative_to(root):
                raise SandboxUnavailable(
                    "sandbox_misconfigured",
                    f"{hidden} must stay hidden but lies inside {root}, which the sandbox mounts",
                )


def _limits(config: GraderConfig, isolated: bool, privileged: bool) -> dict[str, int]:
    limits = {
        "AS": config.memory_bytes - tmp_bytes(config) if isolated else config.memory_bytes,
        "CPU": int(config.timeout_seconds * CPU_BUDGET_TIMEOUTS) + 1,
        "FSIZE": config.file_size_bytes,
        "NOFILE": 256,
        "CORE": 0,
    }
    if isolated or privileged:
        # only meaningful under a uid (root) or a user namespace (bubblewrap as any other
        # user) of the sandbox's own
        limits["NPROC"] = config.max_processes
    return limits


def _runner_options(uid: int | None, limits: dict[str, int], config: GraderConfig) -> str:
    return json.dumps({"uid": uid, "timeout_seconds": config.timeout_seconds, "limits": limits})


def _world_readable(path: Path) -> bool:
    return all(os.stat(part).st_mode & stat.S_IXOTH for part in [*path.parents, path])


@dataclass
class SandboxCommand:
    """How to start one worker: its argv, the private directory to delete after it (only in
    the weaker unisolated mode, where no tmpfs is made for it), and the seccomp filter's file
    descriptor to pass to bubblewrap (closed by `close_seccomp_fd` once it started)."""

    argv: list[str]
    private_dir: str | None = None
    seccomp_fd: int | None = None

    def close_seccomp_fd(self) -> None:
        if self.seccomp_fd is not None:
            os.close(self.seccomp_fd)
            self.seccomp_fd = None


def isolated_command(config: GraderConfig, bwrap: str, isolation: Isolation) -> SandboxCommand:
    """The bubblewrap command that starts one worker as `isolation` says."""
    uid = random.randrange(*SANDBOX_UID_RANGE) if isolation.privileged else None
    try:
        seccomp_fd = filter_fd()
    except SeccompUnavailable as error:
        raise SandboxUnavailable("sandbox_unavailable", str(error)) from None
    command = [*_bwrap_arguments(config, bwrap, seccomp_fd, isolation), isolation.python, "-I"]
    limits = _limits(config, isolated=True, privileged=isolation.privileged)
    options = _runner_options(uid, limits, config)
    return SandboxCommand([*command, RUNNER_MOUNT, options], seccomp_fd=seccomp_fd)


def sandbox_command(config: GraderConfig) -> SandboxCommand:
    """The command that starts one worker; raises SandboxUnavailable when it cannot be
    isolated (and the weaker mode was not allowed)."""
    bwrap = shutil.which("bwrap")
    if bwrap is not None:
        check_hidden_paths(config)
        return isolated_command(config, bwrap, Isolation.here())
    uid: int | None = random.randrange(*SANDBOX_UID_RANGE) if os.geteuid() == 0 else None
    if not config.allow_unisolated:
        raise SandboxUnavailable(
            "sandbox_unavailable",
            "bubblewrap (bwrap) is not installed, so python graders cannot be isolated; "
            "install it (apt-get install bubblewrap) or set OPENRFT_GRADER_ALLOW_UNISOLATED=true "
            "to accept resource limits without isolation",
        )
    limits = _limits(config, isolated=False, privileged=os.geteuid() == 0)
    private_dir = tempfile.mkdtemp(prefix="openrft-grader-")
    if not all(_world_readable(root) for root in _python_roots()):
        # another uid could not even import the standard library
        uid = None
        limits.pop("NPROC", None)
    if uid is not None:
        os.chown(private_dir, uid, uid)
    options = _runner_options(uid, limits, config)
    return SandboxCommand([sys.executable, "-I", str(RUNNER_PATH), options], private_dir)
