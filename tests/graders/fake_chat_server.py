"""A real OpenAI-compatible chat completions server on 127.0.0.1 whose answers the test
steers through the last user message: `score 0.7`, `label good`, `refuse`, `garbage`,
`fenced 0.4`, `fail 500`, `flaky` (503 once, then a score of 1)."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class Recorded:
    requests: list[dict] = field(default_factory=list)
    headers: list[dict] = field(default_factory=list)
    flaky_seen: set[str] = field(default_factory=set)


def _answer(directive: str, recorded: Recorded) -> tuple[int, dict]:
    verb, _, argument = directive.partition(" ")
    message: dict = {"role": "assistant", "content": None}
    if verb == "fail":
        return int(argument), {"error": {"message": "boom", "type": "server_error"}}
    if verb == "flaky" and argument not in recorded.flaky_seen:
        recorded.flaky_seen.add(argument)
        return 503, {"error": {"message": "busy"}}
    if verb == "refuse":
        message["refusal"] = "I can't help with that."
    elif verb == "garbage":
        message["content"] = "I think it is quite good"
    elif verb == "fenced":
        message["content"] = f'```json\n{{"result": {argument}, "steps": []}}\n```'
    elif verb == "label":
        message["content"] = json.dumps({"result": argument})
    elif verb == "bare":
        message["content"] = argument
    else:
        score = argument if verb == "score" else "1"
        message["content"] = f'{{"result": {score}, "steps": []}}'
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "judge-2025-01-01",
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": 11,
            "completion_tokens": 5,
            "total_tokens": 16,
            "prompt_tokens_details": {"cached_tokens": 2},
        },
    }
    return 200, body


def _handler(recorded: Recorded) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            recorded.requests.append(request)
            recorded.headers.append(dict(self.headers))
            user_texts = [m["content"] for m in request["messages"] if m["role"] == "user"]
            status, body = _answer(str(user_texts[-1]).strip(), recorded)
            if self.path != "/v1/chat/completions":
                status, body = 404, {"error": {"message": f"no route {self.path}"}}
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@contextmanager
def fake_chat_server() -> Iterator[tuple[str, Recorded]]:
    recorded = Recorded()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(recorded))
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", recorded
    finally:
        httpd.shutdown()
        httpd.server_close()
