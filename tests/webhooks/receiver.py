"""A real HTTP server on localhost that records the webhooks it receives."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Answers 200, or for a path the statuses queued with `answer` first (one per request)."""

    base_url: str
    received: list[Received] = field(default_factory=list)
    answers: dict[str, list[tuple[int, dict[str, str]]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def answer(self, path: str, status: int, headers: dict[str, str] | None = None) -> None:
        with self.lock:
            self.answers.setdefault(path, []).append((status, headers or {}))

    def at(self, path: str) -> list[Received]:
        with self.lock:
            return [request for request in self.received if request.path == path]

    def wait_for(self, path: str, count: int, timeout: float = 60.0) -> list[Received]:
        """The first `count` requests to `path`; fails when fewer arrive in time."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            requests = self.at(path)
            if len(requests) >= count:
                return requests
            time.sleep(0.05)
        raise AssertionError(f"{len(self.at(path))} requests to {path}, expected {count}")


@contextmanager
def running_receiver() -> Iterator[Receiver]:
    receiver: Receiver

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (the http.server name)
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            with receiver.lock:
                receiver.received.append(
                    Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                )
                queued = receiver.answers.get(self.path)
                status, headers = queued.pop(0) if queued else (200, {})
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver = Receiver(f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
