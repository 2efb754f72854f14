"""Webhook endpoints, the outbox of deliveries and the delivery log.

Events are put in the outbox by the same transaction that records them (``enqueue_*`` take the
caller's connection), so an event that happened is never without its deliveries and a rolled-back
one has none. Workers claim due deliveries for a lease; a worker killed mid-delivery leaves a claim
that lapses, and the delivery goes out again (at least once; receivers dedupe on the delivery id).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from counterscan.errors import NotFoundError, PermissionDeniedError
from counterscan.records import DeliveryAttempt, Webhook, WebhookDelivery
from counterscan.store import schema as t
from counterscan.store.base import StoreBase, iso, new_id, now, rows_in


@dataclass(frozen=True)
class ClaimedDelivery:
    """A due delivery this worker holds until ``claimed_until``, with where and how to send it."""

    delivery_id: int
    webhook_id: int
    event: str
    payload: Mapping[str, Any]
    attempts: int
    url: str
    secret: str


def _webhook(row: Any) -> Webhook:
    return Webhook(
        webhook_id=row.webhook_id,
        member=row.member_name,
        url=row.url,
        events=tuple(row.events),
        min_score=float(row.min_score),
        active=bool(row.active),
    )


def _delivery(row: Any) -> WebhookDelivery:
    return WebhookDelivery(
        delivery_id=row.delivery_id,
        webhook_id=row.webhook_id,
        event=row.event,
        payload=dict(row.payload),
        status=row.status,
        attempts=row.attempts,
        created_at=iso(row.created_at),
        next_attempt_at=iso(row.next_attempt_at),
        delivered_at=iso(row.delivered_at) or None,
        last_error=row.last_error,
    )


def _hooks_by_brand(conn: sa.Connection, brand_ids: Iterable[int], event: str) -> dict[int, list[Any]]:
    """Active endpoints subscribed to ``event``, per brand, of the members owning those brands."""
    query = (
        sa.select(t.brands.c.brand_id, t.webhooks.c.webhook_id, t.webhooks.c.events, t.webhooks.c.min_score)
        .join(t.webhooks, t.webhooks.c.member_id == t.brands.c.member_id)
        .where(t.webhooks.c.active.is_(True))
    )
    found: dict[int, list[Any]] = {}
    for row in rows_in(conn, query, t.brands.c.brand_id, sorted(set(brand_ids))):
        if event in row.events:
            found.setdefault(row.brand_id, []).append(row)
    return found


def _any_hooks(conn: sa.Connection) -> bool:
    # Most stores have no endpoints at all; one tiny query spares scans every other lookup.
    return (
        conn.execute(sa.select(t.webhooks.c.webhook_id).where(t.webhooks.c.active.is_(True)).limit(1)).first()
        is not None
    )


def _insert(conn: sa.Connection, rows: list[dict[str, Any]]) -> int:
    if rows:
        conn.execute(sa.insert(t.webhook_outbox), rows)
    return len(rows)


def _row(webhook_id: int, event: str, payload: Mapping[str, Any], moment: datetime) -> dict[str, Any]:
    return {
        "webhook_id": webhook_id,
        "event": event,
        "payload": dict(payload),
        "created_at": moment,
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": moment,
    }


def _listing_facts(conn: sa.Connection, listing_pks: Iterable[int]) -> dict[int, dict[str, Any]]:
    query = sa.select(
        t.listings.c.listing_pk,
        t.listings.c.source,
        t.listings.c.listing_id,
        t.listings.c.title,
        t.listings.c.price,
        t.listings.c.currency,
        t.listings.c.url,
        t.listings.c.seller_id,
    )
    return {
        row.listing_pk: {
            "source": row.source,
            "listing_id": row.listing_id,
            "title": row.title,
            "price": row.price,
            "currency": row.currency,
            "url": row.url,
            "seller_id": row.seller_id,
        }
        for row in rows_in(conn, query, t.listings.c.listing_pk, sorted(set(listing_pks)))
    }


def _brand_names(conn: sa.Connection, brand_ids: Iterable[int]) -> dict[int, str]:
    query = sa.select(t.brands.c.brand_id, t.brands.c.name)
    return {row.brand_id: row.name for row in rows_in(conn, query, t.brands.c.brand_id, sorted(set(brand_ids)))}


def suspect_state(conn: sa.Connection, listing_pks: Sequence[int]) -> dict[tuple[int, int], float]:
    """Each listing's current score per brand, read before a scan replaces it (for ``enqueue_new_suspects``)."""
    if not _any_hooks(conn):
        return {}
    query = sa.select(t.scores.c.listing_pk, t.scores.c.brand_id, t.scores.c.score).where(
        t.scores.c.brand_id.is_not(None)
    )
    return {
        (row.listing_pk, row.brand_id): float(row.score)
        for row in rows_in(conn, query, t.scores.c.listing_pk, listing_pks)
    }


def enqueue_new_suspects(
    conn: sa.Connection,
    before: Mapping[tuple[int, int], float],
    scored: Iterable[tuple[int, int | None, float]],
    *,
    scan_id: int | None = None,
) -> int:
    """Deliveries of "suspect.new" for (listing, brand, score) rows that now reach an endpoint's
    ``min_score`` and did not before; returns how many were written."""
    if not _any_hooks(conn):
        return 0
    rows = [(pk, brand_id, score) for pk, brand_id, score in scored if brand_id is not None and score > 0]
    hooks = _hooks_by_brand(conn, (brand_id for _pk, brand_id, _score in rows), "suspect.new")
    firing = [
        (pk, brand_id, score, hook)
        for pk, brand_id, score in rows
        for hook in hooks.get(brand_id, ())
        if score >= hook.min_score and before.get((pk, brand_id), -1.0) < hook.min_score
    ]
    if not firing:
        return 0
    listings = _listing_facts(conn, (pk for pk, *_rest in firing))
    names = _brand_names(conn, (brand_id for _pk, brand_id, *_rest in firing))
    moment = now()
    return _insert(
        conn,
        [
            _row(
                hook.webhook_id,
                "suspect.new",
                {"listing": listings.get(pk, {}), "brand": names.get(brand_id), "score": score, "scan_id": scan_id},
                moment,
            )
            for pk, brand_id, score, hook in firing
        ],
    )


def enqueue_event(
    conn: sa.Connection, event: str, *, listing_pk: int, brand_ids: Iterable[int], details: Mapping[str, Any]
) -> int:
    """Deliveries of ``event`` about one listing to the endpoints of the brands' owners."""
    if not _any_hooks(conn):
        return 0
    wanted = sorted(set(brand_ids))
    hooks = _hooks_by_brand(conn, wanted, event)
    if not hooks:
        return 0
    listing = _listing_facts(conn, [listing_pk]).get(listing_pk, {})
    names = _brand_names(conn, hooks)
    moment = now()
    return _insert(
        conn,
        [
            _row(hook.webhook_id, event, {"listing": listing, "brand": names.get(brand_id), **details}, moment)
            for brand_id in wanted
            for hook in hooks.get(brand_id, ())
        ],
    )


def enqueue_member_event(conn: sa.Connection, event: str, *, member_id: int, payload: Mapping[str, Any]) -> int:
    """Deliveries of ``event`` to one member's active endpoints subscribed to it."""
    rows = conn.execute(
        sa.select(t.webhooks.c.webhook_id, t.webhooks.c.events).where(
            t.webhooks.c.member_id == member_id, t.webhooks.c.active.is_(True)
        )
    )
    moment = now()
    return _insert(conn, [_row(row.webhook_id, event, payload, moment) for row in rows if event in row.events])


def listing_brands(conn: sa.Connection, listing_pk: int) -> list[int]:
    """The brands a listing is scored for (the owners who hear about its verdicts and cases)."""
    rows = conn.execute(
        sa.select(t.scores.c.brand_id).where(t.scores.c.listing_pk == listing_pk, t.scores.c.brand_id.is_not(None))
    )
    return sorted({row.brand_id for row in rows})


class WebhookStore(StoreBase):
    # -- endpoints -------------------------------------------------------------------------

    def add_webhook(
        self, member_id: int, *, url: str, secret: str, events: Sequence[str], min_score: float, actor: str
    ) -> Webhook:
        with self.engine.begin() as conn:
            webhook_id = new_id(
                conn.execute(
                    sa.insert(t.webhooks).values(
                        member_id=member_id,
                        url=url,
                        secret=secret,
                        events=list(events),
                        min_score=min_score,
                        active=True,
                        created_at=now(),
                    )
                )
            )
            self._audit(conn, actor, "webhook.add", f"webhook {webhook_id}", {"url": url, "events": list(events)})
        return self.webhook(webhook_id)

    def _webhook_query(self) -> sa.Select[Any]:
        return sa.select(t.webhooks, t.members.c.name.label("member_name")).join(
            t.members, t.members.c.member_id == t.webhooks.c.member_id
        )

    def webhook(self, webhook_id: int) -> Webhook:
        with self.engine.connect() as conn:
            row = conn.execute(self._webhook_query().where(t.webhooks.c.webhook_id == webhook_id)).first()
        if row is None:
            raise NotFoundError(f"unknown webhook {webhook_id}")
        return _webhook(row)

    def webhooks(self, *, member_id: int | None = None, include_removed: bool = False) -> list[Webhook]:
        query = self._webhook_query().order_by(t.webhooks.c.webhook_id)
        if member_id is not None:
            query = query.where(t.webhooks.c.member_id == member_id)
        if not include_removed:
            query = query.where(t.webhooks.c.active.is_(True))
        with self.engine.connect() as conn:
            return [_webhook(row) for row in conn.execute(query)]

    def remove_webhook(self, webhook_id: int, *, member_id: int | None, actor: str) -> Webhook:
        """Deactivate an endpoint (its delivery log stays); ``member_id`` must own it unless None."""
        found = self.webhook(webhook_id)
        with self.engine.begin() as conn:
            owner = conn.execute(
                sa.select(t.webhooks.c.member_id).where(t.webhooks.c.webhook_id == webhook_id)
            ).scalar_one()
            if member_id is not None and owner != member_id:
                raise PermissionDeniedError(f"webhook {webhook_id} belongs to another member")
            conn.execute(sa.update(t.webhooks).where(t.webhooks.c.webhook_id == webhook_id).values(active=False))
            self._audit(conn, actor, "webhook.remove", f"webhook {webhook_id}", {"url": found.url})
        return found

    # -- the outbox ------------------------------------------------------------------------

    def claim_deliveries(
        self, holder: str, *, limit: int, lease: timedelta, at: datetime | None = None
    ) -> list[ClaimedDelivery]:
        """Deliveries due ``at`` (now by default) that no live worker holds, now held by ``holder``
        until the lease ends."""
        moment = at or now()
        until = moment + lease
        free = sa.or_(t.webhook_outbox.c.claimed_until.is_(None), t.webhook_outbox.c.claimed_until < moment)
        with self.engine.begin() as conn:
            due = (
                sa.select(t.webhook_outbox.c.delivery_id)
                .where(t.webhook_outbox.c.status == "pending", t.webhook_outbox.c.next_attempt_at <= moment, free)
                .order_by(t.webhook_outbox.c.next_attempt_at, t.webhook_outbox.c.delivery_id)
                .limit(limit)
            )
            if conn.dialect.name == "postgresql":
                due = due.with_for_update(skip_locked=True)
            ids = [row.delivery_id for row in conn.execute(due)]
            if not ids:
                return []
            # The claim re-checks that the row is still free, so two workers never hold one delivery.
            conn.execute(
                sa.update(t.webhook_outbox)
                .where(t.webhook_outbox.c.delivery_id.in_(ids), free)
                .values(claimed_by=holder, claimed_until=until)
            )
            rows = conn.execute(
                sa.select(t.webhook_outbox, t.webhooks.c.url, t.webhooks.c.secret)
                .join(t.webhooks, t.webhooks.c.webhook_id == t.webhook_outbox.c.webhook_id)
                .where(t.webhook_outbox.c.delivery_id.in_(ids), t.webhook_outbox.c.claimed_by == holder)
                .order_by(t.webhook_outbox.c.delivery_id)
            ).all()
        return [
            ClaimedDelivery(
                delivery_id=row.delivery_id,
                webhook_id=row.webhook_id,
                event=row.event,
                payload=dict(row.payload),
                attempts=row.attempts,
                url=row.url,
                secret=row.secret,
            )
            for row in rows
        ]

    def finish_attempt(
        self,
        delivery_id: int,
        holder: str,
        *,
        delivered: bool,
        status_code: int | None,
        error: str | None,
        duration_ms: float,
        retry_at: datetime | None,
    ) -> None:
        """Log one attempt; the delivery is done, due again at ``retry_at``, or failed for good (None)."""
        moment = now()
        with self.engine.begin() as conn:
            conn.execute(
                sa.insert(t.webhook_attempts).values(
                    delivery_id=delivery_id,
                    at=moment,
                    status_code=status_code,
                    error=error,
                    duration_ms=round(duration_ms, 3),
                )
            )
            status = "delivered" if delivered else ("pending" if retry_at is not None else "failed")
            conn.execute(
                sa.update(t.webhook_outbox)
                .where(t.webhook_outbox.c.delivery_id == delivery_id)
                .values(
                    status=status,
                    attempts=t.webhook_outbox.c.attempts + 1,
                    next_attempt_at=retry_at or moment,
                    delivered_at=moment if delivered else None,
                    last_error=None if delivered else error,
                    claimed_by=None,
                    claimed_until=None,
                )
            )

    def deliveries(
        self,
        *,
        member_id: int | None = None,
        webhook_id: int | None = None,
        status: str | None = None,
        limit: int = 100,
    ) -> list[WebhookDelivery]:
        """The delivery log, newest first."""
        query = (
            sa.select(t.webhook_outbox)
            .join(t.webhooks, t.webhooks.c.webhook_id == t.webhook_outbox.c.webhook_id)
            .order_by(t.webhook_outbox.c.delivery_id.desc())
            .limit(limit)
        )
        if member_id is not None:
            query = query.where(t.webhooks.c.member_id == member_id)
        if webhook_id is not None:
            query = query.where(t.webhook_outbox.c.webhook_id == webhook_id)
        if status is not None:
            query = query.where(t.webhook_outbox.c.status == status)
        with self.engine.connect() as conn:
            return [_delivery(row) for row in conn.execute(query)]

    def delivery_attempts(self, delivery_id: int) -> list[DeliveryAttempt]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.webhook_attempts)
                .where(t.webhook_attempts.c.delivery_id == delivery_id)
                .order_by(t.webhook_attempts.c.attempt_id)
            ).all()
        return [
            DeliveryAttempt(
                delivery_id=row.delivery_id,
                at=iso(row.at),
                status_code=row.status_code,
                error=row.error,
                duration_ms=float(row.duration_ms),
            )
            for row in rows
        ]

    def outbox_counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.webhook_outbox.c.status, sa.func.count()).group_by(t.webhook_outbox.c.status)
            ).all()
        return {str(status): int(count) for status, count in rows}
