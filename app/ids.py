"""Every id format the API hands out, in one place."""

from __future__ import annotations

import base64
import secrets

_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def _token(length: int = 24) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def new_file_id() -> str:
    return f"file-{_token()}"


def new_job_id() -> str:
    return f"ftjob-{_token()}"


def new_event_id() -> str:
    return f"ftevent-{_token()}"


def new_checkpoint_id() -> str:
    return f"ftckpt_{_token()}"


def new_upload_id() -> str:
    return f"upload_{_token()}"


def new_upload_part_id() -> str:
    return f"part_{_token()}"


def new_checkpoint_permission_id() -> str:
    return f"cp_{_token()}"


def new_project_id() -> str:
    return f"proj_{_token()}"


def new_api_key() -> str:
    return f"sk-openrft-{_token(40)}"


def fine_tuned_model_name(
    base_model: str, project_name: str, suffix: str | None, job_id: str
) -> str:
    """`ft:<base>:<project>:<suffix>:<job>`, OpenAI's shape with the project for the org."""
    return f"ft:{base_model}:{project_name}:{suffix or ''}:{job_id}"


def checkpoint_model_name(fine_tuned_model: str, step_number: int) -> str:
    return f"{fine_tuned_model}:ckpt-step-{step_number}"


def new_chat_completion_id() -> str:
    return f"chatcmpl-{_token()}"


def new_webhook_endpoint_id() -> str:
    return f"we_{_token()}"


def new_webhook_event_id() -> str:
    """The `id` of an event's payload."""
    return f"evt_{_token()}"


def new_webhook_message_id() -> str:
    """The `webhook-id` header: one per event, the same on every attempt."""
    return f"wh_{_token()}"


def new_webhook_delivery_id() -> str:
    return f"whdel_{_token()}"


def new_webhook_secret() -> str:
    """`whsec_` and 32 random bytes in base64, as Standard Webhooks secrets are written."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
