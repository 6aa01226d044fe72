"""APIError and the OpenAI error envelope every failure is rendered in."""

from __future__ import annotations

from typing import Any


class APIError(Exception):
    """A failure to report to the client as `{"error": {message, type, param, code}}`."""

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        type: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.param = param
        self.code = code
        self.type = type
        self.headers: dict[str, str] = {}

    def envelope(self) -> dict[str, Any]:
        return error_envelope(self.message, type=self.type, param=self.param, code=self.code)


def error_envelope(
    message: str,
    *,
    type: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def not_found(kind: str, object_id: str, param: str | None = None) -> APIError:
    return APIError(404, f"No such {kind}: '{object_id}'", param=param, code=f"{kind}_not_found")


def bad_request(message: str, *, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)


def rate_limited(message: str, retry_after_seconds: float) -> APIError:
    """OpenAI's 429 (`rate_limit_exceeded`), with `retry-after` so the SDK waits and retries."""
    error = APIError(429, message, code="rate_limit_exceeded", type="requests")
    error.headers["retry-after"] = str(max(1, round(retry_after_seconds)))
    return error
