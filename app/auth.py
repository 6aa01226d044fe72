"""The API key -> project dependency every /v1 route uses."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from app.db import session_factory
from app.errors import APIError, rate_limited
from app.keys.service import hash_key, project_for_key
from app.observability.logs import project_id_var
from app.projects import ProjectRef
from app.rate_limits import RequestRateLimiter, format_duration
from app.reads import Reads
from app.settings import Settings


async def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


async def get_session(
    request: Request, settings: Settings = Depends(get_settings_dep)
) -> AsyncIterator[Session]:
    """The request's session, admitted only while a pooled connection is sure to be free.

    A request must never hold a connection while it waits for a thread, nor a thread wait for
    a connection held by such a request, or a burst of requests deadlocks until the pool's
    30 s timeout (FastAPI hops threads between dependencies, the route and its response
    serialisation). So at most POOL_SIZE requests hold a session at once; the others wait
    here, on the event loop, holding neither a thread nor a connection. The session closes
    on the loop too, so giving its connection back needs no thread.
    """
    slots: asyncio.Semaphore = request.app.state.session_slots
    async with slots:
        session = session_factory(settings)()
        try:
            yield session
        finally:
            session.close()


def bearer_token(request: Request) -> str | None:
    """The request's API key, as sent."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def reads(request: Request) -> Reads:
    return request.app.state.reads


async def current_project(request: Request) -> ProjectRef:
    """The project of the request's API key, read without a thread hop (`app.reads`)."""
    token = bearer_token(request)
    if token is None:
        raise APIError(
            401,
            "You didn't provide an API key. Send it as 'Authorization: Bearer YOUR_KEY'.",
            code="invalid_api_key",
        )
    project = await project_for_key(reads(request), token)
    if project is None:
        raise APIError(401, "Incorrect API key provided.", code="invalid_api_key")
    project_id_var.set(project.id)
    _apply_rate_limit(request, token)
    return project


def _apply_rate_limit(request: Request, token: str) -> None:
    limiter: RequestRateLimiter | None = request.app.state.request_limits
    if limiter is None:
        return
    decision = limiter.take(hash_key(token))
    # the request-id middleware puts these on whatever response this request gets
    request.state.response_headers = decision.headers()
    if not decision.allowed:
        error = rate_limited(
            f"Rate limit reached for requests: limit {decision.limit} per minute for this key. "
            f"Retry in {format_duration(decision.retry_after_seconds)}.",
            decision.retry_after_seconds,
        )
        error.headers.update(decision.headers())
        raise error
