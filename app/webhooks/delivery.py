"""Sending webhook messages: one signed POST per attempt, and the loop every worker runs.

A delivery is at least once: the loop claims a due outbox row, sends it without holding a
transaction, then records the outcome. A worker that dies in between leaves the claim to lapse
and another sends the message again with the same `webhook-id`, which receivers deduplicate on.
A failed attempt (no answer, or any status outside 2xx, redirects included: they are never
followed) is tried again after an exponentially growing, jittered delay until the event is a
day old (`webhook_retry_window_seconds`).
"""

from __future__ import annotations

import logging
import random
import threading
import time

import httpx
from sqlalchemy.orm import Session, sessionmaker

from app.settings import Settings
from app.webhooks import repository
from app.webhooks.addresses import Target, UnsafeURL, check_url
from app.webhooks.repository import Claim, Outcome
from app.webhooks.signing import signed_headers

logger = logging.getLogger("openrft.webhooks")

USER_AGENT = "OpenRFT-Webhooks/1"
# deliveries one pass of the loop takes on before it looks again
BATCH = 20
# the retry delay stops doubling here (2^20 times the base is beyond any cap in use)
MAX_DOUBLINGS = 20


def retry_delay(
    failed_attempts: int, base: float, cap: float, rng: random.Random | None = None
) -> float:
    """Seconds before the next attempt after `failed_attempts` failures: base * 2^(n-1) capped at
    `cap`, half of it fixed and half random ("equal jitter"), so receivers that fail together do
    not get their retries back all at the same moment."""
    ceiling = min(cap, base * 2 ** min(max(failed_attempts, 1) - 1, MAX_DOUBLINGS))
    return ceiling / 2 + (rng or random).uniform(0, ceiling / 2)


def next_attempt_in(claimed: Claim, settings: Settings) -> float | None:
    """The delay before the next attempt, or None when it would fall outside the retry window."""
    delay = retry_delay(
        claimed.attempt, settings.webhook_retry_base_seconds,
        settings.webhook_retry_max_delay_seconds,
    )  # fmt: skip
    if claimed.age_seconds + delay > settings.webhook_retry_window_seconds:
        return None
    return delay


def _host_header(target: Target) -> str:
    host = f"[{target.host}]" if ":" in target.host else target.host
    default_port = 443 if target.scheme == "https" else 80
    return host if target.port == default_port else f"{host}:{target.port}"


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def send(
    url: str, body: str, headers: dict[str, str], *, allow_private: bool, timeout: float
) -> Outcome:
    """POST `body` to `url` once: its host is resolved and checked now, and the connection goes
    to an address that passed (the next one when connecting fails). Redirects are not followed;
    no proxy from the environment is used (it would connect on our behalf, unchecked)."""
    started = time.monotonic()
    try:
        target = check_url(url, allow_private=allow_private)
    except UnsafeURL as refused:
        return Outcome(None, refused.message, _elapsed_ms(started))
    request_headers = {**headers, "host": _host_header(target), "user-agent": USER_AGENT}
    # TLS checks the certificate against the name in the URL, not the address we dial
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    errors = []
    with httpx.Client(follow_redirects=False, timeout=timeout, trust_env=False) as client:
        for address in target.addresses:
            pinned = httpx.URL(url).copy_with(host=str(address))
            try:
                with client.stream(
                    "POST", pinned, content=body.encode(), headers=request_headers,
                    extensions=extensions,
                ) as response:  # fmt: skip
                    return Outcome(response.status_code, _error_of(response), _elapsed_ms(started))
            except httpx.ConnectError as error:
                errors.append(f"{address}: {str(error) or type(error).__name__}")
            except httpx.HTTPError as error:
                message = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
                return Outcome(None, f"{address}: {message}", _elapsed_ms(started))
    return Outcome(None, "could not connect: " + "; ".join(errors), _elapsed_ms(started))


def _error_of(response: httpx.Response) -> str | None:
    if response.is_success:
        return None
    if response.is_redirect:
        location = response.headers.get("location", "")
        return f"answered {response.status_code} (redirect to {location!r}, not followed)"
    return f"answered {response.status_code}"


def deliver_due(sessions: sessionmaker[Session], settings: Settings) -> int:
    """Make one attempt at each due delivery (up to a batch); how many attempts were made."""
    with sessions() as session:
        due = repository.due_deliveries(session, BATCH)
    # a claim outlives the slowest attempt: one timeout per address tried, and a margin
    lease = settings.webhook_timeout_seconds * 3 + 30
    attempted = 0
    for delivery_id in due:
        with sessions.begin() as session:
            claimed = repository.claim(session, delivery_id, lease)
        if claimed is None:
            continue
        headers = signed_headers(
            claimed.secrets, claimed.webhook_id, int(time.time()), claimed.payload
        )
        outcome = send(
            claimed.url, claimed.payload, headers,
            allow_private=settings.webhook_allow_private, timeout=settings.webhook_timeout_seconds,
        )  # fmt: skip
        retry_in = None if outcome.delivered else next_attempt_in(claimed, settings)
        with sessions.begin() as session:
            repository.record_attempt(session, claimed, outcome, retry_in)
        attempted += 1
        if not outcome.delivered:
            logger.warning(
                "webhook %s attempt %d to %s failed (%s); %s", claimed.webhook_id,
                claimed.attempt, claimed.url, outcome.error,
                "giving up" if retry_in is None else f"next attempt in {retry_in:.1f} s",
            )  # fmt: skip
    return attempted


def deliver_forever(
    sessions: sessionmaker[Session], settings: Settings, stop: threading.Event
) -> None:
    """The delivery loop of a worker: look for due deliveries every `webhook_poll_seconds`."""
    while not stop.is_set():
        try:
            attempted = deliver_due(sessions, settings)
        except Exception:
            logger.exception("webhook delivery failed; trying again")
            attempted = 0
        if not attempted:
            stop.wait(settings.webhook_poll_seconds)
