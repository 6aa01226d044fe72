"""A small client for an OpenAI-compatible chat completions endpoint, used by model graders."""

from __future__ import annotations

import time
from dataclasses import dataclass

import httpx

from app.graders.config import GraderConfig
from app.graders.errors import GraderError

RETRIED_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
RETRY_BACKOFF_SECONDS = 0.25


@dataclass
class ChatReply:
    content: str | None
    refusal: str | None
    finish_reason: str | None
    model: str
    usage: dict[str, int] | None


def _usage(body: dict) -> dict[str, int] | None:
    usage = body.get("usage")
    if not isinstance(usage, dict):
        return None
    details = usage.get("prompt_tokens_details") or {}
    prompt, completion = (
        int(usage.get("prompt_tokens") or 0),
        int(usage.get("completion_tokens") or 0),
    )
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": int(usage.get("total_tokens") or prompt + completion),
        "cached_tokens": int(details.get("cached_tokens") or 0),
    }


def _reply(body: object, requested_model: str) -> ChatReply:
    choices = body.get("choices") if isinstance(body, dict) else None
    choice = choices[0] if isinstance(choices, list) and choices else None
    message = choice.get("message") if isinstance(choice, dict) else None
    if not isinstance(body, dict) or not isinstance(choice, dict) or not isinstance(message, dict):
        raise GraderError("model_grader_server_error", "the response has no choices[0].message")
    return ChatReply(
        content=message.get("content"),
        refusal=message.get("refusal"),
        finish_reason=choice.get("finish_reason"),
        model=str(body.get("model") or requested_model),
        usage=_usage(body),
    )


class ChatClient:
    def __init__(self, config: GraderConfig) -> None:
        if not config.model_base_url:
            raise GraderError("model_grader_server_error", "no grader model endpoint is configured")
        headers = (
            {"Authorization": f"Bearer {config.model_api_key}"} if config.model_api_key else {}
        )
        self.max_retries = config.model_max_retries
        self.http = httpx.Client(
            base_url=config.model_base_url.rstrip("/") + "/",
            headers=headers,
            timeout=config.model_timeout_seconds,
        )

    def complete(self, body: dict) -> ChatReply:
        """POST chat/completions; GraderError(model_grader_server_error) on any failure."""
        for attempt in range(self.max_retries + 1):
            last_attempt = attempt == self.max_retries
            try:
                response = self.http.post("chat/completions", json=body)
            except httpx.HTTPError as exc:
                if last_attempt:
                    detail = f"{type(exc).__name__}: {exc}"
                    raise GraderError("model_grader_server_error", detail) from None
            else:
                if response.status_code < 400:
                    try:
                        return _reply(response.json(), body["model"])
                    except ValueError:
                        raise GraderError(
                            "model_grader_server_error", "the response is not JSON"
                        ) from None
                if last_attempt or response.status_code not in RETRIED_STATUSES:
                    detail = f"HTTP {response.status_code}: {response.text[:500]}"
                    raise GraderError("model_grader_server_error", detail)
            time.sleep(RETRY_BACKOFF_SECONDS * 2**attempt)
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.http.close()
