"""Standard Webhooks signatures: the reference vector, and the SDK's `unwrap` accepts ours."""

from __future__ import annotations

import json
import time

import openai
import pytest

from app import ids
from app.webhooks.schemas import event_payload
from app.webhooks.signing import secret_hint, signature, signed_headers

SDK = openai.OpenAI(api_key="unused", base_url="http://127.0.0.1:9")


def test_signature_matches_the_standard_webhooks_reference_vector() -> None:
    # the example in the Standard Webhooks specification
    assert (
        signature(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            '{"test": 2432232314}',
        )
        == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


def test_the_sdk_unwraps_a_signed_job_event() -> None:
    secret = ids.new_webhook_secret()
    assert secret.startswith("whsec_")
    body = event_payload("evt_1", "fine_tuning.job.failed", 1700000000, "ftjob-abc")
    headers = signed_headers([secret], "wh_1", int(time.time()), body)
    event = SDK.webhooks.unwrap(body, headers, secret=secret)
    assert isinstance(event, openai.types.webhooks.FineTuningJobFailedWebhookEvent)
    assert (event.id, event.type, event.data.id, event.object) == (
        "evt_1", "fine_tuning.job.failed", "ftjob-abc", "event",
    )  # fmt: skip
    assert json.loads(body)["created_at"] == 1700000000


def test_the_sdk_refuses_another_secret_a_changed_body_and_an_old_timestamp() -> None:
    secret, other = ids.new_webhook_secret(), ids.new_webhook_secret()
    body = event_payload("evt_1", "fine_tuning.job.succeeded", 1700000000, "ftjob-abc")
    headers = signed_headers([secret], "wh_1", int(time.time()), body)
    with pytest.raises(openai.InvalidWebhookSignatureError):
        SDK.webhooks.unwrap(body, headers, secret=other)
    with pytest.raises(openai.InvalidWebhookSignatureError):
        SDK.webhooks.unwrap(body.replace("ftjob-abc", "ftjob-xyz"), headers, secret=secret)
    stale = signed_headers([secret], "wh_1", int(time.time()) - 3600, body)
    with pytest.raises(openai.InvalidWebhookSignatureError):
        SDK.webhooks.unwrap(body, stale, secret=secret)


def test_two_secrets_sign_so_either_verifies() -> None:
    new, old = ids.new_webhook_secret(), ids.new_webhook_secret()
    body = event_payload("evt_1", "fine_tuning.job.cancelled", 1700000000, "ftjob-abc")
    headers = signed_headers([new, old], "wh_1", int(time.time()), body)
    assert len(headers["webhook-signature"].split()) == 2
    for secret in (new, old):
        assert SDK.webhooks.unwrap(body, headers, secret=secret).type == "fine_tuning.job.cancelled"


def test_the_hint_shows_only_the_last_four_characters() -> None:
    secret = ids.new_webhook_secret()
    assert secret_hint(secret) == f"whsec_...{secret[-4:]}"
    assert secret[6:-4] not in secret_hint(secret)
