"""Listings, their versions and images, feed sources and the quarantine."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from counterscan.records import IngestedListing, Listing, QuarantineEntry, Rejected, UpsertCounts
from counterscan.store import schema as t
from counterscan.store.base import StoreBase, chunks, iso, now


def listing_content_hash(listing: Listing) -> str:
    payload = json.dumps(asdict(listing), sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class ListingStore(StoreBase):
    # -- ingestion -------------------------------------------------------------------------

    def upsert_listings(self, items: Sequence[IngestedListing]) -> UpsertCounts:
        """Insert new listings, version changed ones, skip identical ones; one transaction per batch."""
        new = updated = unchanged = 0
        for chunk in chunks(items):
            with self.engine.begin() as conn:
                counts = self._upsert_chunk(conn, chunk)
            new, updated, unchanged = new + counts.new, updated + counts.updated, unchanged + counts.unchanged
        return UpsertCounts(new=new, updated=updated, unchanged=unchanged)

    def _upsert_chunk(self, conn: sa.Connection, chunk: Sequence[IngestedListing]) -> UpsertCounts:
        moment = now()
        by_source: dict[str, list[str]] = {}
        for item in chunk:
            by_source.setdefault(item.listing.source, []).append(item.listing.listing_id)
        existing: dict[tuple[str, str], Any] = {}
        for source, ids in by_source.items():
            rows = conn.execute(
                sa.select(
                    t.listings.c.listing_pk, t.listings.c.listing_id, t.listings.c.content_hash, t.listings.c.version
                ).where(t.listings.c.source == source, t.listings.c.listing_id.in_(ids))
            )
            existing.update({(source, row.listing_id): row for row in rows})

        inserts: list[tuple[IngestedListing, str]] = []
        updates: list[tuple[IngestedListing, str, Any]] = []
        unchanged = 0
        seen: set[tuple[str, str]] = set()
        for item in chunk:
            key = (item.listing.source, item.listing.listing_id)
            if key in seen:  # a later row of the same batch wins; the earlier was already counted
                continue
            seen.add(key)
            content_hash = listing_content_hash(item.listing)
            row = existing.get(key)
            if row is None:
                inserts.append((item, content_hash))
            elif row.content_hash != content_hash:
                updates.append((item, content_hash, row))
            else:
                unchanged += 1

        version_rows: list[dict[str, Any]] = []
        image_rows: list[dict[str, Any]] = []
        if inserts:
            result = conn.execute(
                sa.insert(t.listings).returning(t.listings.c.listing_pk, sort_by_parameter_order=True),
                [
                    _listing_row(item.listing, content_hash, 1, moment) | {"ingested_at": moment}
                    for item, content_hash in inserts
                ],
            )
            for (item, content_hash), pk in zip(inserts, result.scalars().all(), strict=True):
                version_rows.append(_version_row(pk, 1, item.listing, content_hash, moment))
                image_rows.extend(_image_rows(pk, item))
        for item, content_hash, row in updates:
            version = row.version + 1
            conn.execute(
                sa.update(t.listings)
                .where(t.listings.c.listing_pk == row.listing_pk)
                .values(_listing_row(item.listing, content_hash, version, moment) | {"scanned_at": None})
            )
            conn.execute(sa.delete(t.listing_images).where(t.listing_images.c.listing_pk == row.listing_pk))
            version_rows.append(_version_row(row.listing_pk, version, item.listing, content_hash, moment))
            image_rows.extend(_image_rows(row.listing_pk, item))
        if version_rows:
            conn.execute(sa.insert(t.listing_versions), version_rows)
        if image_rows:
            conn.execute(sa.insert(t.listing_images), image_rows)
        return UpsertCounts(new=len(inserts), updated=len(updates), unchanged=unchanged)

    def listing_hashes(self, source: str, listing_ids: Sequence[str]) -> dict[str, str]:
        """Content hashes of the listings of ``source`` already stored, by listing id."""
        found: dict[str, str] = {}
        with self.engine.connect() as conn:
            for chunk in chunks(list(listing_ids)):
                rows = conn.execute(
                    sa.select(t.listings.c.listing_id, t.listings.c.content_hash).where(
                        t.listings.c.source == source, t.listings.c.listing_id.in_(chunk)
                    )
                )
                found.update({row.listing_id: row.content_hash for row in rows})
        return found

    def quarantine(self, rejected: Iterable[Rejected]) -> int:
        moment = now()
        rows = [
            {
                "source": entry.source,
                "record": entry.record,
                "reason": entry.reason,
                "raw": json.loads(json.dumps(dict(entry.raw), default=str)),
                "created_at": moment,
            }
            for entry in rejected
        ]
        if rows:
            with self.engine.begin() as conn:
                conn.execute(sa.insert(t.quarantine), rows)
        return len(rows)

    def quarantined(self, source: str | None = None) -> list[QuarantineEntry]:
        query = sa.select(t.quarantine).where(t.quarantine.c.resolved_at.is_(None)).order_by(t.quarantine.c.entry_id)
        if source is not None:
            query = query.where(t.quarantine.c.source == source)
        with self.engine.connect() as conn:
            return [
                QuarantineEntry(
                    entry_id=row.entry_id,
                    source=row.source,
                    record=row.record,
                    reason=row.reason,
                    created_at=iso(row.created_at),
                )
                for row in conn.execute(query)
            ]

    def record_source(self, name: str, location: str) -> None:
        with self.engine.begin() as conn:
            found = conn.execute(sa.select(t.sources.c.name).where(t.sources.c.name == name)).first()
            if found is None:
                conn.execute(sa.insert(t.sources).values(name=name, location=location, updated_at=now()))
            else:
                conn.execute(
                    sa.update(t.sources).where(t.sources.c.name == name).values(location=location, updated_at=now())
                )

    def listing_count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(t.listings)).scalar_one())


def _listing_row(listing: Listing, content_hash: str, version: int, now: datetime) -> dict[str, Any]:
    return {
        "source": listing.source,
        "listing_id": listing.listing_id,
        "title": listing.title,
        "description": listing.description,
        "price": listing.price,
        "currency": listing.currency,
        "seller_id": listing.seller_id,
        "seller_name": listing.seller_name,
        "url": listing.url,
        "marketplace": listing.marketplace,
        "observed_at": listing.observed_at,
        "attributes": dict(listing.attributes),
        "content_hash": content_hash,
        "version": version,
        "updated_at": now,
    }


def _version_row(pk: int, version: int, listing: Listing, content_hash: str, now: datetime) -> dict[str, Any]:
    return {
        "listing_pk": pk,
        "version": version,
        "title": listing.title,
        "price": listing.price,
        "currency": listing.currency,
        "observed_at": listing.observed_at,
        "content_hash": content_hash,
        "recorded_at": now,
    }


def _image_rows(pk: int, item: IngestedListing) -> list[dict[str, Any]]:
    return [
        {"listing_pk": pk, "position": position, "ref": image.ref, "sha256": image.sha256, "error": image.error}
        for position, image in enumerate(item.images)
    ]


def listing_from_row(row: Any) -> Listing:
    return Listing(
        source=row.source,
        listing_id=row.listing_id,
        title=row.title,
        description=row.description,
        price=row.price,
        currency=row.currency,
        seller_id=row.seller_id,
        seller_name=row.seller_name,
        url=row.url,
        marketplace=row.marketplace,
        observed_at=row.observed_at,
        attributes=row.attributes or {},
    )
