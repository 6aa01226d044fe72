"""Warm sandboxed workers for one python grader, and the pool that spreads a batch over them."""

from __future__ import annotations

import json
import logging
import math
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from app.graders.config import GraderConfig
from app.graders.sandbox import SandboxUnavailable, sandbox_command
from app.graders.sandbox_slots import SandboxSlots, process_slots, running_slots

logger = logging.getLogger("openrft.graders")

MAX_MESSAGE_BYTES = 16 * 1024 * 1024


@dataclass
class Outcome:
    """What became of one grade: a reward, or the error that replaced it."""

    reward: float = 0.0
    seconds: float = 0.0
    runtime_error: str | None = None  # the grader's traceback
    server_error: str | None = None  # python_grader_server_error_type: the sandbox failed
    timed_out: bool = False


class WorkerGone(Exception):
    """The worker died, hung or broke the protocol; it has been killed."""

    def __init__(self, reason: str, timed_out: bool = False) -> None:
        super().__init__(reason)
        self.timed_out = timed_out
        self.done: list[Outcome] = []  # outcomes of the batch received before it went


class SandboxWorker:
    """One sandboxed process with one grader's source loaded."""

    def __init__(self, source: str, config: GraderConfig) -> None:
        self.config = config
        command = sandbox_command(config)
        self._private_dir = command.private_dir
        self._stderr = tempfile.TemporaryFile()
        try:
            self.process = subprocess.Popen(
                command.argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                env={"PATH": "/usr/bin:/bin"},
                cwd=self._private_dir or "/",
                start_new_session=True,
                close_fds=True,
                pass_fds=() if command.seccomp_fd is None else (command.seccomp_fd,),
            )
        finally:
            command.close_seccomp_fd()
        assert self.process.stdin is not None and self.process.stdout is not None
        self._input, self._output = self.process.stdin, self.process.stdout
        self._buffer = bytearray()
        os.set_blocking(self._input.fileno(), False)
        self.load_error: str | None = None
        self._send({"source": source})
        reply = self._receive(config.timeout_seconds)
        if not reply.get("loaded"):
            self.load_error = str(reply.get("details") or "the source did not load")

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def grade(self, pairs: list[tuple[dict, dict]]) -> list[Outcome]:
        """Grade pairs in order; stops at the first pair that kills or hangs the worker
        (raising WorkerGone with the outcomes so far in `.done`)."""
        self._send({"pairs": pairs})
        outcomes: list[Outcome] = []
        for _ in pairs:
            try:
                reply = self._receive(self.config.timeout_seconds)
            except WorkerGone as gone:
                gone.done = outcomes
                raise
            outcome = _outcome(reply)
            if outcome is None:
                # the grader's code can reach the protocol's pipe: what it wrote there is junk
                broken = self._fail("the sandbox broke its protocol")
                broken.done = outcomes
                raise broken
            outcomes.append(outcome)
        return outcomes

    def kill(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait()
        for stream in (self._input, self._output, self._stderr):
            try:
                stream.close()
            except OSError:
                pass
        if self._private_dir:
            shutil.rmtree(self._private_dir, ignore_errors=True)

    def _fail(self, reason: str, timed_out: bool = False) -> WorkerGone:
        self.kill()
        return WorkerGone(reason, timed_out)

    def _send(self, message: dict) -> None:
        data = memoryview(json.dumps(message, default=str).encode() + b"\n")
        deadline = time.monotonic() + self.config.timeout_seconds
        fd = self._input.fileno()
        while data:
            if not _wait(fd, select.POLLOUT, deadline):
                raise self._fail("the sandbox stopped reading its input", timed_out=True)
            try:
                data = data[os.write(fd, data) :]
            except BlockingIOError:
                continue
            except BrokenPipeError:
                raise self._fail(self._exit_reason()) from None

    def _receive(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        fd = self._output.fileno()
        while b"\n" not in self._buffer:
            if not _wait(fd, select.POLLIN, deadline):
                raise self._fail(f"grading ran past the {timeout:g} s wall-time limit", True)
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise self._fail(self._exit_reason())
            self._buffer += chunk
            if len(self._buffer) > MAX_MESSAGE_BYTES:
                raise self._fail("the sandbox sent an oversized message")
        line, _, rest = bytes(self._buffer).partition(b"\n")
        self._buffer = bytearray(rest)
        try:
            reply = json.loads(line)
        except ValueError:
            raise self._fail("the sandbox broke its protocol") from None
        if not isinstance(reply, dict):
            raise self._fail("the sandbox broke its protocol")
        return reply

    def _exit_reason(self) -> str:
        try:
            code = self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return "the sandbox closed its output"
        if code < 0:
            name = signal.Signals(-code).name
            hint = {"SIGXCPU": " (CPU time limit)", "SIGKILL": " (killed)"}.get(name, "")
            return f"the sandbox was killed by {name}{hint}"
        self._stderr.seek(0)
        detail = self._stderr.read(2000).decode(errors="replace").strip()
        return f"the sandbox exited with status {code}" + (f": {detail}" if detail else "")


def _finite_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _outcome(reply: dict) -> Outcome | None:
    """A grade's outcome from the runner's reply; None for anything the runner never sends."""
    seconds = reply.get("time")
    if (
        not isinstance(seconds, int | float)
        or not _finite_number(seconds)
        or set(reply) not in ({"reward", "time"}, {"error", "time"})
    ):
        return None
    if "error" in reply:
        error = reply["error"]
        return Outcome(runtime_error=error, seconds=seconds) if isinstance(error, str) else None
    reward = reply["reward"]
    return Outcome(reward=float(reward), seconds=seconds) if _finite_number(reward) else None


def _wait(fd: int, event: int, deadline: float) -> bool:
    poller = select.poll()
    poller.register(fd, event | select.POLLHUP | select.POLLERR)
    remaining = deadline - time.monotonic()
    while remaining > 0:
        if poller.poll(remaining * 1000):
            return True
        remaining = deadline - time.monotonic()
    return False


class SandboxPool:
    """Up to `size` warm workers for one source; a batch is split across them."""

    def __init__(
        self,
        source: str,
        config: GraderConfig,
        size: int | None = None,
        grader_slots: SandboxSlots | None = None,
    ) -> None:
        self.source = source
        self.config = config
        self.size = max(1, size or config.sandbox_pool_size)
        self._workers: list[SandboxWorker | None] = [None] * self.size
        self._executor = ThreadPoolExecutor(max_workers=self.size)
        self._slots = [process_slots(config.max_sandboxes)]
        if grader_slots is not None:
            self._slots.insert(0, grader_slots)

    def grade(self, pairs: list[tuple[dict, dict]]) -> list[Outcome]:
        """Grade pairs in order on as many warm workers as running slots allow."""
        if not pairs:
            return []
        with running_slots(min(self.size, len(pairs)), *self._slots) as running:
            return self._grade_on(pairs, running)

    def _grade_on(self, pairs: list[tuple[dict, dict]], chunk_count: int) -> list[Outcome]:
        bounds = [len(pairs) * index // chunk_count for index in range(chunk_count + 1)]
        futures = [
            self._executor.submit(self._grade_chunk, slot, pairs[bounds[slot] : bounds[slot + 1]])
            for slot in range(chunk_count)
        ]
        return [outcome for future in futures for outcome in future.result()]

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        for slot, worker in enumerate(self._workers):
            if worker is not None:
                worker.kill()
                self._workers[slot] = None

    def _worker(self, slot: int) -> SandboxWorker:
        worker = self._workers[slot]
        if worker is None or not worker.alive:
            if worker is not None:
                worker.kill()
            worker = SandboxWorker(self.source, self.config)
            self._workers[slot] = worker
        return worker

    def _grade_chunk(self, slot: int, pairs: list[tuple[dict, dict]]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        while len(outcomes) < len(pairs):
            try:
                worker = self._worker(slot)
            except SandboxUnavailable as exc:
                logger.error("python grader sandbox unavailable: %s", exc)
                failed = Outcome(server_error=f"{exc.kind}: {exc}")
                return outcomes + [failed] * (len(pairs) - len(outcomes))
            except WorkerGone as gone:
                failed = _lost(gone, starting=True)
                return outcomes + [failed] * (len(pairs) - len(outcomes))
            except OSError as exc:  # the sandbox's executable could not be started at all
                failed = Outcome(server_error=f"sandbox_start_failed: {exc}")
                return outcomes + [failed] * (len(pairs) - len(outcomes))
            if worker.load_error is not None:
                failed = Outcome(runtime_error=worker.load_error)
                return outcomes + [failed] * (len(pairs) - len(outcomes))
            try:
                outcomes += worker.grade(pairs[len(outcomes) :])
            except WorkerGone as gone:
                # the pair being graded is lost with the worker; the rest go to a new one
                outcomes += gone.done
                outcomes.append(_lost(gone, starting=False))
        return outcomes


def _lost(gone: WorkerGone, *, starting: bool) -> Outcome:
    if gone.timed_out:
        return Outcome(runtime_error=f"TimeoutError: {gone}", timed_out=True)
    kind = "sandbox_start_failed" if starting else "sandbox_crashed"
    return Outcome(server_error=f"{kind}: {gone}")
