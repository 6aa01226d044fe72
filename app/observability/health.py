"""Liveness and readiness: is this process up, and can it reach what a request needs?"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from celery import Celery
from sqlalchemy import text

from app.db import get_engine
from app.settings import Settings
from app.storage import Storage

CHECK_TIMEOUT_SECONDS = 3.0
Check = Callable[[], None]


@dataclass(frozen=True)
class Readiness:
    checks: dict[str, str]

    @property
    def failing(self) -> list[str]:
        return [name for name, outcome in self.checks.items() if outcome != "ok"]

    def body(self) -> dict[str, object]:
        status = "ready" if not self.failing else "unavailable"
        return {"status": status, "failing": self.failing, "checks": self.checks}


def database_check(settings: Settings) -> Check:
    def check() -> None:
        with get_engine(settings.resolved_database_url).connect() as connection:
            connection.execute(text("SELECT 1"))

    return check


def broker_check(celery: Celery) -> Check:
    def check() -> None:
        with celery.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=CHECK_TIMEOUT_SECONDS)

    return check


def storage_check(storage: Storage) -> Check:
    def check() -> None:
        key = f".health/{secrets.token_hex(8)}"
        storage.write(key, [b"ok"], max_bytes=2)
        storage.delete(key)

    return check


def inference_check(settings: Settings) -> Check:
    def check() -> None:
        url = f"{settings.resolved_inference_url}/health"
        httpx.get(url, timeout=CHECK_TIMEOUT_SECONDS).raise_for_status()

    return check


def _outcome(check: Check) -> str:
    try:
        check()
    except Exception as error:  # a readiness probe reports every failure, whatever its kind
        detail = str(error).strip().splitlines()[0] if str(error).strip() else ""
        return f"error: {type(error).__name__}" + (f": {detail[:200]}" if detail else "")
    return "ok"


def readiness(checks: dict[str, Check]) -> Readiness:
    return Readiness({name: _outcome(check) for name, check in checks.items()})
