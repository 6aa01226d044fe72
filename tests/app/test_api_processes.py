"""Several API processes: connections dealt out evenly, a dead process replaced, a clean stop."""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from app.api_processes import HUNG_SECONDS
from tests.services import REPO_ROOT, free_port, stop_process

_ESTABLISHED = "01"
# logged by the parent once a process is dealt connections
_TAKING = "takes connections"


def _children(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(child) for child in children]


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for link in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(link)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def _served_connections(port: int, pid: int) -> int:
    """Established TCP connections on `port` whose server end process `pid` holds."""
    inodes = _socket_inodes(pid)
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].split(":")[1], 16)
        if local_port == port and fields[3] == _ESTABLISHED and fields[9] in inodes:
            count += 1
    return count


def _connections_by_process(port: int, parent: int) -> list[int]:
    return sorted(_served_connections(port, child) for child in _children(parent))


def _get(connection: http.client.HTTPConnection, path: str) -> int:
    connection.request("GET", path)
    answer = connection.getresponse()
    answer.read()
    return answer.status


def _wait_for(condition, seconds: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


@contextmanager
def _api(tmp_path: Path, workers: int) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("OPENRFT_")}
    env.update(
        OPENRFT_DATA_DIR=str(tmp_path / "data"), OPENRFT_QUEUE_NAME=f"processes-{os.getpid()}",
        OPENRFT_API_KEY="sk-processes", OPENRFT_API_WORKERS=str(workers),
    )  # fmt: skip
    port = free_port()
    log = tmp_path / "api.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "api", "--migrate", "--port", str(port)],
            env=env, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        _wait_for(lambda: log.read_text().count(_TAKING) >= workers, 60,
                  "the API processes did not start")  # fmt: skip
        yield server, port, log
    finally:
        stop_process(server)


def test_connections_are_dealt_evenly_and_a_dead_process_is_replaced(tmp_path: Path) -> None:
    with _api(tmp_path, workers=2) as (server, port, log):
        connections = [http.client.HTTPConnection("127.0.0.1", port, timeout=10) for _ in range(8)]
        assert all(_get(connection, "/health") == 200 for connection in connections)
        # uvicorn's shared socket gave a burst of connections mostly to one process
        assert [n for n in _connections_by_process(port, server.pid) if n] == [4, 4]

        victim = next(child for child in _children(server.pid)
                      if _served_connections(port, child))  # fmt: skip
        os.kill(victim, signal.SIGKILL)
        _wait_for(lambda: "starting another" in log.read_text(), 30, log.read_text())
        _wait_for(lambda: log.read_text().count(_TAKING) >= 3, 60,
                  "no process replaced the one that died")  # fmt: skip
        # the connections the dead process held are gone; new ones are served by both
        for connection in connections:
            connection.close()
        fresh = [http.client.HTTPConnection("127.0.0.1", port, timeout=10) for _ in range(6)]
        assert all(_get(connection, "/health") == 200 for connection in fresh)
        assert [n for n in _connections_by_process(port, server.pid) if n] == [3, 3]

        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0
        assert "Stopping parent process" in log.read_text()
        for connection in fresh:
            connection.close()


def test_a_process_that_cannot_start_stops_the_api_with_status_3(tmp_path: Path) -> None:
    port = free_port()
    program = (
        "import uvicorn\n"
        "from app.api_processes import serve_in_processes\n"
        f"serve_in_processes(uvicorn.Config('app.no_such_module:app', port={port}), 2)\n"
    )
    finished = subprocess.run(
        [sys.executable, "-c", program], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert finished.returncode == 3, finished.stderr
    assert "failed to start; stopping" in finished.stderr


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


def test_workers_stop_when_the_parent_is_killed(tmp_path: Path) -> None:
    with _api(tmp_path, workers=2) as (server, port, _log):
        workers = _children(server.pid)
        assert len(workers) >= 2
        server.kill()
        server.wait(timeout=30)
        # nothing is left holding requests that nobody can hand out any more
        _wait_for(lambda: all(_gone(pid) for pid in workers), 30, "a worker outlived its parent")


def test_a_stuck_process_is_passed_over_then_replaced(tmp_path: Path) -> None:
    with _api(tmp_path, workers=2) as (server, port, log):
        stuck = _children(server.pid)
        stuck_pid = next(pid for pid in stuck if log.read_text().count(f"[{pid}] takes"))
        os.kill(stuck_pid, signal.SIGSTOP)  # its event loop no longer runs
        answered = 0
        for _ in range(6):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            try:
                answered += _get(connection, "/health") == 200
            except TimeoutError:
                pass  # the one connection sent before it was seen not to read them
            finally:
                connection.close()
        assert answered >= 5
        _wait_for(lambda: "killing it" in log.read_text(), HUNG_SECONDS + 10, log.read_text())
        _wait_for(lambda: log.read_text().count(_TAKING) >= 3, 60, "no process replaced it")
        assert _gone(stuck_pid)
        fresh = [http.client.HTTPConnection("127.0.0.1", port, timeout=10) for _ in range(4)]
        assert all(_get(connection, "/health") == 200 for connection in fresh)
        assert [n for n in _connections_by_process(port, server.pid) if n] == [2, 2]
        for connection in fresh:
            connection.close()
