"""Standard Webhooks signatures, as `client.webhooks.unwrap` verifies them.

The signed content is `{webhook-id}.{webhook-timestamp}.{body}`, HMAC-SHA256 with the secret's
base64-decoded bytes (the part after `whsec_`), sent base64-encoded as `v1,<signature>`. Several
signatures are separated by spaces; a receiver accepts the message if any one matches (that is
how a rotated-out secret keeps working for a while).
"""

from __future__ import annotations

import base64
import hashlib
import hmac

SECRET_PREFIX = "whsec_"


def secret_key(secret: str) -> bytes:
    if secret.startswith(SECRET_PREFIX):
        return base64.b64decode(secret[len(SECRET_PREFIX) :])
    return secret.encode()


def signature(secret: str, webhook_id: str, timestamp: int, body: str) -> str:
    """`v1,<base64 HMAC-SHA256>` of one message under one secret."""
    signed = f"{webhook_id}.{timestamp}.{body}".encode()
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(
    secrets: list[str], webhook_id: str, timestamp: int, body: str
) -> dict[str, str]:
    """The headers of one attempt: the id, the attempt's time and a signature per secret."""
    return {
        "content-type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(
            signature(secret, webhook_id, timestamp, body) for secret in secrets
        ),
    }


def secret_hint(secret: str) -> str:
    """A masked secret the API may show at any time: the prefix and the last four characters."""
    return f"{SECRET_PREFIX}...{secret[-4:]}"
