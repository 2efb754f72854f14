"""Listings, their versions and images, feed sources and the quarantine."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from counterscan.records import ImageOutcome, IngestedListing, Listing, QuarantineEntry, Rejected, UpsertCounts
from counterscan.store import schema as t
from counterscan.store.base import StoreBase, bulk_insert, chunks, iso, now, rows_in
from counterscan.store.storable import MAX_REASON_CHARS, safe_raw, safe_text


def listing_content_hash(listing: Listing) -> str:
    """A digest of everything a feed says about a listing; equal digests mean nothing changed."""
    fields = (
        listing.title,
        listing.description,
        repr(listing.price),
        listing.currency or "",
        listing.seller_id or "",
        listing.seller_name or "",
        listing.url or "",
        listing.marketplace or "",
        listing.observed_at or "",
        "\x1e".join(listing.image_refs),
        json.dumps(listing.attributes, sort_keys=True, default=str, ensure_ascii=False) if listing.attributes else "",
    )
    return hashlib.sha256("\x1f".join(fields).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class FailedImage:
    listing_pk: int
    position: int
    ref: str
    attempts: int


class ListingStore(StoreBase):
    # -- ingestion -------------------------------------------------------------------------

    def commit_ingest_batch(
        self,
        source: str,
        items: Sequence[IngestedListing],
        rejected: Sequence[Rejected],
        checkpoint: Mapping[str, object] | None,
    ) -> UpsertCounts:
        """Listings, quarantined records and the source's checkpoint, all in one transaction.

        A crash (even kill -9) either keeps the whole batch with the checkpoint that covers it,
        or none of it, so the next run resumes exactly where the last acknowledged batch ended.

        Rows are validated before they come here; should the database still refuse one, the
        batch is written again row by row and the refused rows are quarantined with the
        database's reason, so one bad row never costs its batch nor blocks the next run.
        """
        try:
            with self.engine.begin() as conn:
                counts = self._upsert_chunk(conn, items) if items else UpsertCounts()
                self._quarantine(conn, rejected)
                self._save_checkpoint(conn, source, checkpoint)
            return counts
        except _ROW_ERRORS as exc:
            if _connection_lost(exc):
                raise
        return self._commit_row_by_row(source, items, rejected, checkpoint)

    def _commit_row_by_row(
        self,
        source: str,
        items: Sequence[IngestedListing],
        rejected: Sequence[Rejected],
        checkpoint: Mapping[str, object] | None,
    ) -> UpsertCounts:
        new = updated = unchanged = 0
        refused = list(rejected)
        for item in items:
            try:
                with self.engine.begin() as conn:
                    one = self._upsert_chunk(conn, [item])
            except _ROW_ERRORS as exc:
                if _connection_lost(exc):
                    raise
                refused.append(
                    Rejected(
                        source,
                        f"listing {item.listing.listing_id}",
                        f"the database refused the row: {_first_line(exc)}",
                        {"row": {"line": f"listing {item.listing.listing_id}"}},
                    )
                )
                continue
            new, updated, unchanged = new + one.new, updated + one.updated, unchanged + one.unchanged
        with self.engine.begin() as conn:
            self._quarantine(conn, refused)
            self._save_checkpoint(conn, source, checkpoint)
        return UpsertCounts(new=new, updated=updated, unchanged=unchanged)

    @staticmethod
    def _save_checkpoint(conn: sa.Connection, source: str, checkpoint: Mapping[str, object] | None) -> None:
        if checkpoint is not None:
            conn.execute(
                sa.update(t.sources)
                .where(t.sources.c.name == source)
                .values(checkpoint=dict(checkpoint), updated_at=now())
            )

    def _upsert_chunk(self, conn: sa.Connection, chunk: Sequence[IngestedListing]) -> UpsertCounts:
        moment = now()
        existing: dict[tuple[str, str], Any] = {}
        for source, ids in _ids_by_source(chunk).items():
            rows = conn.execute(
                sa.select(
                    t.listings.c.listing_pk,
                    t.listings.c.listing_id,
                    t.listings.c.content_hash,
                    t.listings.c.version,
                    t.listings.c.title,
                    t.listings.c.price,
                    t.listings.c.currency,
                    t.listings.c.observed_at,
                    t.listings.c.updated_at,
                ).where(t.listings.c.source == source, t.listings.c.listing_id.in_(ids))
            )
            existing.update({(source, row.listing_id): row for row in rows})

        inserts: list[tuple[IngestedListing, str]] = []
        updates: list[tuple[IngestedListing, str, Any]] = []
        unchanged = 0
        seen_again: list[int] = []
        seen: set[tuple[str, str]] = set()
        for item in chunk:
            key = (item.listing.source, item.listing.listing_id)
            if key in seen:  # a later row of the same batch wins; the earlier was already counted
                continue
            seen.add(key)
            content_hash = item.content_hash or listing_content_hash(item.listing)
            row = existing.get(key)
            if row is None:
                inserts.append((item, content_hash))
            elif row.content_hash != content_hash:
                updates.append((item, content_hash, row))
            else:
                unchanged += 1
                seen_again.append(row.listing_pk)
        if seen_again:  # takedown evidence says when a listing was last seen live, changed or not
            conn.execute(
                sa.update(t.listings).where(t.listings.c.listing_pk.in_(seen_again)).values(last_seen_at=moment)
            )

        version_rows: list[dict[str, Any]] = []
        image_rows: list[dict[str, Any]] = []
        if inserts:
            # A plain executemany and one SELECT for the keys: RETURNING would go row by row on SQLite.
            bulk_insert(
                conn,
                t.listings,
                [
                    _listing_row(item.listing, content_hash, 1, moment) | {"ingested_at": moment}
                    for item, content_hash in inserts
                ],
            )
            keys: dict[tuple[str, str], int] = {}
            for source, ids in _ids_by_source([item for item, _hash in inserts]).items():
                rows = conn.execute(
                    sa.select(t.listings.c.listing_pk, t.listings.c.listing_id).where(
                        t.listings.c.source == source, t.listings.c.listing_id.in_(ids)
                    )
                )
                keys.update({(source, row.listing_id): row.listing_pk for row in rows})
            for item, _content_hash in inserts:
                image_rows.extend(_image_rows(keys[(item.listing.source, item.listing.listing_id)], item))

        # Versions are written from the first change on: a listing that never changed is its own history.
        for item, content_hash, row in updates:
            version = row.version + 1
            if row.version == 1:
                version_rows.append(
                    {
                        "listing_pk": row.listing_pk,
                        "version": 1,
                        "title": row.title,
                        "price": row.price,
                        "currency": row.currency,
                        "observed_at": row.observed_at,
                        "content_hash": row.content_hash,
                        "recorded_at": row.updated_at,
                    }
                )

            conn.execute(
                sa.update(t.listings)
                .where(t.listings.c.listing_pk == row.listing_pk)
                .values(_listing_row(item.listing, content_hash, version, moment) | {"scanned_at": None})
            )
            conn.execute(sa.delete(t.listing_images).where(t.listing_images.c.listing_pk == row.listing_pk))
            version_rows.append(_version_row(row.listing_pk, version, item.listing, content_hash, moment))
            image_rows.extend(_image_rows(row.listing_pk, item))
        bulk_insert(conn, t.listing_versions, version_rows)
        bulk_insert(conn, t.listing_images, image_rows)

        return UpsertCounts(new=len(inserts), updated=len(updates), unchanged=unchanged)

    def listing_hashes(self, source: str, listing_ids: Sequence[str]) -> dict[str, str]:
        """Content hashes of the listings of ``source`` already stored, by listing id."""
        query = sa.select(t.listings.c.listing_id, t.listings.c.content_hash).where(t.listings.c.source == source)
        with self.engine.connect() as conn:
            return {
                row.listing_id: row.content_hash for row in rows_in(conn, query, t.listings.c.listing_id, listing_ids)
            }

    def quarantine(self, rejected: Sequence[Rejected]) -> int:
        with self.engine.begin() as conn:
            return self._quarantine(conn, rejected)

    @staticmethod
    def _quarantine(conn: sa.Connection, rejected: Sequence[Rejected]) -> int:
        moment = now()
        # The quarantine takes what the listings could not: its text is made storable first.
        rows = [
            {
                "source": safe_text(entry.source, 200),
                "kind": entry.kind,
                "record": safe_text(entry.record, 500),
                "reason": safe_text(entry.reason, MAX_REASON_CHARS),
                "raw": json.loads(json.dumps(safe_raw(entry.raw), default=str)),
                "created_at": moment,
            }
            for entry in rejected
        ]
        if rows:
            conn.execute(sa.insert(t.quarantine), rows)
        return len(rows)

    def quarantined(self, source: str | None = None) -> list[QuarantineEntry]:
        return [entry for entry, _raw in self.quarantine_records(source)]

    def quarantine_records(self, source: str | None = None) -> list[tuple[QuarantineEntry, dict[str, Any]]]:
        """Unresolved quarantine entries with the raw record kept for a retry."""
        query = sa.select(t.quarantine).where(t.quarantine.c.resolved_at.is_(None)).order_by(t.quarantine.c.entry_id)
        if source is not None:
            query = query.where(t.quarantine.c.source == source)
        with self.engine.connect() as conn:
            return [
                (
                    QuarantineEntry(
                        entry_id=row.entry_id,
                        source=row.source,
                        kind=row.kind,
                        record=row.record,
                        reason=row.reason,
                        attempts=row.attempts,
                        created_at=iso(row.created_at),
                    ),
                    dict(row.raw or {}),
                )
                for row in conn.execute(query)
            ]

    def resolve_quarantine(self, entry_ids: Sequence[int]) -> None:
        with self.engine.begin() as conn:
            for chunk in chunks(list(entry_ids)):
                conn.execute(
                    sa.update(t.quarantine).where(t.quarantine.c.entry_id.in_(chunk)).values(resolved_at=now())
                )

    def bump_quarantine(self, entry_id: int, reason: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(t.quarantine)
                .where(t.quarantine.c.entry_id == entry_id)
                .values(reason=reason, attempts=t.quarantine.c.attempts + 1)
            )

    def record_source(self, name: str, *, kind: str, location: str, mapping: Mapping[str, object] | None) -> None:
        values = {"kind": kind, "location": location, "mapping": dict(mapping or {}), "updated_at": now()}
        with self.engine.begin() as conn:
            found = conn.execute(sa.select(t.sources.c.name).where(t.sources.c.name == name)).first()
            if found is None:
                conn.execute(sa.insert(t.sources).values(name=name, **values))
            else:
                conn.execute(sa.update(t.sources).where(t.sources.c.name == name).values(**values))

    def source_state(self, name: str) -> tuple[str, str, dict[str, Any], dict[str, Any] | None] | None:
        """(kind, location, mapping, checkpoint) of a known source."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t.sources).where(t.sources.c.name == name)).first()
        if row is None:
            return None
        return row.kind, row.location, dict(row.mapping or {}), (dict(row.checkpoint) if row.checkpoint else None)

    # -- images ----------------------------------------------------------------------------

    def failed_images(self, source: str, *, max_attempts: int) -> list[FailedImage]:
        query = (
            sa.select(
                t.listing_images.c.listing_pk,
                t.listing_images.c.position,
                t.listing_images.c.ref,
                t.listing_images.c.attempts,
            )
            .join(t.listings, t.listings.c.listing_pk == t.listing_images.c.listing_pk)
            .where(
                t.listings.c.source == source,
                t.listing_images.c.sha256.is_(None),
                t.listing_images.c.attempts < max_attempts,
            )
            .order_by(t.listing_images.c.listing_pk, t.listing_images.c.position)
        )
        with self.engine.connect() as conn:
            return [FailedImage(row.listing_pk, row.position, row.ref, row.attempts) for row in conn.execute(query)]

    def update_images(self, results: Sequence[tuple[FailedImage, ImageOutcome]]) -> int:
        """Record retried images; a listing that gained an image is scanned again. Returns the number fixed."""
        fixed: set[int] = set()
        with self.engine.begin() as conn:
            for image, outcome in results:
                conn.execute(
                    sa.update(t.listing_images)
                    .where(
                        t.listing_images.c.listing_pk == image.listing_pk,
                        t.listing_images.c.position == image.position,
                    )
                    .values(sha256=outcome.sha256, error=outcome.error, attempts=image.attempts + 1)
                )
                if outcome.sha256 is not None:
                    fixed.add(image.listing_pk)
            for chunk in chunks(sorted(fixed)):
                conn.execute(sa.update(t.listings).where(t.listings.c.listing_pk.in_(chunk)).values(scanned_at=None))
        return sum(1 for _image, outcome in results if outcome.sha256 is not None)

    def cached_urls(self, urls: Sequence[str]) -> dict[str, str]:
        with self.engine.connect() as conn:
            return {row.url: row.sha256 for row in rows_in(conn, sa.select(t.url_cache), t.url_cache.c.url, urls)}

    def remember_urls(self, fetched: Mapping[str, str]) -> None:
        if not fetched:
            return
        with self.engine.begin() as conn:
            known = {row.url for row in rows_in(conn, sa.select(t.url_cache.c.url), t.url_cache.c.url, fetched)}

            rows = [
                {"url": url, "sha256": sha, "fetched_at": now()} for url, sha in fetched.items() if url not in known
            ]
            if rows:
                conn.execute(sa.insert(t.url_cache), rows)


_ROW_ERRORS = (sa.exc.StatementError, ValueError, TypeError, RecursionError)


def _connection_lost(exc: BaseException) -> bool:
    """Whether the database itself failed (down, locked), as opposed to refusing a row."""
    return isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError) or bool(
        getattr(exc, "connection_invalidated", False)
    )


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc)
    return safe_text(text.strip().splitlines()[0] if text.strip() else type(exc).__name__, 300)


def _ids_by_source(items: Sequence[IngestedListing]) -> dict[str, list[str]]:
    by_source: dict[str, list[str]] = {}
    for item in items:
        by_source.setdefault(item.listing.source, []).append(item.listing.listing_id)
    return by_source


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
        "last_seen_at": now,
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
        {
            "listing_pk": pk,
            "position": position,
            "ref": image.ref,
            "sha256": image.sha256,
            "error": image.error,
            "attempts": 1,
        }
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
