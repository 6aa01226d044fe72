"""A multipart upload sent with chunked transfer encoding (no Content-Length) over a raw
socket, a chunk at a time, stopping as soon as the server answers."""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

BOUNDARY = "chunkedb0undary"


@dataclass
class ChunkedAnswer:
    status: int
    error: dict
    body_bytes_sent: int


def _answer_arrived(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return bool(sock.recv(1, socket.MSG_PEEK))
    except BlockingIOError:
        return False
    except OSError:
        return True  # reset: the server is done with us
    finally:
        sock.setblocking(True)


def post_chunked_form(
    base_url: str, path: str, api_key: str, fields: dict[str, str], file_field: str,
    file_bytes: int, chunk_bytes: int = 16 * 1024, pause_seconds: float = 0.005,
) -> ChunkedAnswer:  # fmt: skip
    """POSTs `fields` and a file of `file_bytes` bytes to `path` in chunks of `chunk_bytes`,
    `pause_seconds` apart (so the kernel's socket buffers do not take megabytes the server
    never read); the answer, and how many body bytes went out before it came."""
    url = urlsplit(base_url)
    head = "".join(
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in fields.items()
    )
    head += (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{file_field}"; '
        'filename="big.jsonl"\r\nContent-Type: application/octet-stream\r\n\r\n'
    )
    sent = 0
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        sock.sendall(
            (
                f"POST {url.path.rstrip('/')}{path} HTTP/1.1\r\nHost: {url.netloc}\r\n"
                f"Authorization: Bearer {api_key}\r\nTransfer-Encoding: chunked\r\n"
                f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n\r\n"
            ).encode()
        )
        pieces = [head.encode()] + [b"x" * chunk_bytes] * (file_bytes // chunk_bytes)
        pieces.append(f"\r\n--{BOUNDARY}--\r\n".encode())
        for piece in pieces:
            if _answer_arrived(sock):
                break
            try:
                sock.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            except OSError:
                break
            sent += len(piece)
            time.sleep(pause_seconds)
        else:
            sock.sendall(b"0\r\n\r\n")
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    header, _, body = answer.partition(b"\r\n\r\n")
    status = int(header.split(b" ", 2)[1])
    return ChunkedAnswer(status, json.loads(body)["error"] if status >= 400 else {}, sent)
