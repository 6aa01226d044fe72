"""Multipart bodies read within a size limit, whether or not the client declared a length."""

from __future__ import annotations

from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.types import Message

from app.errors import APIError

# multipart framing around the file itself
FORM_OVERHEAD_BYTES = 64 * 1024


async def form_within(
    request: Request, max_file_bytes: int, too_large: APIError, **limits: Any
) -> FormData:
    """The request's form, refused with `too_large` as soon as the body passes
    `max_file_bytes` plus the form's framing: at once for a declared Content-Length, else
    when the bytes that arrived pass it, so a chunked body is never spooled beyond the limit.
    `limits` go to Starlette's form parser (`max_files`, `max_fields`)."""
    max_body = max_file_bytes + FORM_OVERHEAD_BYTES
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_body:
        raise too_large
    received = 0

    async def receive_within() -> Message:
        nonlocal received
        message = await request.receive()
        received += len(message.get("body", b""))
        if received > max_body:
            raise too_large
        return message

    return await Request(request.scope, receive_within).form(**limits)
