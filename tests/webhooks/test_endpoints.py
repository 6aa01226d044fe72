"""Webhooks through the official SDK against a live server: the endpoint API, signed sample
and job events that `client.webhooks.unwrap` verifies, a retry after a 500, the delivery log
(an extension), and the refusal of private addresses under the default settings."""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.api.jobfiles import BASE_MODEL, rft_method, rft_rows, upload_rows
from tests.conftest import make_client, wait_for_job
from tests.services import LiveService, free_port
from tests.webhooks.receiver import Receiver

SUCCEEDED, FAILED, CANCELLED = (
    "fine_tuning.job.succeeded", "fine_tuning.job.failed", "fine_tuning.job.cancelled",
)  # fmt: skip
ALL = [SUCCEEDED, FAILED, CANCELLED]


@pytest.fixture
def hooks(webhook_service: LiveService) -> openai.OpenAI:
    """A client of a project of its own, so each test sees only its endpoints."""
    return make_client(webhook_service, webhook_service.key_for(f"hooks-{secrets.token_hex(4)}"))


@pytest.fixture(scope="module")
def refusals(webhook_service: LiveService) -> openai.OpenAI:
    """A project whose endpoint list stays empty: every create in it is refused."""
    return make_client(webhook_service, webhook_service.key_for("webhooks-refusals"))


def _log(client: openai.OpenAI, endpoint_id: str) -> list[dict[str, Any]]:
    page = client.get(f"/webhook_endpoints/{endpoint_id}/deliveries", cast_to=object)
    assert isinstance(page, dict) and page["object"] == "list"
    return page["data"]


def _settled_log(client: openai.OpenAI, endpoint_id: str, timeout: float = 10) -> list[dict]:
    """The delivery log once no delivery is pending: the receiver has its request before the
    worker records the answer."""
    deadline = time.monotonic() + timeout
    while True:
        log = _log(client, endpoint_id)
        if all(d["status"] != "pending" for d in log) or time.monotonic() > deadline:
            return log
        time.sleep(0.2)


def test_create_retrieve_list_update_rotate_and_delete(
    hooks: openai.OpenAI, receiver: Receiver, webhook_service: LiveService
) -> None:
    first = hooks.webhooks.create(url=receiver.url("/a"), name="first", event_types=ALL)
    assert first.id.startswith("we_") and first.object == "webhook_endpoint"
    assert first.signing_secret.startswith("whsec_")
    assert first.signing_secret_hint == f"whsec_...{first.signing_secret[-4:]}"
    assert (first.url, first.name, first.event_types) == (receiver.url("/a"), "first", ALL)
    assert first.updated_at == first.created_at

    shown = hooks.get(f"/webhook_endpoints/{first.id}", cast_to=object)
    assert isinstance(shown, dict) and "signing_secret" not in shown
    retrieved = hooks.webhooks.retrieve(first.id)
    assert retrieved.signing_secret_hint == first.signing_secret_hint

    second = hooks.webhooks.create(url=receiver.url("/b"), name="second", event_types=[FAILED])
    page = hooks.webhooks.list(limit=1)
    assert [endpoint.id for endpoint in page.data] == [second.id] and page.has_more
    assert [endpoint.id for endpoint in hooks.webhooks.list(limit=1)] == [second.id, first.id]

    updated = hooks.webhooks.update(
        first.id, name="renamed", url=receiver.url("/c"), event_types=[CANCELLED, CANCELLED]
    )
    assert (updated.name, updated.url, updated.event_types) == (
        "renamed", receiver.url("/c"), [CANCELLED],
    )  # fmt: skip
    unchanged = hooks.webhooks.update(first.id, name="renamed")
    assert unchanged.updated_at == updated.updated_at

    rotated = hooks.webhooks.rotate_secret(first.id)
    assert rotated.signing_secret.startswith("whsec_")
    assert rotated.signing_secret != first.signing_secret
    assert hooks.webhooks.retrieve(first.id).signing_secret_hint == rotated.signing_secret_hint

    other = make_client(webhook_service, webhook_service.key_for("webhooks-other"))
    with pytest.raises(openai.NotFoundError):
        other.webhooks.retrieve(first.id)
    with pytest.raises(openai.NotFoundError):
        other.webhooks.delete(first.id)
    assert first.id not in [endpoint.id for endpoint in other.webhooks.list()]

    deleted = hooks.webhooks.delete(first.id)
    assert (deleted.id, deleted.deleted, deleted.object) == (
        first.id, True, "webhook_endpoint.deleted",
    )  # fmt: skip
    with pytest.raises(openai.NotFoundError):
        hooks.webhooks.retrieve(first.id)
    assert [endpoint.id for endpoint in hooks.webhooks.list()] == [second.id]
    assert hooks.webhooks.event_types.list().data == ALL


@pytest.mark.parametrize(
    ("arguments", "param"),
    [
        ({"event_types": ["batch.completed"]}, "event_types"),
        ({"event_types": []}, "event_types"),
        ({"name": " "}, "name"),
        ({"url": "ftp://example.com/hook"}, "url"),
        ({"url": "not a url"}, "url"),
    ],
)
def test_create_refuses_bad_input_naming_the_field(
    refusals: openai.OpenAI, receiver: Receiver, arguments: dict[str, Any], param: str
) -> None:
    body = {"url": receiver.url("/x"), "name": "n", "event_types": ALL, **arguments}
    with pytest.raises(openai.BadRequestError) as refused:
        refusals.webhooks.create(**body)
    assert refused.value.param == param
    assert refusals.webhooks.list().data == []


def test_a_test_event_is_signed_and_logged(hooks: openai.OpenAI, receiver: Receiver) -> None:
    endpoint = hooks.webhooks.create(url=receiver.url("/t"), name="t", event_types=[SUCCEEDED])
    result = hooks.webhooks.test(endpoint.id, event_type=SUCCEEDED)
    assert (result.status_code, result.success, result.webhook_endpoint_id) == (
        200, True, endpoint.id,
    )  # fmt: skip
    assert (result.object, result.event_type) == ("webhook_endpoint.test", SUCCEEDED)
    [request] = receiver.at("/t")
    event = hooks.webhooks.unwrap(request.body, request.headers, secret=endpoint.signing_secret)
    assert isinstance(event, openai.types.webhooks.FineTuningJobSucceededWebhookEvent)

    receiver.answer("/t", 418)
    assert hooks.webhooks.test(endpoint.id, event_type=FAILED).status_code == 418
    log = _log(hooks, endpoint.id)
    assert [(d["event_type"], d["status"], d["last_status_code"]) for d in log] == [
        (FAILED, "failed", 418), (SUCCEEDED, "delivered", 200),
    ]  # fmt: skip
    assert log[1]["webhook_id"] == request.headers["webhook-id"]
    with pytest.raises(openai.BadRequestError) as refused:
        hooks.webhooks.test(endpoint.id, event_type="batch.completed")  # type: ignore[arg-type]
    assert refused.value.param == "event_type"

    # nobody listening: a 400 that says so, and a failed delivery in the log
    hooks.webhooks.update(endpoint.id, url=f"http://127.0.0.1:{free_port()}/t")
    with pytest.raises(openai.BadRequestError) as unreachable:
        hooks.webhooks.test(endpoint.id, event_type=SUCCEEDED)
    assert unreachable.value.code == "webhook_delivery_failed"
    assert "could not connect" in unreachable.value.message
    newest = _log(hooks, endpoint.id)[0]
    assert (newest["status"], newest["last_status_code"]) == ("failed", None)


def test_a_rotated_secret_keeps_the_old_one_only_when_asked(
    hooks: openai.OpenAI, receiver: Receiver
) -> None:
    original = hooks.webhooks.create(url=receiver.url("/r"), name="r", event_types=[FAILED])
    kept = hooks.webhooks.rotate_secret(original.id, keep_old_secret_active_for_24_hours=True)
    hooks.webhooks.test(original.id, event_type=FAILED)
    request = receiver.at("/r")[-1]
    for secret in (kept.signing_secret, original.signing_secret):
        hooks.webhooks.unwrap(request.body, request.headers, secret=secret)

    replaced = hooks.webhooks.rotate_secret(original.id)
    hooks.webhooks.test(original.id, event_type=FAILED)
    request = receiver.at("/r")[-1]
    hooks.webhooks.unwrap(request.body, request.headers, secret=replaced.signing_secret)
    for secret in (kept.signing_secret, original.signing_secret):
        with pytest.raises(openai.InvalidWebhookSignatureError):
            hooks.webhooks.unwrap(request.body, request.headers, secret=secret)


def test_job_events_are_delivered_signed_and_a_500_is_retried(
    hooks: openai.OpenAI, receiver: Receiver, tmp_path: Path
) -> None:
    everything = hooks.webhooks.create(url=receiver.url("/jobs"), name="all", event_types=ALL)
    cancels = hooks.webhooks.create(
        url=receiver.url("/cancels"), name="cancels", event_types=[CANCELLED]
    )
    training = upload_rows(hooks, tmp_path, "train.jsonl", rft_rows(12))
    validation = upload_rows(hooks, tmp_path, "valid.jsonl", rft_rows(4))

    def unwrap(request: Any, secret: str) -> Any:
        return hooks.webhooks.unwrap(request.body, request.headers, secret=secret)

    # cancelled: the first answer is a 500, the retry lands with the same id and body
    receiver.answer("/jobs", 500)
    cancelled = hooks.fine_tuning.jobs.create(
        model=BASE_MODEL, training_file=training, validation_file=validation, method=rft_method()
    )
    hooks.fine_tuning.jobs.cancel(cancelled.id)
    refused, retried = receiver.wait_for("/jobs", 2)
    assert refused.headers["webhook-id"] == retried.headers["webhook-id"]
    assert refused.body == retried.body
    for request in (refused, retried):
        event = unwrap(request, everything.signing_secret)
        assert (event.type, event.data.id) == (CANCELLED, cancelled.id)
    [to_cancels] = receiver.wait_for("/cancels", 1)
    assert unwrap(to_cancels, cancels.signing_secret).data.id == cancelled.id
    # one event: the same webhook-id to both endpoints
    assert to_cancels.headers["webhook-id"] == refused.headers["webhook-id"]

    # failed: too few training examples
    small = upload_rows(hooks, tmp_path, "small.jsonl", rft_rows(5))
    failed = hooks.fine_tuning.jobs.create(
        model=BASE_MODEL, training_file=small, validation_file=validation, method=rft_method()
    )
    wait_for_job(hooks, failed.id, {"failed"}, timeout=120)
    event = unwrap(receiver.wait_for("/jobs", 3)[2], everything.signing_secret)
    assert (event.type, event.data.id) == (FAILED, failed.id)

    # succeeded: a few steps on the tiny model
    succeeded = hooks.fine_tuning.jobs.create(
        model=BASE_MODEL, training_file=training, validation_file=validation, method=rft_method()
    )
    job = wait_for_job(hooks, succeeded.id, {"succeeded", "failed"}, timeout=300)
    assert job.status == "succeeded", job.error
    event = unwrap(receiver.wait_for("/jobs", 4)[3], everything.signing_secret)
    assert isinstance(event, openai.types.webhooks.FineTuningJobSucceededWebhookEvent)
    assert event.data.id == succeeded.id and event.created_at >= job.created_at

    log = _settled_log(hooks, everything.id)
    assert [(d["event_type"], d["status"]) for d in log] == [
        (SUCCEEDED, "delivered"), (FAILED, "delivered"), (CANCELLED, "delivered"),
    ]  # fmt: skip
    assert [(a["attempt"], a["status_code"]) for a in log[2]["attempts"]] == [(1, 500), (2, 200)]
    assert "answered 500" in log[2]["attempts"][0]["error"]
    # the endpoint subscribed to cancels only was sent the cancel only
    assert [d["event_type"] for d in _log(hooks, cancels.id)] == [CANCELLED]
    assert len(receiver.at("/cancels")) == 1


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/hook",
        "http://localhost/hook",
        "http://[::1]/hook",
        "http://10.0.0.5/hook",
        "http://169.254.169.254/latest/meta-data",
    ],
)
def test_private_addresses_are_refused_by_default(client: openai.OpenAI, url: str) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.webhooks.create(url=url, name="private", event_types=ALL)
    assert refused.value.param == "url"
    assert "OPENRFT_WEBHOOK_ALLOW_PRIVATE" in refused.value.message
    assert [e.url for e in client.webhooks.list()] == []


def test_an_update_to_a_private_address_is_refused_by_default(client: openai.OpenAI) -> None:
    endpoint = client.webhooks.create(
        url="https://93.184.215.14/hook", name="public", event_types=ALL
    )
    try:
        with pytest.raises(openai.BadRequestError) as refused:
            client.webhooks.update(endpoint.id, url="http://192.168.0.10/hook")
        assert refused.value.param == "url"
        assert client.webhooks.retrieve(endpoint.id).url == "https://93.184.215.14/hook"
    finally:
        client.webhooks.delete(endpoint.id)
