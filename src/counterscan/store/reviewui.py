"""What the review web UI reads and writes: a filtered, keyset-paged queue, sellers, shared pictures.

Every query here is bounded: a page of rows, a seller's listings up to a cap, the pictures of one
listing or seller. The queue itself is :mod:`counterscan.store.queue`'s, paged here by keyset.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from counterscan.store import schema as t
from counterscan.store.base import StoreBase, iso, rows_in
from counterscan.store.queue import (
    QueueFilter,
    QueueSort,
    SuspectKey,
    first_picture,
    latest_verdict,
    queue_query,
)

SELLER_LISTING_CAP = 500


@dataclass(frozen=True)
class QueueRow:
    listing_pk: int
    brand_id: int
    brand: str
    source: str
    listing_id: str
    title: str
    price: float | None
    currency: str | None
    seller_id: str | None
    seller_name: str | None
    marketplace: str | None
    first_seen: str
    score: float
    matcher: str | None
    reason: str | None
    status: str
    image_sha256: str | None

    @property
    def key(self) -> SuspectKey:
        return (self.listing_pk, self.brand_id)


@dataclass(frozen=True)
class QueuePage:
    rows: tuple[QueueRow, ...]
    next_cursor: str | None
    """Pass back as ``after`` for the following page; None on the last page."""


@dataclass(frozen=True)
class VerdictEntry:
    verdict: str
    note: str | None
    analyst: str
    at: str


@dataclass(frozen=True)
class SharedPicture:
    """A picture of one listing that other sellers' listings show too."""

    sha256: str
    listing_pk: int
    source: str
    listing_id: str
    title: str
    seller_id: str | None
    seller_name: str | None


def _sort_column(sort: QueueSort) -> tuple[sa.ColumnElement[Any], bool]:
    """(primary column, descending) for a sort order; ties are broken by (listing, brand), ascending."""
    if sort in ("score", "score_asc"):
        return t.scores.c.score, sort == "score"
    return t.scores.c.listing_pk, sort == "newest"


Position = tuple[float, int, int]
"""Where a suspect stands in a queue: (primary sort value, listing, brand). A listing may be the
suspect of several brands with one score: only the whole triple orders every row."""


def _beyond(primary: sa.ColumnElement[Any], descending: bool, position: Position, *, forward: bool) -> Any:
    """Rows after ``position`` in queue order (``forward``), or before it."""
    value, listing_pk, brand_id = position
    later = (primary < value) if descending == forward else (primary > value)
    pk, brand = t.scores.c.listing_pk, t.scores.c.brand_id
    tie = (
        sa.or_(pk > listing_pk, sa.and_(pk == listing_pk, brand > brand_id))
        if forward
        else sa.or_(pk < listing_pk, sa.and_(pk == listing_pk, brand < brand_id))
    )
    return sa.or_(later, sa.and_(primary == value, tie))


def _in_order(primary: sa.ColumnElement[Any], descending: bool, *, forward: bool = True) -> list[Any]:
    ascending = forward != descending
    ties = [t.scores.c.listing_pk, t.scores.c.brand_id]
    return [primary.asc() if ascending else primary.desc(), *(tie.asc() if forward else tie.desc() for tie in ties)]


def encode_cursor(row: QueueRow, sort: QueueSort) -> str:
    primary = repr(row.score) if sort in ("score", "score_asc") else str(row.listing_pk)
    return f"{primary}_{row.listing_pk}_{row.brand_id}"


def decode_cursor(cursor: str) -> Position | None:
    parts = cursor.split("_")
    if len(parts) != 3:
        return None
    try:
        return float(parts[0]), int(parts[1]), int(parts[2])
    except ValueError:
        return None


class ReviewUIStore(StoreBase):
    def queue_page(self, spec: QueueFilter, *, after: str | None = None, limit: int = 50) -> QueuePage:
        """One page of suspects in ``spec.sort`` order, starting after the ``after`` cursor."""
        primary, descending = _sort_column(spec.sort)
        query = _web_queue(spec)
        position = decode_cursor(after) if after else None
        if position is not None:
            query = query.where(_beyond(primary, descending, position, forward=True))
        query = query.order_by(*_in_order(primary, descending)).limit(limit + 1)
        with self.engine.connect() as conn:
            found = conn.execute(query).all()
        rows = tuple(_queue_row(row) for row in found[:limit])
        cursor = encode_cursor(rows[-1], spec.sort) if len(found) > limit and rows else None
        return QueuePage(rows=rows, next_cursor=cursor)

    def queue_neighbours(self, spec: QueueFilter, key: SuspectKey) -> tuple[SuspectKey | None, SuspectKey | None]:
        """The suspects before and after ``key`` in the queue ``spec`` describes (j / k on a suspect page)."""
        primary, descending = _sort_column(spec.sort)
        with self.engine.connect() as conn:
            here = conn.execute(
                sa.select(primary.label("value")).where(t.scores.c.listing_pk == key[0], t.scores.c.brand_id == key[1])
            ).first()
            if here is None:
                return None, None
            position: Position = (here.value, key[0], key[1])
            base = queue_query(spec)
            following = conn.execute(
                base.where(_beyond(primary, descending, position, forward=True))
                .order_by(*_in_order(primary, descending))
                .limit(1)
            ).first()
            preceding = conn.execute(
                base.where(_beyond(primary, descending, position, forward=False))
                .order_by(*_in_order(primary, descending, forward=False))
                .limit(1)
            ).first()
        return (
            None if preceding is None else (int(preceding.listing_pk), int(preceding.brand_id)),
            None if following is None else (int(following.listing_pk), int(following.brand_id)),
        )

    def queue_keys(self, spec: QueueFilter, *, limit: int = 10_000) -> list[SuspectKey]:
        """Every suspect ``spec`` selects (bulk verdicts: this seller, this picture), up to ``limit``."""
        query = queue_query(spec).order_by(t.scores.c.listing_pk).limit(limit)
        with self.engine.connect() as conn:
            return [(int(row.listing_pk), int(row.brand_id)) for row in conn.execute(query)]

    def suspect_row(self, key: SuspectKey) -> QueueRow | None:
        """One suspect as the queue shows it, or None when the listing is no suspect for that brand."""
        query = _web_queue(QueueFilter()).where(t.scores.c.listing_pk == key[0], t.scores.c.brand_id == key[1])
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else _queue_row(row)

    def existing_suspects(self, keys: Collection[SuspectKey]) -> set[SuspectKey]:
        """Which of ``keys`` are suspects in the store."""
        wanted = set(keys)
        query = sa.select(t.scores.c.listing_pk, t.scores.c.brand_id)
        with self.engine.connect() as conn:
            found = {
                (int(row.listing_pk), int(row.brand_id))
                for row in rows_in(conn, query, t.scores.c.listing_pk, {pk for pk, _ in wanted})
                if row.brand_id is not None
            }
        return found & wanted

    def suspect_names(self, keys: Collection[SuspectKey]) -> dict[SuspectKey, str]:
        """``SOURCE/LISTING_ID (BRAND)`` of each key whose listing and brand exist, suspect or not:
        an analyst may judge a clean listing for a brand (the listings `--to-label` proposes)."""
        wanted = set(keys)
        query = sa.select(t.listings.c.listing_pk, t.listings.c.source, t.listings.c.listing_id)
        with self.engine.connect() as conn:
            listings = {
                int(row.listing_pk): f"{row.source}/{row.listing_id}"
                for row in rows_in(conn, query, t.listings.c.listing_pk, {pk for pk, _ in wanted})
            }
            brands = {
                int(row.brand_id): str(row.name)
                for row in conn.execute(
                    sa.select(t.brands.c.brand_id, t.brands.c.name).where(
                        t.brands.c.brand_id.in_(sorted({brand for _, brand in wanted}))
                    )
                )
            }
        return {
            (pk, brand): f"{listings[pk]} ({brands[brand]})"
            for pk, brand in wanted
            if pk in listings and brand in brands
        }

    def listing_keys(self, source: str, listing_ids: Sequence[str]) -> dict[str, int]:
        """The stored keys of a source's listings, by listing id."""
        query = sa.select(t.listings.c.listing_id, t.listings.c.listing_pk).where(t.listings.c.source == source)
        with self.engine.connect() as conn:
            return {
                str(row.listing_id): int(row.listing_pk)
                for row in rows_in(conn, query, t.listings.c.listing_id, listing_ids)
            }

    def marketplaces(self) -> list[str]:
        query = (
            sa.select(t.listings.c.marketplace)
            .where(t.listings.c.marketplace.is_not(None))
            .distinct()
            .order_by(t.listings.c.marketplace)
            .limit(500)
        )
        with self.engine.connect() as conn:
            return [str(value) for value in conn.execute(query).scalars()]

    def verdict_history(self, key: SuspectKey) -> list[VerdictEntry]:
        query = (
            sa.select(t.verdicts)
            .where(t.verdicts.c.listing_pk == key[0], t.verdicts.c.brand_id == key[1])
            .order_by(t.verdicts.c.verdict_id.desc())
            .limit(200)
        )
        with self.engine.connect() as conn:
            return [
                VerdictEntry(verdict=row.verdict, note=row.note, analyst=row.analyst, at=iso(row.decided_at))
                for row in conn.execute(query)
            ]

    def seller_listings(self, seller_id: str, brand_ids: Sequence[int] | None) -> list[dict[str, Any]]:
        """The seller's listings (up to a cap), each with its suspect brand, score and status when it has one."""
        query = (
            sa.select(
                t.listings.c.listing_pk,
                t.listings.c.source,
                t.listings.c.listing_id,
                t.listings.c.title,
                t.listings.c.price,
                t.listings.c.currency,
                t.listings.c.marketplace,
                t.listings.c.seller_name,
                t.listings.c.ingested_at,
                t.scores.c.score,
                t.scores.c.brand_id,
                t.brands.c.name.label("brand"),
                latest_verdict(t.listings.c.listing_pk, t.scores.c.brand_id).label("status"),
                first_picture(t.listings.c.listing_pk).label("picture"),
            )
            .select_from(t.listings)
            .outerjoin(t.scores, sa.and_(t.scores.c.listing_pk == t.listings.c.listing_pk, t.scores.c.score > 0))
            .outerjoin(t.brands, t.brands.c.brand_id == t.scores.c.brand_id)
            .where(t.listings.c.seller_id == seller_id)
            .order_by(sa.func.coalesce(t.scores.c.score, -1.0).desc(), t.listings.c.listing_pk)
            .limit(SELLER_LISTING_CAP)
        )
        visible = None if brand_ids is None else set(brand_ids)
        found = []
        with self.engine.connect() as conn:
            for row in conn.execute(query):
                suspect = row.brand_id is not None and (visible is None or row.brand_id in visible)
                found.append(
                    {
                        "listing_pk": row.listing_pk,
                        "source": row.source,
                        "listing_id": row.listing_id,
                        "title": row.title,
                        "price": row.price,
                        "currency": row.currency,
                        "marketplace": row.marketplace,
                        "seller_name": row.seller_name,
                        "first_seen": iso(row.ingested_at),
                        "score": float(row.score) if suspect else None,
                        "brand_id": row.brand_id if suspect else None,
                        "brand": row.brand if suspect else None,
                        "status": (row.status or "new") if suspect else None,
                        "picture": row.picture,
                    }
                )
        return found

    def listing_pictures(self, listing_pks: Collection[int]) -> dict[int, list[str]]:
        query = sa.select(t.listing_images.c.listing_pk, t.listing_images.c.sha256).where(
            t.listing_images.c.sha256.is_not(None)
        )
        found: dict[int, list[str]] = {}
        with self.engine.connect() as conn:
            for row in rows_in(conn, query, t.listing_images.c.listing_pk, listing_pks):
                found.setdefault(int(row.listing_pk), []).append(str(row.sha256))
        return found

    def shared_pictures(
        self, sha256s: Collection[str], *, other_than_seller: str | None, limit: int = 200
    ) -> list[SharedPicture]:
        """Listings of other sellers that show any of these pictures: one supplier's photos, many shops."""
        query = (
            sa.select(
                t.listing_images.c.sha256,
                t.listings.c.listing_pk,
                t.listings.c.source,
                t.listings.c.listing_id,
                t.listings.c.title,
                t.listings.c.seller_id,
                t.listings.c.seller_name,
            )
            .join(t.listings, t.listings.c.listing_pk == t.listing_images.c.listing_pk)
            .limit(limit)
        )
        if other_than_seller is not None:
            query = query.where(sa.or_(t.listings.c.seller_id.is_(None), t.listings.c.seller_id != other_than_seller))
        found: list[SharedPicture] = []
        with self.engine.connect() as conn:
            for row in rows_in(conn, query, t.listing_images.c.sha256, sorted(set(sha256s))):
                found.append(
                    SharedPicture(
                        sha256=row.sha256,
                        listing_pk=row.listing_pk,
                        source=row.source,
                        listing_id=row.listing_id,
                        title=row.title,
                        seller_id=row.seller_id,
                        seller_name=row.seller_name,
                    )
                )
        return found[:limit]

    def picture_visible(self, sha256: str, brand_ids: Sequence[int]) -> bool:
        """Whether a reader of ``brand_ids`` may see this picture: their asset or a suspect of theirs shows it."""
        ids = list(brand_ids)
        asset = sa.select(t.assets.c.asset_id).where(t.assets.c.sha256 == sha256, t.assets.c.brand_id.in_(ids))
        listing = (
            sa.select(t.listing_images.c.listing_pk)
            .join(t.scores, t.scores.c.listing_pk == t.listing_images.c.listing_pk)
            .where(t.listing_images.c.sha256 == sha256, t.scores.c.brand_id.in_(ids), t.scores.c.score > 0)
        )
        with self.engine.connect() as conn:
            return (
                conn.execute(asset.limit(1)).first() is not None or conn.execute(listing.limit(1)).first() is not None
            )

    def audit_for(self, target: str, *, limit: int = 100) -> list[dict[str, Any]]:
        query = sa.select(t.audit).where(t.audit.c.target == target).order_by(t.audit.c.audit_id.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [
                {"actor": row.actor, "action": row.action, "details": dict(row.details), "at": iso(row.at)}
                for row in conn.execute(query)
            ]


def _web_queue(spec: QueueFilter) -> sa.Select[Any]:
    """The queue as the web UI shows it: each suspect with a picture (its evidence's, or its listing's first)."""
    picture = sa.func.coalesce(t.evidence.c.image_sha256, first_picture(t.scores.c.listing_pk))
    return queue_query(spec).add_columns(picture.label("picture"))


def _queue_row(row: Any) -> QueueRow:
    return QueueRow(
        listing_pk=int(row.listing_pk),
        brand_id=int(row.brand_id),
        brand=row.brand,
        source=row.source,
        listing_id=row.listing_id,
        title=row.title,
        price=row.price,
        currency=row.currency,
        seller_id=row.seller_id,
        seller_name=row.seller_name,
        marketplace=row.marketplace,
        first_seen=iso(row.ingested_at),
        score=float(row.score),  # exact: the keyset cursor compares it with the stored value
        matcher=row.matcher,
        reason=row.reason,
        status=row.status or "new",
        image_sha256=row.picture,
    )
