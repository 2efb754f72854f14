"""Webhooks: members' endpoints, signed deliveries from the outbox, retries with backoff.

A delivery is a POST of a JSON body with these headers:

``X-Counterscan-Event``      the event (``suspect.new``, ``verdict.recorded``, ``case.status``, ``check.completed``)
``X-Counterscan-Delivery``   the delivery id; the same on every retry, so receivers can dedupe
``X-Counterscan-Timestamp``  Unix seconds when this attempt was signed
``X-Counterscan-Signature``  ``sha256=`` + hex HMAC-SHA256 of ``TIMESTAMP + "." + BODY`` with the secret

Receivers check the signature with :func:`verify` (or the same four lines in their language) and
reject timestamps older than a few minutes, so a captured request cannot be replayed later.
Deliveries are at least once: a worker killed after sending and before recording the answer
sends again once its claim lapses.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx

from counterscan.config import Settings
from counterscan.errors import UserError
from counterscan.ingest.netpolicy import AddressRefusedError, NetPolicy
from counterscan.ingest.urls import MalformedURLError, parse_url
from counterscan.records import WEBHOOK_EVENTS, Member, Webhook
from counterscan.store.base import now
from counterscan.store.protocols import WebhookOutbox
from counterscan.store.webhooks import ClaimedDelivery

SIGNATURE_HEADER = "X-Counterscan-Signature"
TIMESTAMP_HEADER = "X-Counterscan-Timestamp"
EVENT_HEADER = "X-Counterscan-Event"
DELIVERY_HEADER = "X-Counterscan-Delivery"
MAX_RETRY_DELAY = 3600.0
REPLAY_TOLERANCE = 300


def signature(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(secret: str, headers: Mapping[str, str], body: bytes, *, tolerance: int = REPLAY_TOLERANCE) -> bool:
    """True when ``body`` was signed with ``secret`` within ``tolerance`` seconds (receivers' side)."""
    lowered = {key.lower(): value for key, value in headers.items()}
    timestamp = lowered.get(TIMESTAMP_HEADER.lower(), "")
    given = lowered.get(SIGNATURE_HEADER.lower(), "")
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > tolerance:
        return False
    return hmac.compare_digest(given, signature(secret, timestamp, body))


def policy(settings: Settings) -> NetPolicy:
    """Where deliveries may go: public addresses, and the ``allowed_private_networks``."""
    return NetPolicy.from_settings(settings)


def add_webhook(
    store: WebhookOutbox,
    settings: Settings,
    member: Member,
    *,
    url: str,
    events: Sequence[str],
    min_score: float = 0.5,
    secret: str | None = None,
) -> tuple[Webhook, str]:
    """Register an endpoint for ``member``; returns it and its signing secret (shown once)."""
    unknown = sorted(set(events) - set(WEBHOOK_EVENTS))
    if unknown or not events:
        raise UserError(
            f"unknown webhook event(s) {', '.join(unknown) or '(none given)'} (one of {', '.join(WEBHOOK_EVENTS)})"
        )
    if not 0.0 <= min_score <= 1.0:
        raise UserError(f"min score {min_score} is not between 0 and 1")
    if member.is_marketplace:
        raise UserError(f"{member.name!r} is a marketplace key; webhooks are for brand owners and analysts")
    try:
        policy(settings).check_url(url)
    except MalformedURLError as exc:
        raise UserError(f"webhook url: {exc}") from None
    except AddressRefusedError as exc:
        raise UserError(f"webhook URL {url!r}: {exc}") from None
    secret = secret or "whsec_" + secrets.token_urlsafe(32)
    hook = store.add_webhook(
        member.member_id,
        url=url,
        secret=secret,
        events=list(dict.fromkeys(events)),
        min_score=min_score,
        actor=member.name,
    )
    return hook, secret


@dataclass(frozen=True)
class DeliveryOutcome:
    delivered: int = 0
    retrying: int = 0
    failed: int = 0

    def __add__(self, other: DeliveryOutcome) -> DeliveryOutcome:
        return DeliveryOutcome(
            self.delivered + other.delivered, self.retrying + other.retrying, self.failed + other.failed
        )


def _holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class Deliverer:
    """Sends due deliveries; safe to run in several processes at once (deliveries are claimed)."""

    def __init__(
        self,
        store: WebhookOutbox,
        settings: Settings,
        *,
        observe: Callable[[str, float], None] | None = None,
        clock: Callable[[], datetime] = now,
    ) -> None:
        self.clock = clock
        """When deliveries are due and retries set: the wall clock, or a test's own."""
        self.store = store
        self.settings = settings
        self.holder = _holder()
        self.policy = policy(settings)
        self.observe = observe
        self.client = httpx.Client(
            timeout=settings.webhook_timeout_seconds,
            follow_redirects=False,  # a receiver answers; it does not send us elsewhere
            headers={"User-Agent": "counterscan-webhooks"},
            transport=self.policy.transport(),
            trust_env=False,  # an environment proxy would connect for us, past the policy
        )

    def close(self) -> None:
        self.client.close()

    def retry_delay(self, attempts: int) -> float:
        return float(min(MAX_RETRY_DELAY, self.settings.webhook_retry_seconds * 2 ** max(0, attempts - 1)))

    def send_due(self, limit: int = 50) -> DeliveryOutcome:
        lease = timedelta(seconds=self.settings.webhook_lease_seconds)
        claimed = self.store.claim_deliveries(self.holder, limit=limit, lease=lease, at=self.clock())
        outcome = DeliveryOutcome()
        for delivery in claimed:
            outcome += self._send(delivery)
        return outcome

    def _send(self, delivery: ClaimedDelivery) -> DeliveryOutcome:
        body = json.dumps(
            {"delivery_id": delivery.delivery_id, "event": delivery.event, **delivery.payload},
            sort_keys=True,
            separators=(",", ":"),
            default=str,
        ).encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            EVENT_HEADER: delivery.event,
            DELIVERY_HEADER: str(delivery.delivery_id),
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: signature(delivery.secret, timestamp, body),
        }
        started = time.perf_counter()
        status_code: int | None = None
        error: str | None = None
        permanent = False
        try:
            parse_url(delivery.url)  # an endpoint stored before URLs were checked this strictly
            response = self.client.post(delivery.url, content=body, headers=headers)
            status_code = response.status_code
            if not 200 <= status_code < 300:
                error = f"HTTP {status_code}"
        except (AddressRefusedError, MalformedURLError) as exc:
            error, permanent = str(exc), True
        except httpx.InvalidURL as exc:
            error, permanent = f"malformed URL: {exc}", True
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        elapsed = time.perf_counter() - started
        delivered = error is None
        attempts = delivery.attempts + 1
        retry_at = None
        if not delivered and not permanent and attempts < self.settings.webhook_max_attempts:
            retry_at = self.clock() + timedelta(seconds=self.retry_delay(attempts))
        self.store.finish_attempt(
            delivery.delivery_id,
            self.holder,
            delivered=delivered,
            status_code=status_code,
            error=error,
            duration_ms=elapsed * 1000,
            retry_at=retry_at,
        )
        result = "delivered" if delivered else ("retrying" if retry_at is not None else "failed")
        if self.observe is not None:
            self.observe(result, elapsed)
        return DeliveryOutcome(
            delivered=int(delivered), retrying=int(retry_at is not None), failed=int(result == "failed")
        )

    def run(self, stop: threading.Event, *, idle_seconds: float = 1.0) -> None:
        """Deliver until ``stop`` is set, polling the outbox every ``idle_seconds`` when it is empty."""
        while not stop.is_set():
            outcome = self.send_due()
            if not (outcome.delivered or outcome.retrying or outcome.failed):
                stop.wait(idle_seconds)
