"""Takedown cases: confirmed counterfeits grouped per (marketplace, seller), with their status history.

A (listing, brand) lands in its case in the transaction that records its counterfeit verdict
(:func:`file_verdict`); a later verdict of another kind takes it out. Status changes are events of
the case's history and audited; the owners of the case's brands hear of them (``case.status``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from counterscan.errors import NotFoundError
from counterscan.records import Case, CaseEvent, CaseListing, CaseStatus, CaseSummary
from counterscan.store import schema as t
from counterscan.store import webhooks
from counterscan.store.base import StoreBase, iso, new_id, now
from counterscan.store.queue import first_picture

REOPENS = ("removed", "rejected")
"""A new counterfeit in a case that ended here opens it again: it is not yet taken down."""


def file_verdict(
    conn: sa.Connection,
    *,
    listing_pk: int,
    brand_id: int,
    verdict: str,
    verdict_id: int,
    analyst: str,
    moment: datetime,
) -> int | None:
    """Put a (listing, brand) into its case when ``verdict`` is counterfeit, or take it out otherwise.

    Runs inside the verdict's transaction. Returns the case touched, if any.
    """
    held = conn.execute(
        sa.select(t.case_listings.c.case_id).where(
            t.case_listings.c.listing_pk == listing_pk, t.case_listings.c.brand_id == brand_id
        )
    ).first()
    if verdict != "counterfeit":
        if held is None:
            return None
        conn.execute(
            sa.delete(t.case_listings).where(
                t.case_listings.c.listing_pk == listing_pk, t.case_listings.c.brand_id == brand_id
            )
        )
        status = _status_of(conn, held.case_id)
        _event(conn, held.case_id, analyst, "listing-withdrawn", status, moment, listing_pk, f"verdict {verdict}")
        return int(held.case_id)
    if held is not None:  # counterfeit again: the newer verdict is the one a notice cites
        conn.execute(
            sa.update(t.case_listings)
            .where(t.case_listings.c.listing_pk == listing_pk, t.case_listings.c.brand_id == brand_id)
            .values(verdict_id=verdict_id)
        )
        return int(held.case_id)
    listing = conn.execute(
        sa.select(
            t.listings.c.marketplace, t.listings.c.source, t.listings.c.seller_id, t.listings.c.seller_name
        ).where(t.listings.c.listing_pk == listing_pk)
    ).one()
    marketplace = listing.marketplace or listing.source
    seller = listing.seller_id or ""
    found = conn.execute(
        sa.select(t.cases.c.case_id, t.cases.c.status).where(
            t.cases.c.marketplace == marketplace, t.cases.c.seller_id == seller
        )
    ).first()
    if found is None:
        case_id = new_id(
            conn.execute(
                sa.insert(t.cases).values(
                    marketplace=marketplace,
                    seller_id=seller,
                    seller_name=listing.seller_name,
                    status="open",
                    opened_at=moment,
                    updated_at=moment,
                )
            )
        )
        _event(conn, case_id, analyst, "opened", "open", moment, None, None)
        status = "open"
    else:
        case_id, status = int(found.case_id), str(found.status)
        if status in REOPENS:
            status = "open"
            conn.execute(sa.update(t.cases).where(t.cases.c.case_id == case_id).values(status=status))
    conn.execute(
        sa.insert(t.case_listings).values(
            listing_pk=listing_pk, brand_id=brand_id, case_id=case_id, verdict_id=verdict_id, added_at=moment
        )
    )
    conn.execute(sa.update(t.cases).where(t.cases.c.case_id == case_id).values(updated_at=moment))
    _event(conn, case_id, analyst, "listing-added", status, moment, listing_pk, None)
    return case_id


def _status_of(conn: sa.Connection, case_id: int) -> str:
    return str(conn.execute(sa.select(t.cases.c.status).where(t.cases.c.case_id == case_id)).scalar_one())


def _event(
    conn: sa.Connection,
    case_id: int,
    actor: str,
    action: str,
    status: str,
    moment: datetime,
    listing_pk: int | None,
    note: str | None,
) -> None:
    conn.execute(
        sa.insert(t.case_events).values(
            case_id=case_id, at=moment, actor=actor, action=action, status=status, listing_pk=listing_pk, note=note
        )
    )


def backfill(conn: sa.Connection) -> int:
    """File every (listing, brand) whose latest verdict is counterfeit, oldest verdict first; how many."""
    latest = (
        sa.select(sa.func.max(t.verdicts.c.verdict_id).label("verdict_id"))
        .where(t.verdicts.c.brand_id.is_not(None))
        .group_by(t.verdicts.c.listing_pk, t.verdicts.c.brand_id)
        .subquery()
    )
    rows = conn.execute(
        sa.select(t.verdicts)
        .join(latest, latest.c.verdict_id == t.verdicts.c.verdict_id)
        .where(t.verdicts.c.verdict == "counterfeit")
        .order_by(t.verdicts.c.verdict_id)
    ).all()
    for row in rows:
        file_verdict(
            conn,
            listing_pk=row.listing_pk,
            brand_id=row.brand_id,
            verdict=row.verdict,
            verdict_id=row.verdict_id,
            analyst=row.analyst,
            moment=row.decided_at,
        )
    return len(rows)


class CaseStore(StoreBase):
    # -- takedown cases ----------------------------------------------------------------------

    def cases(
        self,
        *,
        marketplace: str | None = None,
        status: str | None = None,
        brand_ids: Sequence[int] | None = None,
        case_ids: Sequence[int] | None = None,
    ) -> list[CaseSummary]:
        """Cases, latest change first. ``brand_ids`` keeps the cases with listings of those brands and counts
        only those (a member's view); without it a case whose listings were all withdrawn shows with 0."""
        counted = sa.select(
            t.case_listings.c.case_id,
            sa.func.count().label("listings"),
        )
        if brand_ids is not None:
            counted = counted.where(t.case_listings.c.brand_id.in_(list(brand_ids)))
        counts = counted.group_by(t.case_listings.c.case_id).subquery()
        listed = sa.func.coalesce(counts.c.listings, 0).label("listings")
        query = sa.select(t.cases, listed).join(
            counts, counts.c.case_id == t.cases.c.case_id, isouter=brand_ids is None
        )
        if case_ids is not None:
            query = query.where(t.cases.c.case_id.in_(list(case_ids)))
        if marketplace is not None:
            query = query.where(t.cases.c.marketplace == marketplace)
        if status is not None:
            query = query.where(t.cases.c.status == status)
        query = query.order_by(t.cases.c.updated_at.desc(), t.cases.c.case_id.desc())
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
            brands = self._case_brands(conn, [int(row.case_id) for row in rows], brand_ids)
        return [_summary(row, brands.get(int(row.case_id), ())) for row in rows]

    def case(self, case_id: int, *, brand_ids: Sequence[int] | None = None) -> Case:
        """One case with its listings (only ``brand_ids``' when given) and its whole history, oldest first."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t.cases).where(t.cases.c.case_id == case_id)).first()
            if row is None:
                raise NotFoundError(f"unknown case {case_id}")
            query = (
                sa.select(
                    t.case_listings.c.listing_pk,
                    t.case_listings.c.brand_id,
                    t.case_listings.c.added_at,
                    t.listings.c.source,
                    t.listings.c.listing_id,
                    t.listings.c.title,
                    t.listings.c.price,
                    t.listings.c.currency,
                    t.listings.c.url,
                    t.brands.c.name.label("brand"),
                    t.members.c.name.label("rights_holder"),
                    t.verdicts.c.verdict,
                    t.verdicts.c.note,
                    t.verdicts.c.analyst,
                    t.verdicts.c.decided_at,
                    t.scores.c.score,
                    t.evidence.c.reason,
                    t.evidence.c.image_sha256.label("evidence_picture"),
                    t.assets.c.sha256.label("asset_sha256"),
                    first_picture(t.case_listings.c.listing_pk).label("first_picture"),
                )
                .select_from(t.case_listings)
                .join(t.listings, t.listings.c.listing_pk == t.case_listings.c.listing_pk)
                .join(t.brands, t.brands.c.brand_id == t.case_listings.c.brand_id)
                .join(t.members, t.members.c.member_id == t.brands.c.member_id)
                .join(t.verdicts, t.verdicts.c.verdict_id == t.case_listings.c.verdict_id)
                .outerjoin(
                    t.scores,
                    sa.and_(
                        t.scores.c.listing_pk == t.case_listings.c.listing_pk,
                        t.scores.c.brand_id == t.case_listings.c.brand_id,
                    ),
                )
                .outerjoin(
                    t.evidence,
                    sa.and_(
                        t.evidence.c.listing_pk == t.scores.c.listing_pk,
                        t.evidence.c.position == t.scores.c.best_position,
                    ),
                )
                .outerjoin(t.assets, t.assets.c.asset_id == t.evidence.c.asset_id)
                .where(t.case_listings.c.case_id == case_id)
                .order_by(t.listings.c.source, t.listings.c.listing_id, t.brands.c.name)
            )
            if brand_ids is not None:
                query = query.where(t.case_listings.c.brand_id.in_(list(brand_ids)))
            listings = [_case_listing(item) for item in conn.execute(query)]
            events = [
                CaseEvent(
                    at=iso(event.at),
                    actor=event.actor,
                    action=event.action,
                    status=event.status,
                    listing_id=event.listing_id,
                    note=event.note,
                )
                for event in conn.execute(
                    sa.select(t.case_events, t.listings.c.listing_id)
                    .outerjoin(t.listings, t.listings.c.listing_pk == t.case_events.c.listing_pk)
                    .where(t.case_events.c.case_id == case_id)
                    .order_by(t.case_events.c.event_id)
                )
            ]
            brands = self._case_brands(conn, [case_id], brand_ids).get(case_id, ())
        return Case(
            summary=_summary(row, brands, listings=len(listings)), listings=tuple(listings), events=tuple(events)
        )

    def set_case_status(self, case_id: int, status: CaseStatus, *, note: str | None, actor: str) -> CaseSummary:
        """Move a case to ``status`` (the caller checked the transition), with history, audit and webhooks."""
        moment = now()
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(t.cases).where(t.cases.c.case_id == case_id).with_for_update()).first()
            if row is None:
                raise NotFoundError(f"unknown case {case_id}")
            conn.execute(
                sa.update(t.cases).where(t.cases.c.case_id == case_id).values(status=status, updated_at=moment)
            )
            _event(conn, case_id, actor, "status", status, moment, None, note)
            self._audit(conn, actor, "case.status", f"case {case_id}", {"from": row.status, "to": status, "note": note})
            members = conn.execute(
                sa.select(t.case_listings.c.listing_pk, t.case_listings.c.brand_id).where(
                    t.case_listings.c.case_id == case_id
                )
            ).all()
            for member in members:
                webhooks.enqueue_event(
                    conn,
                    "case.status",
                    listing_pk=member.listing_pk,
                    brand_ids=[member.brand_id],
                    details={"case_id": case_id, "status": status, "previous": row.status, "note": note},
                )
        return self.cases(case_ids=[case_id])[0]

    def audit_case_export(self, case_ids: Sequence[int], *, actor: str, marketplace: str, out: str) -> None:
        with self.engine.begin() as conn:
            self._audit(conn, actor, "case.export", f"marketplace {marketplace}", {"cases": list(case_ids), "out": out})

    @staticmethod
    def _case_brands(
        conn: sa.Connection, case_ids: Sequence[int], brand_ids: Sequence[int] | None
    ) -> dict[int, tuple[str, ...]]:
        if not case_ids:
            return {}
        query = (
            sa.select(t.case_listings.c.case_id, t.brands.c.name)
            .join(t.brands, t.brands.c.brand_id == t.case_listings.c.brand_id)
            .where(t.case_listings.c.case_id.in_(list(case_ids)))
            .distinct()
        )
        if brand_ids is not None:
            query = query.where(t.case_listings.c.brand_id.in_(list(brand_ids)))
        found: dict[int, list[str]] = {}
        for row in conn.execute(query):
            found.setdefault(int(row.case_id), []).append(str(row.name))
        return {case_id: tuple(sorted(names)) for case_id, names in found.items()}


def _summary(row: Any, brands: Sequence[str], *, listings: int | None = None) -> CaseSummary:
    return CaseSummary(
        case_id=int(row.case_id),
        marketplace=row.marketplace,
        seller_id=row.seller_id,
        seller_name=row.seller_name,
        status=row.status,
        listings=int(row.listings) if listings is None else listings,
        brands=tuple(brands),
        opened_at=iso(row.opened_at),
        updated_at=iso(row.updated_at),
    )


def _case_listing(row: Any) -> CaseListing:
    return CaseListing(
        listing_pk=int(row.listing_pk),
        brand_id=int(row.brand_id),
        source=row.source,
        listing_id=row.listing_id,
        title=row.title,
        price=row.price,
        currency=row.currency,
        url=row.url,
        brand=row.brand,
        rights_holder=row.rights_holder,
        verdict=row.verdict,
        note=row.note,
        analyst=row.analyst,
        decided_at=iso(row.decided_at),
        added_at=iso(row.added_at),
        score=None if row.score is None else round(float(row.score), 4),
        reason=row.reason,
        picture=row.evidence_picture or row.first_picture,
        asset_sha256=row.asset_sha256,
    )
